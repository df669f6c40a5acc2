"""The trail holds up on PostgreSQL: the database refuses changes, audit_verify names every kind of tampering,
and twenty writers at once still make one straight chain."""

from __future__ import annotations

import threading
from io import StringIO
from itertools import pairwise

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from audit.chain import GENESIS, content_hash, link_hash
from audit.models import AuditEvent, ChainHead
from audit.services import event_record, events_together
from audit.verify import chain_verify
from tests.mailbox.factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the triggers under test are PostgreSQL's"),
]

WRITERS = 20
EACH = 25
WAIT = 60  # seconds a barrier may wait before the test counts as hung


@pytest.fixture
def trail() -> list[AuditEvent]:
    """Six committed events, each sealed by the database at its commit."""
    user = UserFactory(username="pflege1")
    for i in range(6):
        event_record(actor=user, action="message.viewed", message_id=100 + i, message_subject=f"Befund {i}")
    return list(AuditEvent.objects.order_by("seq"))


def tamper(sql: str, params: list | None = None) -> None:
    """As a database superuser who switches the triggers off for the session (what an attacker with full access
    could do): the trail's last line of defence is then audit_verify."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def verify() -> str:
    err = StringIO()
    with pytest.raises(CommandError, match="Audit-Kette verletzt"):
        call_command("audit_verify", stderr=err, stdout=StringIO())
    return err.getvalue()


def test_an_untouched_trail_verifies(trail):
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert f"6 Ereignisse, Kopf #6 {trail[-1].hash}" in out.getvalue()
    assert [e.seq for e in trail] == [1, 2, 3, 4, 5, 6]
    assert trail[0].prev_hash == GENESIS
    for before, after in pairwise(trail):
        assert after.prev_hash == before.hash


def test_the_database_refuses_update_and_delete(trail):
    event = trail[2]
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="message.nothing")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE audit_auditevent SET seq = NULL WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM audit_auditevent")
    assert list(AuditEvent.objects.order_by("seq")) == trail
    assert AuditEvent.objects.get(pk=event.pk).action == "message.viewed"


def test_an_insert_cannot_choose_its_place_in_the_chain(trail):
    forged = content_hash(
        at=trail[0].at, action="message.viewed", actor_id=None, actor_username="", mailbox_id=None,
        mailbox_address="", message_id=None, message_subject="", details={},
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (seq, at, action, actor_username, mailbox_address, message_subject, "
            "details, content_hash, prev_hash, hash) VALUES (3, %s, 'message.viewed', '', '', '', '{}', %s, %s, %s)",
            [trail[0].at, forged, trail[1].hash, "f" * 64],
        )
    # The trigger ignored the place and the hashes sent and gave the row the next place at commit.
    last = AuditEvent.objects.order_by("-seq").first()
    assert (last.seq, last.prev_hash) == (7, trail[-1].hash)
    assert chain_verify().ok


def test_a_changed_event_is_named(trail):
    tamper("UPDATE audit_auditevent SET actor_username = 'jemand' WHERE seq = 3")
    errors = verify()
    assert f"changed: Ereignis #3 (id {trail[2].pk})" in errors
    assert "#4" not in errors and "#2" not in errors


def test_a_number_too_long_for_python_in_the_details_is_named_and_the_walk_goes_on(trail):
    tamper("UPDATE audit_auditevent SET details = ('{\"x\": 1' || repeat('0', 5000) || '}')::jsonb WHERE seq = 2")
    tamper("DELETE FROM audit_auditevent WHERE seq = 5")
    found = verify()
    assert f"changed: Ereignis #2 (id {trail[1].pk}): Inhalt passt nicht" in found
    assert f"removed: Ereignis #6 (id {trail[5].pk}): davor entfernt: #5." in found


def test_a_changed_event_with_recomputed_hashes_is_named(trail):
    # The attacker knows the formula and recomputes the event's own hashes; its successor still names the original.
    e = trail[2]
    digest = content_hash(
        at=e.at, action="message.nothing", actor_id=e.actor_id, actor_username=e.actor_username,
        mailbox_id=e.mailbox_id, mailbox_address=e.mailbox_address, message_id=e.message_id,
        message_subject=e.message_subject, details=e.details,
    )  # fmt: skip
    tamper(
        "UPDATE audit_auditevent SET action = 'message.nothing', content_hash = %s, hash = %s WHERE seq = 3",
        [digest, link_hash(e.prev_hash, 3, digest)],
    )
    errors = verify()
    assert f"Ereignis #4 (id {trail[3].pk})" in errors and "ersetzt" in errors


def test_a_removed_event_is_named(trail):
    tamper("DELETE FROM audit_auditevent WHERE seq = 3")
    assert f"removed: Ereignis #4 (id {trail[3].pk}): davor entfernt: #3." in verify()


def test_a_removed_last_event_is_noticed_through_the_chain_head(trail):
    tamper("DELETE FROM audit_auditevent WHERE seq = 6")
    assert "die Kette endet bei #5, ihr Kopf steht bei #6" in verify()


def test_a_removed_chain_head_is_named(trail):
    tamper("DELETE FROM audit_chainhead")
    assert "der Kopf der Kette fehlt" in verify()


def test_reordered_events_are_named(trail):
    tamper("UPDATE audit_auditevent SET seq = -2 WHERE seq = 2")
    tamper("UPDATE audit_auditevent SET seq = 2 WHERE seq = 4")
    tamper("UPDATE audit_auditevent SET seq = 4 WHERE seq = -2")
    errors = verify()
    assert f"reordered: Ereignis #2 (id {trail[3].pk}): steht an #2, wurde aber als #4 geschrieben." in errors
    assert f"reordered: Ereignis #4 (id {trail[1].pk}): steht an #4, wurde aber als #2 geschrieben." in errors


def test_an_event_inserted_into_the_middle_is_named(trail):
    # Room is made by renumbering the later events; the forged one is chained correctly to its predecessor.
    for seq in (6, 5, 4):
        tamper("UPDATE audit_auditevent SET seq = seq + 1 WHERE seq = %s", [seq])
    digest = content_hash(
        at=trail[2].at, action="message.viewed", actor_id=None, actor_username="niemand", mailbox_id=None,
        mailbox_address="", message_id=None, message_subject="", details={},
    )  # fmt: skip
    tamper(
        "INSERT INTO audit_auditevent (seq, at, action, actor_username, mailbox_address, message_subject, details, "
        "content_hash, prev_hash, hash) VALUES (4, %s, 'message.viewed', 'niemand', '', '', '{}', %s, %s, %s)",
        [trail[2].at, digest, trail[2].hash, link_hash(trail[2].hash, 4, digest)],
    )
    forged = AuditEvent.objects.get(actor_username="niemand")
    errors = verify()
    assert f"inserted: Ereignis #4 (id {forged.pk})" in errors
    assert f"reordered: Ereignis #5 (id {trail[3].pk})" in errors
    # The shifted block is named once, at its start.
    assert f"id {trail[4].pk}" not in errors


def test_an_event_written_past_the_chain_is_named(trail):
    tamper(
        "INSERT INTO audit_auditevent (at, action, actor_username, mailbox_address, message_subject, details, "
        "content_hash, prev_hash, hash) VALUES (now(), 'message.viewed', 'niemand', '', '', '{}', '', '', '')"
    )
    # The next honest writer seals its own event only; the forged row stays outside the chain.
    event_record(action="mailbox.fetch_requested")
    forged = AuditEvent.objects.get(actor_username="niemand")
    assert forged.seq is None
    assert AuditEvent.objects.get(action="mailbox.fetch_requested").seq == 7
    errors = verify()
    assert f"inserted: Ereignis ohne Platz (id {forged.pk})" in errors
    assert "#7" not in errors


class Rollback(Exception):
    pass


def test_twenty_concurrent_writers_make_one_straight_chain(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    writers = [UserFactory(username=f"schreiber{i}") for i in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def write(user) -> None:
        try:
            start.wait(timeout=WAIT)
            for i in range(EACH):
                try:
                    with transaction.atomic():
                        event_record(actor=user, action="message.viewed", message_id=i)
                        if i % 5 == 4:
                            raise Rollback  # an action that fails after recording: no event, and no gap
                except Rollback:
                    pass
        except BaseException as exc:
            errors.append(exc)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(user,), daemon=True) for user in writers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not errors, errors
    kept = WRITERS * (EACH - EACH // 5)
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "prev_hash", "hash"))
    assert [seq for seq, _, _ in rows] == list(range(1, kept + 1))
    assert all(after[1] == before[2] for before, after in pairwise(rows))
    assert ChainHead.objects.values_list("seq", "hash").get() == (kept, rows[-1][2])
    result = chain_verify()
    assert result.ok and result.checked == kept


def test_a_transaction_with_many_events_is_sealed_in_order_at_once():
    user = UserFactory(username="stapel")
    event_record(actor=user, action="message.viewed", message_id=1)
    with transaction.atomic():
        for i in range(3000):
            event_record(actor=user, action="message.viewed", message_id=i)
        try:
            with transaction.atomic():  # a savepoint rolled back: its event is gone, no gap
                event_record(actor=user, action="message.viewed", message_id=-1)
                raise Rollback
        except Rollback:
            pass
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "message_id"))
    assert rows == [(1, 1)] + [(i + 2, i) for i in range(3000)]
    assert ChainHead.objects.values_list("seq", flat=True).get() == 3001
    assert chain_verify().ok


def test_events_recorded_together_go_in_with_one_insert_and_take_their_places_in_order():
    user = UserFactory(username="zusammen")
    event_record(actor=user, action="message.viewed", message_id=1)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        with events_together():
            first = event_record(actor=user, action="message.viewed", message_id=2, message_subject="Befund")
            second = event_record(actor=user, action="message.claimed", message_id=2, details={"until": "x"})
            third = event_record(actor=user, action="message.released", message_id=2)
            # Not in yet: the block's end inserts them.
            assert (first.pk, second.pk, third.pk) == (None, None, None)
            assert not AuditEvent.objects.filter(message_id=2).exists()
        assert sum(q["sql"].startswith('INSERT INTO "audit_auditevent"') for q in queries.captured_queries) == 1
        assert first.pk < second.pk < third.pk and not second._state.adding
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "pk", "action", "message_subject", "details"))
    assert rows[1:] == [
        (2, first.pk, "message.viewed", "Befund", {}),
        (3, second.pk, "message.claimed", "", {"until": "x"}),
        (4, third.pk, "message.released", "", {}),
    ]
    assert chain_verify().ok


def test_events_together_record_nothing_when_the_block_fails_and_need_a_transaction():
    user = UserFactory(username="abbruch")
    with pytest.raises(RuntimeError), transaction.atomic(), events_together():
        event_record(actor=user, action="message.viewed", message_id=1)
        raise RuntimeError("the action failed")
    assert not AuditEvent.objects.exists()
    # Outside a transaction the events could go in without the action they record (or the action without them).
    with pytest.raises(transaction.TransactionManagementError), events_together():
        pass
    # Nested in another block, an event goes in with the outer block's.
    with transaction.atomic(), events_together():
        with events_together():
            inner = event_record(actor=user, action="message.viewed", message_id=3)
        assert inner.pk is None
    assert AuditEvent.objects.get().pk == inner.pk
