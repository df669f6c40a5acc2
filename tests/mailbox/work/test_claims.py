"""The read-lock: one holder, a lease that ends to the second, release and lock breaking."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from kimportal import errors
from mailbox.models import (
    Message,
    MessageRead,
    Notification,
)
from mailbox.services import assignment, claims, reading
from mailbox.services.guard import claim_held_error
from tests.mailbox.work.support import Role, hold, snapshot

pytestmark = pytest.mark.django_db


@pytest.mark.django_db(transaction=True)  # the claim is its own transaction, as when the claim button calls it
def test_a_claim_that_cannot_be_audited_is_not_taken(alice, message, monkeypatch):
    # The claim and its audit event are one transaction: a failure in between leaves no unaudited lock.
    def broken_audit(**kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(claims, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        claims.message_claim(user=alice, message=message)
    message.refresh_from_db()
    assert message.claimed_by is None and message.claim_expires_at is None


@pytest.mark.django_db(transaction=True)
def test_opening_to_work_is_one_transaction_with_its_claim(alice, message, monkeypatch):
    # Opening claims inside the opening's transaction (no savepoint): a claim that fails takes the
    # read mark and the view's audit event with it, and leaves no lock.
    def broken_audit(**kwargs):
        if kwargs.get("action") == "message.claimed":
            raise RuntimeError("audit table unavailable")
        return real_audit(**kwargs)

    real_audit = claims.audit_record
    monkeypatch.setattr(claims, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        reading.message_open(user=alice, message=message, claim_page="page-1")
    message.refresh_from_db()
    assert message.claimed_by is None
    assert not MessageRead.objects.filter(message=message, user=alice).exists()
    assert not AuditEvent.objects.filter(message_id=message.pk, action="message.viewed").exists()


def test_claim_of_a_free_message_wins(alice, message):
    before = timezone.now()
    result = claims.message_claim(user=alice, message=message)
    after = timezone.now()

    assert result.won and not result.renewed
    message.refresh_from_db()
    assert message.claimed_by == alice
    assert before <= message.claimed_at <= after
    assert message.claim_expires_at == message.claimed_at + timedelta(seconds=claims.claim_seconds())
    assert message.claim_active()


def _claim_view(pk: int) -> tuple:
    row = Message.objects.select_related("claimed_by", "mailbox").only(*claims.CLAIM_VIEW_FIELDS).get(pk=pk)
    return (
        *(getattr(row, name) for name in claims.CLAIM_VIEW_FIELDS if "__" not in name),
        row.mailbox.address,
        *(getattr(row.claimed_by, name) for name in ("first_name", "last_name", "username")),
    )


@pytest.mark.parametrize("page", ["page-1", ""])
def test_a_won_claim_is_one_statement_that_returns_the_row_as_written(alice, message, page, django_assert_num_queries):
    # The claim's UPDATE returns what it wrote: no second read of the row (the permission check, the UPDATE, the
    # audit event), and the result is the row as reading it back would load it, audited with its snapshots.
    loaded = Message.objects.select_related("mailbox").only("pk", "mailbox_id", "state", "mailbox__address")
    opened = loaded.get(pk=message.pk)
    with CaptureQueriesContext(connection) as unclaimed:
        claims.message_claim(user=alice, message=Message.objects.get(pk=message.pk))  # warm: compiled once
    claims.message_release(user=alice, message=message)
    audits = sum("audit" in query["sql"] for query in unclaimed.captured_queries)
    with django_assert_num_queries(2 + audits):
        result = claims.message_claim(user=alice, message=opened, page=page)
    assert result.won and not result.renewed
    got = result.message
    assert (
        *(getattr(got, name) for name in claims.CLAIM_VIEW_FIELDS if "__" not in name),
        got.mailbox.address,
        *(getattr(got.claimed_by, name) for name in ("first_name", "last_name", "username")),
    ) == _claim_view(message.pk)
    assert got.claim_page == page and got.claimed_at == got.claim_renewed_at
    event = AuditEvent.objects.filter(message_id=message.pk, action="message.claimed").latest("pk")
    assert (event.message_subject, event.mailbox_address) == (message.subject, message.mailbox.address)
    # A renewal (the heartbeat's: no page) keeps the page that claimed and its start.
    renewed = claims.message_claim(user=alice, message=message)
    assert renewed.won and renewed.renewed
    assert renewed.message.claim_page == page and renewed.message.claimed_at == got.claimed_at


def test_second_claimer_loses_and_is_told_who_holds_it(alice, bob, message):
    claims.message_claim(user=alice, message=message)
    held = Message.objects.get(pk=message.pk)

    result = claims.message_claim(user=bob, message=message)

    assert not result.won and not result.renewed
    assert result.message.claimed_by == alice
    text = claim_held_error(result.message).message
    assert "Anna Alt" in text
    assert timezone.localtime(held.claimed_at).strftime("%H:%M") in text
    message.refresh_from_db()
    assert (message.claimed_by, message.claimed_at, message.claim_expires_at) == (
        alice,
        held.claimed_at,
        held.claim_expires_at,
    )


def test_holder_renews_lease_keeping_claimed_at(alice, message):
    since = timezone.now() - timedelta(minutes=7)
    hold(message, alice, since=since, expires=since + timedelta(minutes=10))

    before = timezone.now()
    result = claims.message_claim(user=alice, message=message)

    assert result.won and result.renewed
    message.refresh_from_db()
    assert message.claimed_by == alice
    assert message.claimed_at == since
    assert message.claim_expires_at >= before + timedelta(seconds=claims.claim_seconds())


def test_lease_ends_to_the_second(alice, bob, message):
    # Two seconds left: still held.
    hold(message, alice, expires=timezone.now() + timedelta(seconds=2))
    assert not claims.message_claim(user=bob, message=message).won
    assert Message.objects.get(pk=message.pk).claimed_by == alice

    # Expired one second ago: free, without any cleanup job having run.
    hold(message, alice, expires=timezone.now() - timedelta(seconds=1))
    assert not Message.objects.get(pk=message.pk).claim_active()
    result = claims.message_claim(user=bob, message=message)
    assert result.won and not result.renewed
    message.refresh_from_db()
    assert message.claimed_by == bob
    assert message.claim_expires_at > timezone.now() + timedelta(seconds=claims.claim_seconds() - 5)


def test_expired_lease_does_not_block_actions(alice, bob, message):
    hold(message, alice, expires=timezone.now() - timedelta(seconds=1))
    assignment.message_take(user=bob, message=message, version=1)
    assert Message.objects.get(pk=message.pk).assignee == bob


@pytest.mark.parametrize("who", ["reader", "observer", "outsider"])
def test_only_processors_and_owners_may_claim(request, who, message):
    user = request.getfixturevalue(who)
    before = snapshot(message)
    with pytest.raises(errors.NotAllowed):
        claims.message_claim(user=user, message=message)
    assert snapshot(message) == before


@pytest.mark.parametrize("who", ["alice", "owner"])
def test_processors_and_owners_may_claim(request, who, message):
    user = request.getfixturevalue(who)
    assert claims.message_claim(user=user, message=message).won


def test_release_only_by_the_holder(alice, bob, owner, message):
    claims.message_claim(user=alice, message=message)

    assert claims.message_release(user=bob, message=message) is False
    assert claims.message_release(user=owner, message=message) is False
    assert Message.objects.get(pk=message.pk).claimed_by == alice

    assert claims.message_release(user=alice, message=message) is True
    message.refresh_from_db()
    assert (message.claimed_by, message.claimed_at, message.claim_expires_at) == (None, None, None)
    assert claims.message_release(user=alice, message=message) is False


def test_owner_breaks_lock_holder_is_told_and_it_is_audited(alice, owner, message):
    claims.message_claim(user=alice, message=message)

    assert claims.message_break_lock(user=owner, message=message) is True

    message.refresh_from_db()
    assert message.claimed_by is None and message.claim_expires_at is None
    note = Notification.objects.get(user=alice)
    assert note.kind == Notification.Kind.LOCK_BROKEN
    assert note.actor == owner and note.message_id == message.pk
    assert "Olga Ober" in note.text
    event = AuditEvent.objects.get(action="message.lock_broken")
    assert event.actor_id == owner.pk and event.message_id == message.pk and event.mailbox_id == message.mailbox_id
    assert event.details["holder"] == alice.pk
    # Now free for a colleague.
    assert claims.message_claim(user=owner, message=message).won


def test_breaking_a_free_or_expired_lock_does_nothing(alice, owner, message):
    assert claims.message_break_lock(user=owner, message=message) is False
    hold(message, alice, expires=timezone.now() - timedelta(seconds=1))
    assert claims.message_break_lock(user=owner, message=message) is False
    assert not Notification.objects.exists()
    assert not AuditEvent.objects.filter(action="message.lock_broken").exists()


@pytest.mark.parametrize("who", ["bob", "reader", "observer", "outsider"])
def test_only_owners_break_locks(request, who, alice, message):
    claims.message_claim(user=alice, message=message)
    before = snapshot(message)
    with pytest.raises(errors.NotAllowed):
        claims.message_break_lock(user=request.getfixturevalue(who), message=message)
    assert snapshot(message) == before
    assert not Notification.objects.filter(kind=Notification.Kind.LOCK_BROKEN).exists()


@pytest.mark.parametrize("held", [True, False])
def test_leaving_sends_one_event_to_the_watchers(alice, message, monkeypatch, django_capture_on_commit_callbacks, held):
    # Every event reaches every list showing the row: leaving that releases the lock announces both
    # changes with the release's one message change (which redraws presence too).
    from mailbox import events
    from mailbox.services.presence import presence_join

    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(events, "send_to_group", lambda group, event: sent.append((group, event["type"])))
    with django_capture_on_commit_callbacks(execute=True):
        presence_join(user=alice, message=message, channel_name="page-a", page_token="")
        if held:
            claims.message_claim(user=alice, message=message)
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        claims.message_leave(user=alice, message_id=message.pk, channel_name="page-a")
    to_watchers = [kind for group, kind in sent if group == events.message_group(message.pk)]
    assert to_watchers == (["message.changed"] if held else ["presence.changed"])
    message.refresh_from_db()
    assert message.claimed_by is None


@pytest.mark.parametrize("held", [True, False])
def test_leaving_asks_little(alice, bob, message, django_capture_on_commit_callbacks, held):
    # Every page that closes leaves: its presence goes with one DELETE … RETURNING; a page whose user holds no
    # lock locks no row and asks nothing more (the socket knows the mailbox); one with the lock releases it.
    from mailbox.services.presence import presence_join

    presence_join(user=alice, message=message, channel_name="page-a", page_token="")
    presence_join(user=bob, message=message, channel_name="page-b", page_token="")
    if held:
        claims.message_claim(user=alice, message=message)
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        released = claims.message_leave(
            user=alice, message_id=message.pk, channel_name="page-a", mailbox_id=message.mailbox_id
        )
    statements = [q["sql"].split()[0] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    if held:
        # Lock the row, remove the page (saying whether the user has it open elsewhere), release, audit.
        assert statements == ["SELECT", "DELETE", "UPDATE", "INSERT"]
        assert released and AuditEvent.objects.filter(action="message.released", message_id=message.pk).exists()
    else:
        assert statements == ["SELECT", "DELETE"]
        assert not released
    assert list(message.presences.values_list("channel_name", flat=True)) == ["page-b"]


@pytest.mark.parametrize("other_page", ["fresh", "stale", "colleague", None])
def test_leaving_keeps_the_lock_only_while_another_fresh_page_of_the_holder_has_it_open(
    alice, bob, message, other_page
):
    from mailbox.models import Presence
    from mailbox.selectors.presence import PRESENCE_TTL_SECONDS
    from mailbox.services.presence import presence_join

    presence_join(user=alice, message=message, channel_name="page-a", page_token="")
    if other_page is not None:
        presence_join(user=bob if other_page == "colleague" else alice, message=message, channel_name="page-b")
    if other_page == "stale":  # a crashed server's socket: older than the TTL, it keeps nothing
        old = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS + 1)
        Presence.objects.filter(channel_name="page-b").update(last_seen=old)
    claims.message_claim(user=alice, message=message)
    released = claims.message_leave(user=alice, message_id=message.pk, channel_name="page-a")
    message.refresh_from_db()
    assert released == (other_page != "fresh")
    assert (message.claimed_by_id == alice.pk) == (other_page == "fresh")
    assert not Presence.objects.filter(channel_name="page-a").exists()


@pytest.mark.parametrize("checked", [False, True])
@pytest.mark.parametrize("writing", [False, True])
def test_a_heartbeat_renews_the_page_and_announces_only_a_changed_writing_state(
    alice, message, monkeypatch, django_capture_on_commit_callbacks, writing, checked
):
    # `checked`: the socket passes the role its batched access check just read (mailbox.consumers.message).
    from mailbox import events
    from mailbox.models import Presence
    from mailbox.services.presence import presence_join

    presence_join(user=alice, message=message, channel_name="page-a", page_token="")
    Presence.objects.filter(channel_name="page-a").update(last_seen=timezone.now() - timedelta(seconds=30))
    claims.message_claim(user=alice, message=message)
    sent: list[str] = []
    monkeypatch.setattr(events, "send_to_group", lambda group, event: sent.append(event["type"]))
    until = Message.objects.get(pk=message.pk).claim_expires_at
    known = {"mailbox_role": (message.mailbox_id, Role.PROCESSOR)} if checked else {}
    with django_capture_on_commit_callbacks(execute=True):
        assert claims.message_heartbeat(
            user=alice, message_id=message.pk, channel_name="page-a", writing=writing, **known
        )
    row = Presence.objects.get(channel_name="page-a")
    assert row.writing is writing and row.last_seen > timezone.now() - timedelta(seconds=5)
    assert Message.objects.get(pk=message.pk).claim_expires_at > until  # the holder's lease renewed
    assert sent == (["presence.changed"] if writing else [])
    # A page whose row is gone must reconnect: the beat renews nothing.
    Presence.objects.filter(channel_name="page-a").delete()
    assert not claims.message_heartbeat(
        user=alice, message_id=message.pk, channel_name="page-a", writing=writing, **known
    )


@pytest.mark.parametrize("role", [Role.READER, None])
def test_a_heartbeat_of_someone_who_may_no_longer_work_on_the_message_renews_only_the_page(alice, message, role):
    # The role the socket checked a moment ago (a reader now, or no member any more): the page stays, the lease not.
    from mailbox.models import Presence
    from mailbox.services.presence import presence_join

    presence_join(user=alice, message=message, channel_name="page-a", page_token="")
    claims.message_claim(user=alice, message=message)
    until = Message.objects.get(pk=message.pk).claim_expires_at
    assert claims.message_heartbeat(
        user=alice, message_id=message.pk, channel_name="page-a", writing=False, mailbox_role=(message.mailbox_id, role)
    )
    assert Message.objects.get(pk=message.pk).claim_expires_at == until
    assert Presence.objects.filter(channel_name="page-a").exists()


@pytest.mark.parametrize("held", [True, False])
def test_the_lock_panels_row_is_what_the_orm_reads(alice, bob, message, django_user_model, held):
    # The live lock panel's message comes from a compiled query: the same values and holder as the ORM's, and
    # nothing for a user who may not see the message.
    from mailbox import selectors

    if held:
        claims.message_claim(user=alice, message=message)
    expected = (
        Message.objects.filter(pk=message.pk)
        .select_related("claimed_by")
        .only("mailbox_id", "version", "claimed_by_id", "claimed_at", "claim_expires_at", "claimed_by__username")
        .get()
    )
    with CaptureQueriesContext(connection) as queries:
        found = selectors.message_lock_for_user(bob, message.pk)
    assert len(queries) == 2  # the row (with the visibility check) and who has it open
    for name in ("pk", "mailbox_id", "version", "claimed_by_id", "claimed_at", "claim_expires_at"):
        assert getattr(found, name) == getattr(expected, name)
    if held:
        assert found.claimed_by.get_full_name() == alice.get_full_name()
        assert found.claimed_by.username == alice.username
    else:
        assert found.claimed_by is None
    assert found.claim_active() == expected.claim_active()
    stranger = django_user_model.objects.create_user("stranger")
    assert selectors.message_lock_for_user(stranger, message.pk) is None
