"""Every work action and every opening of a message is audited."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from mailbox import selectors
from mailbox.models import (
    Message,
    MessageRead,
)
from mailbox.services import assignment, claims, notes, reading, states

pytestmark = pytest.mark.django_db


def _audited(action: str, alice, bob, message) -> str:
    if action == "claim":
        claims.message_claim(user=alice, message=message)
        return "message.claimed"
    if action == "release":
        claims.message_claim(user=alice, message=message)
        claims.message_release(user=alice, message=message)
        return "message.released"
    if action == "take":
        assignment.message_take(user=alice, message=message, version=1)
        return "message.taken"
    if action == "assign":
        assignment.message_assign(user=alice, message=message, version=1, assignee_id=bob.pk)
        return "message.assigned"
    if action == "unassign":
        Message.objects.filter(pk=message.pk).update(assignee=bob)
        assignment.message_unassign(user=alice, message=message, version=1)
        return "message.unassigned"
    if action == "state":
        states.message_set_state(user=alice, message=message, version=1, state=Message.State.DONE)
        return "message.state_changed"
    if action == "note":
        notes.note_add(user=alice, message=message, body="gesehen")
        return "note.added"
    raise AssertionError(action)


@pytest.mark.parametrize("action", ["claim", "release", "take", "assign", "unassign", "state", "note"])
def test_every_action_writes_an_audit_event(action, alice, bob, message):
    before = timezone.now()
    expected = _audited(action, alice, bob, message)
    event = AuditEvent.objects.get(action=expected)
    assert event.actor_id == alice.pk
    assert event.message_id == message.pk
    assert event.mailbox_id == message.mailbox_id
    assert before <= event.at <= timezone.now()


def test_state_change_audit_names_old_and_new_state(alice, message):
    states.message_set_state(user=alice, message=message, version=1, state=Message.State.DONE)
    assert AuditEvent.objects.get(action="message.state_changed").details == {"old": "new", "new": "done"}


def test_renewing_a_claim_does_not_flood_the_audit(alice, message):
    claims.message_claim(user=alice, message=message)
    claims.message_claim(user=alice, message=message)
    assert AuditEvent.objects.filter(action="message.claimed").count() == 1


def test_opening_a_message_is_audited_as_viewed(client, reader, message):
    client.force_login(reader)
    response = client.get(reverse("mailbox:message-detail", args=[message.pk]))
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="message.viewed")
    assert (event.actor_id, event.message_id, event.mailbox_id) == (reader.pk, message.pk, message.mailbox_id)
    assert MessageRead.objects.filter(message=message, user=reader).exists()
    # A reader only reads: opening takes no lock.
    assert Message.objects.get(pk=message.pk).claimed_by is None


def test_opening_a_message_as_processor_claims_it(client, alice, message):
    client.force_login(alice)
    assert client.get(reverse("mailbox:message-detail", args=[message.pk])).status_code == 200
    assert Message.objects.get(pk=message.pk).claimed_by == alice
    # Besides signing in (audited too): opening and claiming.
    actions = AuditEvent.objects.filter(actor_id=alice.pk).exclude(action__startswith="signin.")
    assert set(actions.values_list("action", flat=True)) == {
        "message.viewed",
        "message.claimed",
    }


def test_opening_returns_the_readers_with_the_new_read_and_keeps_the_first(alice, bob, message):
    # The read's statement also gives the page its readers (PostgreSQL): the earlier ones and the one it adds.
    assert [r[:3] for r in reading.message_open(user=bob, message=message)] == [("Bernd", "Bauer", "bernd")]
    readers = reading.message_open(user=alice, message=message)
    assert [r[:3] for r in readers] == [("Bernd", "Bauer", "bernd"), ("Anna", "Alt", "anna")]
    stored = dict(MessageRead.objects.filter(message=message).values_list("user__username", "read_at"))
    assert [r[3] for r in readers] == [stored["bernd"], stored["anna"]]
    # Opening again keeps the first read's time and adds no reader; every opening is audited.
    assert reading.message_open(user=alice, message=message) == readers
    assert MessageRead.objects.filter(message=message).count() == 2
    assert AuditEvent.objects.filter(action="message.viewed", message_id=message.pk).count() == 3


def test_opening_to_work_writes_its_two_events_with_one_insert(alice, message):
    with CaptureQueriesContext(connection) as queries:
        reading.message_open(user=alice, message=message, claim_page="page-1")
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith('INSERT INTO "audit_auditevent"')]
    assert len(inserts) == 1
    events = AuditEvent.objects.filter(message_id=message.pk).order_by("pk")
    assert [(e.action, e.actor_id, e.message_subject) for e in events] == [
        ("message.viewed", alice.pk, message.subject),
        ("message.claimed", alice.pk, message.subject),
    ]
    assert not any(q["sql"].startswith('SELECT "mailbox_messageread"') for q in queries.captured_queries)


@pytest.mark.django_db(transaction=True)
def test_opening_while_the_same_users_other_tab_opens_it_still_lists_the_user_among_the_readers(alice, message):
    # Two tabs (or a double click): the second read's statement waits for the first's row, then adds none. The
    # readers its statement saw are from before the first committed: the user must still be among them.
    first_read, commit = threading.Event(), threading.Event()
    answers: dict[str, object] = {}

    def first_tab() -> None:
        try:
            with transaction.atomic():
                reading.message_open(user=alice, message=message)
                first_read.set()
                commit.wait(30)
        finally:
            connections.close_all()

    def second_tab() -> None:
        try:
            answers["readers"] = reading.message_open(user=alice, message=message)
        finally:
            connections.close_all()

    tabs = [threading.Thread(target=first_tab), threading.Thread(target=second_tab)]
    tabs[0].start()
    assert first_read.wait(30)
    tabs[1].start()
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:  # until the second tab's read waits for the first tab's row
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            time.sleep(0.01)
        else:
            pytest.fail("the second tab's read did not wait for the first tab's")
    commit.set()
    for tab in tabs:
        tab.join(30)
    assert MessageRead.objects.filter(message=message).count() == 1
    readers = selectors.message_detail_lists(
        alice, *selectors.message_detail_row_for_user(alice, message.pk), readers=answers["readers"]
    ).readers
    assert [r[2] for r in readers] == ["anna"]
