"""Responsibility: one person per message, with a history of who was responsible when."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone, translation

from audit.models import AuditEvent
from mailbox import selectors
from mailbox.models import (
    Absence,
    AssignmentPeriod,
    Membership,
    Message,
    Notification,
)
from mailbox.services import assignment
from tests.mailbox.work.support import snapshot

pytestmark = pytest.mark.django_db


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
    with pytest.raises(assignment.AssigneeRefused):
        assignment.message_assign(
            user=owner, message=message, version=1, assignee_id=request.getfixturevalue(target).pk
        )
    assert snapshot(message) == before


def test_assign_to_inactive_user_is_refused(owner, bob, message):
    bob.is_active = False
    bob.save()
    with pytest.raises(assignment.AssigneeRefused):
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
    assert "Bitte Rückruf" in period.note_text and "Vertretung für Bernd Bauer" in period.note_text
    assert list(Notification.objects.values_list("user_id", "kind")) == [(carol.pk, Notification.Kind.ASSIGNED)]
    assert AuditEvent.objects.get(action="message.assigned").details["assignee"] == carol.pk


def test_the_substitute_note_of_a_manual_assignment_reads_in_the_reader_language(owner, bob, carol, message):
    """Assigned while the assigner had English active: the history and the notification follow the reader."""
    now = timezone.now()
    Absence.objects.create(
        user=bob, substitute=carol, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=2)
    )
    with translation.override("en"):
        assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk, note="Bitte Rückruf")
    period = AssignmentPeriod.objects.get(message=message, ended_at__isnull=True)
    notification = Notification.objects.get(user=carol)

    with translation.override("de"):
        assert period.note_text == "Bitte Rückruf Vertretung für Bernd Bauer (abwesend)"
        assert notification.display_text.endswith("– Bitte Rückruf Vertretung für Bernd Bauer (abwesend)")
    with translation.override("en"):
        assert period.note_text == "Bitte Rückruf Substitute for Bernd Bauer (absent)"
        assert notification.display_text.endswith("– Bitte Rückruf Substitute for Bernd Bauer (absent)")


@pytest.mark.parametrize(
    ("starts", "ends"),
    [(timedelta(days=1), timedelta(days=3)), (timedelta(days=-3), timedelta(seconds=-1))],
    ids=["future", "over"],
)
def test_assignment_outside_the_absence_goes_to_the_member(starts, ends, owner, bob, carol, message):
    now = timezone.now()
    Absence.objects.create(user=bob, substitute=carol, starts_at=now + starts, ends_at=now + ends)
    assert assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk).assignee == bob


def test_assignment_to_an_absent_member_whose_substitute_cannot_work_the_mailbox_is_refused(owner, bob, carol, message):
    """The substitute left the mailbox: assigned to the absent person, the letter would wait unseen; whoever assigns
    is told and chooses again."""
    now = timezone.now()
    Absence.objects.create(
        user=bob, substitute=carol, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=2)
    )
    Membership.objects.filter(user=carol).delete()
    before = snapshot(message)

    with pytest.raises(assignment.AssigneeRefused) as refused:
        assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk)

    assert "Bernd Bauer ist abwesend" in refused.value.message
    assert "Carla Christ kann dieses Postfach nicht bearbeiten" in refused.value.message
    assert snapshot(message) == before


def test_assignment_to_an_absent_member_whose_substitute_is_away_too_is_refused(owner, alice, bob, carol, message):
    """Bob is away and so is Carla, his substitute: the letter would wait unseen with either (routing leaves such
    mail unassigned); whoever assigns is told and chooses again."""
    now = timezone.now()
    Absence.objects.create(
        user=bob, substitute=carol, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=2)
    )
    Absence.objects.create(
        user=carol, substitute=alice, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(hours=3)
    )
    before = snapshot(message)

    with pytest.raises(assignment.AssigneeRefused) as refused:
        assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk)

    assert refused.value.message == (
        "Bernd Bauer und die Vertretung Carla Christ sind abwesend. Bitte eine andere Person wählen."
    )
    assert snapshot(message) == before
    # Carla herself, assigned directly, goes to her own substitute as before.
    assert assignment.message_assign(user=owner, message=message, version=1, assignee_id=carol.pk).assignee == alice
