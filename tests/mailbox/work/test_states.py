"""Work states: done frees the lock, waiting needs a due date."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.errors import PortalError
from mailbox.models import (
    Message,
)
from mailbox.services import claims, states
from tests.mailbox.work.support import snapshot

pytestmark = pytest.mark.django_db


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
