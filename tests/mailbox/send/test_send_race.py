"""Two "Senden" on one draft at the same moment (a double click, two tabs): one message reaches the CM, once.

Real threads, each with its own PostgreSQL connection, through the view (save what the page shows, pre-flight
against the directory, queue), then the delivery task for whatever was queued.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from mailbox.models import OutgoingMessage
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.outbox import outgoing_deliver
from tests.mailbox.conftest import PRAXIS

pytestmark = pytest.mark.django_db(transaction=True)
HX = {"HX-Request": "true"}
ROUNDS = 4


def _press_send_twice(sender, draft: OutgoingMessage) -> list[tuple[int, str]]:
    tabs = [Client(), Client()]
    for tab in tabs:
        tab.force_login(sender)
    data = {
        "mailbox": draft.mailbox_id,
        "subject": "Befund",
        "body": "Text",
        "to": PRAXIS,
        "dienstkennung": "KIM-Mail;Default;V1.0",
        "version": draft.version,
    }
    start = threading.Barrier(len(tabs))
    answers: list[tuple[int, str]] = []
    errors: list[BaseException] = []

    def press(tab: Client) -> None:
        try:
            start.wait(timeout=10)
            response = tab.post(reverse("mailbox:draft-send", args=[draft.pk]), data, headers=HX)
            answers.append((response.status_code, response.get("HX-Redirect", "")))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=press, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return answers


def test_two_sends_of_one_draft_at_once_deliver_one_copy(cm, account, sender, vzd, sent_tasks):
    for _round in range(ROUNDS):
        draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
        answers = _press_send_twice(sender, draft)
        detail = reverse("mailbox:outgoing-detail", args=[draft.pk])
        # Each press gets an answer the page can show: the sent message, or (lost between the two saves) a
        # conflict line; never a 404 or a server error.
        assert len(answers) == 2
        assert all((status == 200 and url == detail) or status == 409 for status, url in answers), answers
        assert (200, detail) in answers
        queued = OutgoingMessage.objects.get(pk=draft.pk)
        assert queued.state == OutgoingMessage.State.QUEUED
        assert [name for name, args in sent_tasks if args == (draft.pk,)] == ["mailbox.tasks.outgoing_deliver"]
        # A second task for the same message (the beat, a retry) finds nothing left to send.
        assert outgoing_deliver(outgoing_id=draft.pk) == OutgoingMessage.State.SENT
        assert outgoing_deliver(outgoing_id=draft.pk) == OutgoingMessage.State.SENT
        assert sum(1 for r in cm.sent_messages() if r.message_id == queued.message_id) == 1
    assert len(cm.sent_messages()) == ROUNDS
