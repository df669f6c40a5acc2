"""Working a shared mailbox: read-lock (claim), responsibility, state, notes, substitutes, audit, lists.

Each test sets the lease times directly instead of sleeping: a lease must end to the second, not on a cron tick.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django.utils import timezone

from kimportal import errors
from kimportal.errors import PortalError
from mailbox import selectors
from mailbox.models import (
    Absence,
    AssignmentPeriod,
    AuditEvent,
    Membership,
    Message,
    MessageRead,
    Note,
    Notification,
    Presence,
)
from mailbox.selectors import MessageFilter, message_list_for_user
from mailbox.services import absences, assignment, claims, notes, states
from mailbox.services.guard import claim_held_error
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
Role = Membership.Role


def raw_mail(
    subject: str = "Befund",
    *,
    body: str = "Hallo",
    sender: str = "Praxis Test <praxis@praxis-test.kim.telematik-test>",
    dienstkennung: str = "Arztbrief;VHitG-Versand;V1.2",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "station@klinikum-test.kim.telematik-test"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="praxis-test.kim.telematik-test")
    msg["X-KIM-Dienstkennung"] = dienstkennung
    msg.set_content(body)
    return msg.as_bytes()


_uidl = iter(range(1_000_000))


def ingest(box, **kwargs) -> Message:
    return message_ingest(mailbox=box, uidl=f"w{next(_uidl)}", raw=raw_mail(**kwargs))


def member(box, username: str, role: str, first: str, last: str):
    user = UserFactory(username=username, first_name=first, last_name=last)
    MembershipFactory(mailbox=box, user=user, role=role)
    return user


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    # The factory hashes every user's password; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def box():
    return MailboxFactory(display_name="Kardiologie")


@pytest.fixture
def owner(box):
    return member(box, "olga", Role.OWNER, "Olga", "Ober")


@pytest.fixture
def alice(box):
    return member(box, "anna", Role.PROCESSOR, "Anna", "Alt")


@pytest.fixture
def bob(box):
    return member(box, "bernd", Role.PROCESSOR, "Bernd", "Bauer")


@pytest.fixture
def carol(box):
    return member(box, "carla", Role.PROCESSOR, "Carla", "Christ")


@pytest.fixture
def reader(box):
    return member(box, "rita", Role.READER, "Rita", "Roth")


@pytest.fixture
def observer(box):
    return member(box, "otto", Role.OBSERVER, "Otto", "Ohm")


@pytest.fixture
def outsider():
    user = UserFactory(username="fremd", first_name="Fritz", last_name="Fremd")
    MembershipFactory(user=user, role=Role.OWNER)  # owner elsewhere: no power here
    return user


@pytest.fixture
def message(box):
    return message_ingest(mailbox=box, uidl="m1", raw=MAIL_WITH_PDF)


def hold(message: Message, user, *, expires: datetime, since: datetime | None = None) -> None:
    Message.objects.filter(pk=message.pk).update(
        claimed_by=user, claimed_at=since or expires - timedelta(minutes=10), claim_expires_at=expires
    )


def snapshot(message: Message) -> dict:
    """Everything an action could change, to prove a refused action changed nothing."""
    m = Message.objects.get(pk=message.pk)
    return {
        "state": m.state,
        "due_at": m.due_at,
        "assignee": m.assignee_id,
        "version": m.version,
        "claimed_by": m.claimed_by_id,
        "claim_expires_at": m.claim_expires_at,
        "notes": Note.objects.filter(message=message).count(),
        "periods": list(AssignmentPeriod.objects.filter(message=message).values_list("user_id", "ended_at")),
        "audit": AuditEvent.objects.filter(message=message).count(),
        "notifications": Notification.objects.count(),
    }


# --- read-lock (claim) ---------------------------------------------------------------------------------------


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
    assert event.actor == owner and event.message_id == message.pk and event.mailbox_id == message.mailbox_id
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


# --- responsibility --------------------------------------------------------------------------------------------


def open_periods(message: Message) -> list[int]:
    return list(
        AssignmentPeriod.objects.filter(message=message, ended_at__isnull=True).values_list("user_id", flat=True)
    )


def test_take_assign_unassign_keep_a_history_with_one_open_period(alice, bob, owner, message):
    m = assignment.message_take(user=alice, message=message, version=1)
    assert (m.assignee, m.state, m.version) == (alice, Message.State.IN_PROGRESS, 2)
    assert open_periods(message) == [alice.pk]

    m = assignment.message_assign(user=owner, message=message, version=2, assignee_id=bob.pk, note="Bitte Rückruf")
    assert (m.assignee, m.version) == (bob, 3)
    assert open_periods(message) == [bob.pk]
    assert Notification.objects.get(user=bob).kind == Notification.Kind.ASSIGNED

    m = assignment.message_assign(user=bob, message=message, version=3, assignee_id=alice.pk)
    assert open_periods(message) == [alice.pk]

    m = assignment.message_unassign(user=alice, message=message, version=4)
    assert m.assignee is None and m.version == 5
    assert open_periods(message) == []

    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.assignee_id, fresh.version) == (None, 5)
    history = list(AssignmentPeriod.objects.filter(message=message).order_by("started_at", "id"))
    assert [(p.user, p.assigned_by) for p in history] == [(alice, alice), (bob, owner), (alice, bob)]
    assert history[1].note == "Bitte Rückruf"
    assert all(p.ended_at is not None and p.ended_at >= p.started_at for p in history)
    assert history[0].ended_at == history[1].started_at
    # The detail selector shows the same history.
    shown = selectors.message_detail_for_user(alice, message.pk).assignment_history
    assert [p.pk for p in shown] == [p.pk for p in history]


def test_database_refuses_a_second_open_period(alice, bob, message):
    AssignmentPeriod.objects.create(message=message, user=alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        AssignmentPeriod.objects.create(message=message, user=bob)
    # Closed periods next to the open one are history, not a conflict.
    AssignmentPeriod.objects.create(message=message, user=bob, ended_at=timezone.now())
    assert open_periods(message) == [alice.pk]


@pytest.mark.parametrize("target", ["outsider", "reader", "observer"])
def test_assign_only_to_working_members(request, target, owner, message):
    before = snapshot(message)
    with pytest.raises(errors.NotAllowed):
        assignment.message_assign(
            user=owner, message=message, version=1, assignee_id=request.getfixturevalue(target).pk
        )
    assert snapshot(message) == before


def test_assign_to_inactive_user_is_refused(owner, bob, message):
    bob.is_active = False
    bob.save()
    with pytest.raises(errors.NotAllowed):
        assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk)


def test_assignment_to_an_absent_member_goes_to_the_substitute(owner, bob, carol, message):
    now = timezone.now()
    Absence.objects.create(
        user=bob, substitute=carol, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=2)
    )

    m = assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk, note="Bitte Rückruf")

    assert m.assignee == carol
    assert Message.objects.get(pk=message.pk).assignee == carol
    period = AssignmentPeriod.objects.get(message=message, ended_at__isnull=True)
    assert period.user == carol
    assert "Bitte Rückruf" in period.note and "Vertretung für Bernd Bauer" in period.note
    assert list(Notification.objects.values_list("user_id", "kind")) == [(carol.pk, Notification.Kind.ASSIGNED)]
    assert AuditEvent.objects.get(action="message.assigned").details["assignee"] == carol.pk


@pytest.mark.parametrize(
    ("starts", "ends"),
    [(timedelta(days=1), timedelta(days=3)), (timedelta(days=-3), timedelta(seconds=-1))],
    ids=["future", "over"],
)
def test_assignment_outside_the_absence_goes_to_the_member(starts, ends, owner, bob, carol, message):
    now = timezone.now()
    Absence.objects.create(user=bob, substitute=carol, starts_at=now + starts, ends_at=now + ends)
    assert assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk).assignee == bob


# --- conflict guard --------------------------------------------------------------------------------------------


def _act(action: str, *, user, message: Message, version: int, target):
    if action == "take":
        return assignment.message_take(user=user, message=message, version=version)
    if action == "assign":
        return assignment.message_assign(user=user, message=message, version=version, assignee_id=target.pk)
    if action == "unassign":
        return assignment.message_unassign(user=user, message=message, version=version)
    if action == "done":
        return states.message_set_state(user=user, message=message, version=version, state=Message.State.DONE)
    if action == "waiting":
        due = timezone.now() + timedelta(days=2)
        return states.message_set_state(
            user=user, message=message, version=version, state=Message.State.WAITING, due_at=due
        )
    if action == "note":
        return notes.note_add(user=user, message=message, version=version, body="Rückruf erledigt")
    raise AssertionError(action)


ACTIONS = ["take", "assign", "unassign", "done", "waiting", "note"]


@pytest.mark.parametrize("action", ACTIONS)
def test_stale_version_raises_conflict_and_changes_nothing(action, alice, bob, carol, owner, message):
    assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk)  # alice loaded version 2 …
    notes.note_add(user=owner, message=message, version=2, body="Befund ist da")  # … then this happened
    before = snapshot(message)

    with pytest.raises(errors.Conflict) as exc:
        _act(action, user=alice, message=message, version=2, target=carol)

    assert snapshot(message) == before
    assert exc.value.fresh.version == 3
    assert "geändert" in exc.value.message
    assert "Notiz hinzugefügt – Olga Ober" in exc.value.message


@pytest.mark.parametrize("action", ACTIONS)
def test_action_while_a_colleague_holds_the_claim_raises_claim_held(action, alice, bob, carol, owner, message):
    assignment.message_assign(user=owner, message=message, version=1, assignee_id=carol.pk)
    claims.message_claim(user=alice, message=message)
    before = snapshot(message)

    with pytest.raises(errors.ClaimHeld) as exc:
        _act(action, user=bob, message=message, version=2, target=owner)

    assert snapshot(message) == before
    assert exc.value.holder == alice
    assert "Anna Alt" in exc.value.message


@pytest.mark.parametrize("action", ACTIONS)
def test_the_holder_may_act_with_the_current_version(action, alice, bob, carol, owner, message):
    assignment.message_assign(user=owner, message=message, version=1, assignee_id=carol.pk)
    claims.message_claim(user=alice, message=message)

    _act(action, user=alice, message=message, version=2, target=bob)

    assert Message.objects.get(pk=message.pk).version == 3


@pytest.mark.parametrize("who", ["reader", "observer", "outsider"])
@pytest.mark.parametrize("action", ACTIONS)
def test_readers_and_observers_cannot_act(request, who, action, bob, message):
    user = request.getfixturevalue(who)
    assignment.message_assign(user=bob, message=message, version=1, assignee_id=bob.pk)
    before = snapshot(message)
    with pytest.raises(errors.NotAllowed):
        _act(action, user=user, message=message, version=2, target=bob)
    assert snapshot(message) == before


# --- state ------------------------------------------------------------------------------------------------------


def test_done_releases_the_actors_claim(alice, message):
    claims.message_claim(user=alice, message=message)

    m = states.message_set_state(user=alice, message=message, version=1, state=Message.State.DONE)

    assert m.state == Message.State.DONE
    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.state, fresh.claimed_by, fresh.claimed_at, fresh.claim_expires_at) == (
        Message.State.DONE,
        None,
        None,
        None,
    )
    assert AuditEvent.objects.get(action="message.released").details == {"reason": "done"}


def test_waiting_requires_a_due_date(alice, message):
    before = snapshot(message)
    with pytest.raises(PortalError):
        states.message_set_state(user=alice, message=message, version=1, state=Message.State.WAITING)
    assert snapshot(message) == before

    due = timezone.now() + timedelta(days=3)
    states.message_set_state(user=alice, message=message, version=1, state=Message.State.WAITING, due_at=due)
    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.state, fresh.due_at, fresh.version) == (Message.State.WAITING, due, 2)

    states.message_set_state(user=alice, message=message, version=2, state=Message.State.IN_PROGRESS)
    fresh = Message.objects.get(pk=message.pk)
    assert (fresh.state, fresh.due_at) == (Message.State.IN_PROGRESS, None)


def test_unknown_state_is_refused(alice, message):
    before = snapshot(message)
    with pytest.raises(PortalError):
        states.message_set_state(user=alice, message=message, version=1, state="archived")
    assert snapshot(message) == before


# --- notes ------------------------------------------------------------------------------------------------------


def test_note_mentions_notify_members_except_observers_and_the_author(alice, bob, reader, observer, outsider, message):
    body = "Bitte @bernd und @Rita ansehen, zur Kenntnis @otto, ich @anna, und @fremd @niemand"

    note = notes.note_add(user=alice, message=message, version=1, body=body)

    assert note.body == body and note.author == alice
    assert set(note.mentions.all()) == {bob, reader, observer, alice}
    notified = Notification.objects.filter(kind=Notification.Kind.MENTION, message=message)
    assert sorted(notified.values_list("user__username", flat=True)) == ["bernd", "rita"]
    assert all(n.actor == alice for n in notified)
    assert Message.objects.get(pk=message.pk).version == 2


def test_email_addresses_in_notes_are_not_mentions(alice, bob, message):
    note = notes.note_add(user=alice, message=message, version=1, body="Kopie an bernd@klinikum-test.de")
    assert not note.mentions.exists()
    assert not Notification.objects.exists()


@pytest.mark.parametrize("body", ["", "   ", "x" * 10_001])
def test_empty_or_huge_note_is_refused(body, alice, message):
    before = snapshot(message)
    with pytest.raises(PortalError):
        notes.note_add(user=alice, message=message, version=1, body=body)
    assert snapshot(message) == before


# --- audit ------------------------------------------------------------------------------------------------------


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
        notes.note_add(user=alice, message=message, version=1, body="gesehen")
        return "note.added"
    raise AssertionError(action)


@pytest.mark.parametrize("action", ["claim", "release", "take", "assign", "unassign", "state", "note"])
def test_every_action_writes_an_audit_event(action, alice, bob, message):
    before = timezone.now()
    expected = _audited(action, alice, bob, message)
    event = AuditEvent.objects.get(action=expected)
    assert event.actor == alice
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
    assert (event.actor, event.message_id, event.mailbox_id) == (reader, message.pk, message.mailbox_id)
    assert MessageRead.objects.filter(message=message, user=reader).exists()
    # A reader only reads: opening takes no lock.
    assert Message.objects.get(pk=message.pk).claimed_by is None


def test_opening_a_message_as_processor_claims_it(client, alice, message):
    client.force_login(alice)
    assert client.get(reverse("mailbox:message-detail", args=[message.pk])).status_code == 200
    assert Message.objects.get(pk=message.pk).claimed_by == alice
    assert set(AuditEvent.objects.filter(actor=alice).values_list("action", flat=True)) == {
        "message.viewed",
        "message.claimed",
    }


# --- roles through groups (wards) -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direct", "via_group", "expected"),
    [
        (None, Role.READER, Role.READER),
        (None, Role.PROCESSOR, Role.PROCESSOR),
        (Role.OBSERVER, Role.PROCESSOR, Role.PROCESSOR),
        (Role.OWNER, Role.READER, Role.OWNER),
        (Role.READER, Role.OBSERVER, Role.READER),
        (Role.PROCESSOR, None, Role.PROCESSOR),
    ],
)
def test_strongest_of_direct_and_group_role_wins(direct, via_group, expected, box, message):
    user = UserFactory(username="gabi")
    if direct:
        MembershipFactory(mailbox=box, user=user, role=direct)
    if via_group:
        ward = Group.objects.create(name="Station 3")
        user.groups.add(ward)
        Membership.objects.create(mailbox=box, group=ward, role=via_group)

    assert selectors.user_role(user, box) == expected
    assert selectors.mailbox_get_for_user(user, box.pk).user_role == expected
    assert list(Message.objects.visible_to(user)) == [message]
    may_process = Membership.RANK[expected] >= Membership.RANK[Role.PROCESSOR]
    assert (user in selectors.mailbox_members(box)) is may_process
    if may_process:
        assert claims.message_claim(user=user, message=message).won
    else:
        with pytest.raises(errors.NotAllowed):
            claims.message_claim(user=user, message=message)


def test_group_of_another_mailbox_gives_nothing(box, message):
    user = UserFactory(username="gabi")
    ward = Group.objects.create(name="Station 4")
    user.groups.add(ward)
    Membership.objects.create(mailbox=MailboxFactory(), group=ward, role=Role.OWNER)
    assert selectors.user_role(user, box) is None
    assert not Message.objects.visible_to(user).exists()


def test_group_member_can_be_assigned(owner, box, message):
    user = UserFactory(username="gabi")
    ward = Group.objects.create(name="Station 3")
    user.groups.add(ward)
    Membership.objects.create(mailbox=box, group=ward, role=Role.PROCESSOR)
    assert assignment.message_assign(user=owner, message=message, version=1, assignee_id=user.pk).assignee == user


# --- absences ---------------------------------------------------------------------------------------------------


def test_absence_starting_now_releases_the_users_locks(django_capture_on_commit_callbacks, alice, bob, box):
    mine = [ingest(box, subject=f"Brief {i}") for i in range(2)]
    theirs = ingest(box, subject="Brief von Bernd")
    for m in mine:
        claims.message_claim(user=alice, message=m)
    claims.message_claim(user=bob, message=theirs)

    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        absences.absence_create(
            user=alice, substitute=bob, starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(days=1)
        )

    assert not Message.objects.filter(claimed_by=alice).exists()
    assert Message.objects.get(pk=theirs.pk).claimed_by == bob
    released = AuditEvent.objects.filter(action="message.released", actor=alice)
    assert sorted(released.values_list("message_id", flat=True)) == sorted(m.pk for m in mine)
    assert all(e.details == {"reason": "absence"} for e in released)
    assert AuditEvent.objects.filter(action="absence.created", actor=alice).exists()


def test_absence_cannot_name_oneself(alice):
    now = timezone.now()
    with pytest.raises(PortalError):
        absences.absence_create(user=alice, substitute=alice, starts_at=now, ends_at=now + timedelta(days=1))
    assert not Absence.objects.exists()


# --- lists: filters, sorting, search, queries -------------------------------------------------------------------


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BERLIN)


@pytest.fixture
def worked_box(box, alice, bob):
    """Five messages in different states; one in another mailbox of alice, one she cannot see."""
    m = {
        "new": ingest(box, subject="Aufnahme", sender="Zahnarzt Zander <zander@z.kim.telematik-test>"),
        "mine": ingest(box, subject="Befund", dienstkennung="eAU;Lieferung;V1.0", sender="Arzt Abel <a@a.de>"),
        "bob": ingest(box, subject="Ckontrolle", sender="Praxis Meier <m@m.de>"),
        "done_mine": ingest(box, subject="Dokument", sender="Berger <b@b.de>"),
        "done_free": ingest(box, subject="Entlassung", dienstkennung="KIM-Mail;Default;V1.0", sender="Kurz <k@k.de>"),
    }
    other = MailboxFactory(display_name="Neurologie")
    MembershipFactory(mailbox=other, user=alice, role=Role.READER)
    m["other_mine"] = ingest(other, subject="Fremdhaus", sender="Otto <o@o.de>")
    m["foreign"] = ingest(MailboxFactory(), subject="Geheim", sender="Geheim <g@g.de>")
    updates = {
        "new": {"received_at": at(1, 10)},
        # 00:30 in Berlin on March 3 is still March 2 in UTC: the day filter must use local dates.
        "mine": {"received_at": at(3, 0, 30), "assignee": alice, "state": Message.State.IN_PROGRESS},
        "bob": {"received_at": at(4, 9), "assignee": bob, "state": Message.State.WAITING, "due_at": at(9, 9)},
        "done_mine": {"received_at": at(5, 9), "assignee": alice, "state": Message.State.DONE},
        "done_free": {"received_at": at(6, 9), "state": Message.State.DONE},
        "other_mine": {"received_at": at(7, 9), "assignee": alice, "state": Message.State.IN_PROGRESS},
        "foreign": {"received_at": at(8, 9), "assignee": alice, "state": Message.State.IN_PROGRESS},
    }
    for key, fields in updates.items():
        Message.objects.filter(pk=m[key].pk).update(**fields)
    return m


def listed(user, *, mailbox=None, **filters) -> list[int]:
    page = message_list_for_user(user, mailbox=mailbox, filters=MessageFilter(**filters))
    return [m.pk for m in page.object_list]


def keys(worked, *names) -> set[int]:
    return {worked[n].pk for n in names}


def test_filter_views(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box)) == keys(w, "new", "mine", "bob", "done_mine", "done_free")
    assert set(listed(alice)) == keys(w, "new", "mine", "bob", "done_mine", "done_free", "other_mine")
    assert set(listed(alice, mailbox=box, view="unassigned")) == keys(w, "new")
    assert set(listed(alice, mailbox=box, view="open")) == keys(w, "new", "mine", "bob")
    mine = set(listed(alice, view="mine"))
    assert keys(w, "mine", "other_mine") <= mine
    assert not mine & keys(w, "new", "bob", "done_free", "foreign")
    assert set(listed(alice, view="mine", state=Message.State.IN_PROGRESS)) == keys(w, "mine", "other_mine")


def test_filter_by_state(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box, state="waiting")) == keys(w, "bob")
    assert set(listed(alice, mailbox=box, state="done")) == keys(w, "done_mine", "done_free")
    assert set(listed(alice, mailbox=box, state="new")) == keys(w, "new")


def test_filter_by_dienstkennung(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box, dienstkennung="eAU")) == keys(w, "mine")
    assert set(listed(alice, mailbox=box, dienstkennung="arztbrief")) == keys(w, "new", "bob", "done_mine")
    assert set(listed(alice, mailbox=box, dienstkennung="KIM-Mail;Default;V1.0")) == keys(w, "done_free")
    assert listed(alice, mailbox=box, dienstkennung="eAU;Lieferung;V9.9") == []


def test_filter_by_local_date(alice, box, worked_box):
    w = worked_box
    assert set(listed(alice, mailbox=box, date_from=date(2026, 3, 3), date_to=date(2026, 3, 3))) == keys(w, "mine")
    assert set(listed(alice, mailbox=box, date_to=date(2026, 3, 2))) == keys(w, "new")
    assert set(listed(alice, mailbox=box, date_from=date(2026, 3, 5))) == keys(w, "done_mine", "done_free")


def test_sorting(alice, box, worked_box):
    w = worked_box
    newest_first = [w[k].pk for k in ("done_free", "done_mine", "bob", "mine", "new")]
    assert listed(alice, mailbox=box) == newest_first
    assert listed(alice, mailbox=box, sort="-received") == newest_first
    assert listed(alice, mailbox=box, sort="received") == newest_first[::-1]
    assert listed(alice, mailbox=box, sort="subject") == [
        w[k].pk for k in ("new", "mine", "bob", "done_mine", "done_free")
    ]
    # By sender name: Arzt Abel, Berger, Kurz, Praxis Meier, Zahnarzt Zander.
    assert listed(alice, mailbox=box, sort="from") == [
        w[k].pk for k in ("mine", "done_mine", "done_free", "bob", "new")
    ]


@pytest.fixture
def searchable(box):
    return {
        "befund": ingest(box, subject="Laborbericht", body="Anbei die Befunde vom Montag.", sender="Labor <l@l.de>"),
        "sender": ingest(
            box, subject="Rückfrage", body="Bitte melden.", sender="Praxis Dr. Sommer <sommer@praxis-sommer.de>"
        ),
        "subject": ingest(box, subject="Entlassbrief Müller", body="Siehe Anhang.", sender="Klinik <k@k.de>"),
        "foreign": ingest(MailboxFactory(), subject="Befunde", body="Befunde", sender="Sommer <s@s.de>"),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Befund", {"befund"}),
        ("befunde", {"befund"}),
        ("Sommer", {"sender"}),
        ("sommer@praxis-sommer.de", {"sender"}),
        ("Entlassbrief", {"subject"}),
        ("müller", {"subject"}),
        ("Befund Montag", {"befund"}),
        ("Befund Sommer", set()),
        ("Röntgen", set()),
    ],
)
def test_search_over_subject_sender_and_body(query, expected, alice, box, searchable):
    assert set(listed(alice, q=query)) == {searchable[k].pk for k in expected}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="German stemming needs PostgreSQL full text")
@pytest.mark.parametrize(
    ("query", "expected"), [("Befundes", "befund"), ("Laborberichte", "befund"), ("Entlassbriefe", "subject")]
)
def test_full_text_search_understands_german_inflection(query, expected, alice, box, searchable):
    # Substring search cannot find these: only the German stemmer maps them onto the stored words.
    assert listed(alice, q=query) == [searchable[expected].pk]


def _busy_box(box, alice, bob, n: int) -> None:
    """n messages with everything a row shows: assignee, lock, presence, read state, attachments."""
    now = timezone.now()
    for i in range(n):
        m = message_ingest(mailbox=box, uidl=f"q{i}", raw=MAIL_WITH_PDF)
        fields = {"received_at": now - timedelta(minutes=i)}
        if i % 3 == 0:
            fields.update(assignee=bob, state=Message.State.IN_PROGRESS)
        if i % 4 == 0:
            fields.update(claimed_by=bob, claimed_at=now, claim_expires_at=now + timedelta(minutes=5))
        Message.objects.filter(pk=m.pk).update(**fields)
        if i % 2 == 0:
            MessageRead.objects.create(message=m, user=alice)
        if i % 5 == 0:
            Presence.objects.create(message=m, user=bob, channel_name=f"chan-{i}")


@pytest.mark.parametrize("n", [5, 60])
@pytest.mark.parametrize("page", ["inbox", "mine", "mailbox-messages", "mailbox-messages-htmx", "page-2", "older"])
def test_list_views_need_at_most_ten_queries(n, page, client, alice, bob, box, django_assert_max_num_queries):
    _busy_box(box, alice, bob, n)
    client.force_login(alice)
    box_url = reverse("mailbox:mailbox-messages", args=[box.pk])
    first_page = selectors.message_list_for_user(alice, mailbox=box)
    url, headers = {
        "inbox": (reverse("mailbox:inbox"), {}),
        "mine": (reverse("mailbox:mine"), {}),
        "mailbox-messages": (box_url, {}),
        "mailbox-messages-htmx": (box_url + "?view=open", {"HX-Request": "true", "HX-Target": "message-list"}),
        "page-2": (box_url + "?page=2", {}),
        "older": (box_url + "?" + (first_page.next_query or "page=2"), {}),
    }[page]
    cache.clear()  # the worst case: the Dienstkennung labels are read too
    with django_assert_max_num_queries(10):
        response = client.get(url, headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    rows = html.count('class="msg-row')
    expected = {
        "inbox": min(n, selectors.PAGE_SIZE),
        "mailbox-messages": min(n, selectors.PAGE_SIZE),
        "mailbox-messages-htmx": min(n, selectors.PAGE_SIZE),
        "page-2": max(0, n - selectors.PAGE_SIZE),
        "older": max(0, n - selectors.PAGE_SIZE),
        "mine": 0,  # the busy box assigns to bob, not to alice
    }[page]
    assert rows == expected, (page, n, rows)
    if page == "mailbox-messages-htmx":
        assert 'id="message-list"' in html and "<html" not in html
