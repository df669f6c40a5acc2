"""The conflict guard: stale versions and colleagues' locks stop an action and change nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from kimportal import errors
from mailbox.models import (
    Message,
)
from mailbox.services import assignment, claims, notes, states
from tests.mailbox.work.support import snapshot

pytestmark = pytest.mark.django_db


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
        return notes.note_add(user=user, message=message, body="Rückruf erledigt")
    raise AssertionError(action)


ACTIONS = ["take", "assign", "unassign", "done", "waiting", "note"]
# Actions that overwrite what a colleague may have just done; a note only adds and is taken whatever changed.
OVERWRITING = [a for a in ACTIONS if a != "note"]


@pytest.mark.parametrize("action", OVERWRITING)
def test_stale_version_raises_conflict_and_changes_nothing(action, alice, bob, carol, owner, message):
    assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk)  # alice loaded version 2 …
    notes.note_add(user=owner, message=message, body="Befund ist da")  # … then this happened
    before = snapshot(message)

    with pytest.raises(errors.Conflict) as exc:
        _act(action, user=alice, message=message, version=2, target=carol)

    assert snapshot(message) == before
    assert exc.value.fresh.version == 3
    assert "geändert" in exc.value.message
    assert "Notiz hinzugefügt – Olga Ober" in exc.value.message


def test_a_note_from_a_stale_page_is_added_after_the_change_it_did_not_see(alice, bob, owner, message):
    assignment.message_assign(user=owner, message=message, version=1, assignee_id=bob.pk)  # alice loaded version 2 …
    notes.note_add(user=owner, message=message, body="Befund ist da")  # … then this happened

    added = _act("note", user=alice, message=message, version=2, target=None)

    assert [n.body for n in message.notes.order_by("created_at", "id")] == ["Befund ist da", "Rückruf erledigt"]
    assert added.author == alice
    assert Message.objects.get(pk=message.pk).version == 4  # the others' next action still sees it was added


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
