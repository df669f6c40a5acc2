"""Notes and @mentions."""

from __future__ import annotations

import pytest

from kimportal.errors import PortalError
from mailbox.models import (
    Message,
    Notification,
)
from mailbox.services import notes
from tests.mailbox.work.support import snapshot

pytestmark = pytest.mark.django_db


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
