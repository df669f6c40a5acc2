"""Absences: locks are released, substitutes receive assignments."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.errors import PortalError
from mailbox.models import (
    Absence,
    Message,
)
from mailbox.services import absences, claims
from tests.mailbox.work.support import ingest

pytestmark = pytest.mark.django_db


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
    released = AuditEvent.objects.filter(action="message.released", actor_id=alice.pk)
    assert sorted(released.values_list("message_id", flat=True)) == sorted(m.pk for m in mine)
    assert all(e.details == {"reason": "absence"} for e in released)
    assert AuditEvent.objects.filter(action="absence.created", actor_id=alice.pk).exists()


def test_absence_cannot_name_oneself(alice):
    now = timezone.now()
    with pytest.raises(PortalError):
        absences.absence_create(user=alice, substitute=alice, starts_at=now, ends_at=now + timedelta(days=1))
    assert not Absence.objects.exists()
