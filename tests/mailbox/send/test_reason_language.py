"""Why a message was held or refused is kept untranslated and shown in the reader's language.

The worker writes the reason once; colleagues read it later, some with the portal in English. So the row and the
audit event keep the msgid and its parameters (kimportal.texts), and the page translates. Rows written before keep
their German sentence and show it as it is.
"""

from __future__ import annotations

import html

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import translation

from audit.models import AuditEvent
from mailbox.models import KimAccount, OutgoingMessage
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.outbox import outgoing_deliver, outgoing_send
from tests.mailbox.conftest import HOSPITAL, PRAXIS
from tests.mailbox.send.conftest import OUTSIDE

pytestmark = pytest.mark.django_db(transaction=True)

HELD_DE = f"Zurückgehalten: Das KIM-Konto des Postfachs {HOSPITAL} ist abgeschaltet."
HELD_EN = f"Held back: the KIM account of the mailbox {HOSPITAL} is switched off."


def _queued(user, account, to) -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=user, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=list(to))
    )
    return outgoing_send(user=user, draft=draft, version=draft.version)


def _page(client, user, name: str, *args, language: str | None) -> str:
    client.force_login(user)
    if language is None:
        client.cookies.pop(settings.LANGUAGE_COOKIE_NAME, None)
    else:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _held(account, sender, *, worker_language: str) -> OutgoingMessage:
    """Held by the worker, which runs in a language of its own: what it stores must not depend on that."""
    outgoing = _queued(sender, account, (PRAXIS,))
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)
    with translation.override(worker_language):
        assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.HELD
    return OutgoingMessage.objects.get(pk=outgoing.pk)


def test_a_held_message_says_why_in_english_to_an_english_reader(cm, account, sender, vzd, sent_tasks, client):
    outgoing = _held(account, sender, worker_language="de")

    detail = _page(client, sender, "mailbox:outgoing-detail", outgoing.pk, language="en")
    assert HELD_EN in detail and "Zurückgehalten" not in detail
    outbox = _page(client, sender, "mailbox:outbox", language="en")
    assert HELD_EN in outbox and "Zurückgehalten" not in outbox


def test_a_held_message_says_why_in_german_by_default(cm, account, sender, vzd, sent_tasks, client):
    outgoing = _held(account, sender, worker_language="en")

    detail = _page(client, sender, "mailbox:outgoing-detail", outgoing.pk, language=None)
    assert HELD_DE in detail and "Held back" not in detail
    assert HELD_DE in _page(client, sender, "mailbox:outgoing-detail", outgoing.pk, language="de")


def test_the_held_reason_and_its_audit_event_keep_the_msgid_and_the_address(cm, account, sender, vzd, sent_tasks):
    outgoing = _held(account, sender, worker_language="en")

    held = {
        "msgid": (
            "Zurückgehalten: Das KIM-Konto des Postfachs %(address)s ist abgeschaltet. Die Nachricht wird nicht "
            "gesendet und bleibt erhalten; sie geht hinaus, sobald das Konto wieder aktiv ist, oder kann als Entwurf "
            "zurückgeholt werden."
        ),
        "params": {"address": HOSPITAL},
    }
    assert outgoing.last_error == held
    assert AuditEvent.objects.get(action="outgoing.held").details["reason"] == held


def test_a_refused_recipient_and_the_failure_read_in_the_reader_language(cm, account, sender, vzd, sent_tasks, client):
    cm.arm_rcpt_fault(OUTSIDE, "550")
    outgoing = _queued(sender, account, (OUTSIDE,))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.FAILED
    where = f"{account.cm_host}:{account.smtp_port}"

    english = _page(client, sender, "mailbox:outgoing-detail", outgoing.pk, language="en")
    assert "Refused by the Client Module: 550" in english
    assert f"{where} refused the message permanently (550" in english
    assert f"{where} refused the recipients (550" in english  # the attempt's line
    assert "abgelehnt" not in english

    german = _page(client, sender, "mailbox:outgoing-detail", outgoing.pk, language=None)
    assert "Vom Clientmodul abgelehnt: 550" in german
    assert f"{where} hat die Nachricht dauerhaft abgelehnt (550" in german
    assert "Refused" not in german
    event = AuditEvent.objects.get(action="outgoing.failed")
    assert event.details["reason"]["msgid"] == "%(where)s hat die Nachricht dauerhaft abgelehnt (%(reply)s)."


BEFORE = ("mailbox", "0024_outgoing_held_and_left_drafts")


def test_rows_written_before_keep_their_german_sentence(account, sender, client):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps
    sentence = "Zurückgehalten: Das Postfach alt@klinik.kim.telematik ist abgeschaltet."
    outgoing = old.get_model("mailbox", "OutgoingMessage").objects.create(
        mailbox_id=account.mailbox_id,
        author_id=sender.pk,
        subject="Alt",
        to=[PRAXIS],
        state="failed",
        message_id="<alt@kimportal.invalid>",
        last_error=sentence,
    )
    old.get_model("mailbox", "OutgoingRecipient").objects.create(
        outgoing_id=outgoing.pk, address=PRAXIS, state="failed", reason="Vom Clientmodul abgelehnt: 550 alt"
    )
    old.get_model("mailbox", "DeliveryAttempt").objects.create(
        outgoing_id=outgoing.pk, number=1, outcome="permanent", error="Abgelehnt beim ersten Versuch."
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    migrated = OutgoingMessage.objects.get(pk=outgoing.pk)
    assert migrated.last_error == sentence
    assert migrated.recipient_rows.get().reason == "Vom Clientmodul abgelehnt: 550 alt"
    assert migrated.attempts.get().error == "Abgelehnt beim ersten Versuch."
    english = _page(client, sender, "mailbox:outgoing-detail", outgoing.pk, language="en")
    for shown in (sentence, "Vom Clientmodul abgelehnt: 550 alt", "Abgelehnt beim ersten Versuch."):
        assert shown in english
