"""Assigning, from a page opened earlier, to someone who can no longer be made responsible (deactivated, removed
from the mailbox, away with a substitute away too): the form comes back with the reason and the note typed, with
or without htmx — it is the choice that is refused, not the assigner's role (no 403 page, no swallowed 403)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailbox.models import Absence, AssignmentPeriod, Membership, Message

pytestmark = pytest.mark.django_db

NOTE = "Bitte Rückruf bis Freitag"


def _deactivated(bob, carol) -> str:
    bob.is_active = False
    bob.save()
    return "kein bearbeitendes Mitglied"


def _removed(bob, carol) -> str:
    Membership.objects.filter(user=bob).delete()
    return "kein bearbeitendes Mitglied"


def _both_away(bob, carol) -> str:
    now = timezone.now()
    for person, substitute in ((bob, carol), (carol, bob)):
        Absence.objects.create(
            user=person, substitute=substitute, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=1)
        )
    return "Bitte eine andere Person wählen."


@pytest.mark.parametrize("change", [_deactivated, _removed, _both_away])
@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_a_refused_assignee_brings_the_form_back_with_the_reason(client, change, htmx, owner, bob, carol, message):
    client.force_login(owner)
    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert f'value="{bob.pk}"' in page  # the page offers bob
    reason = change(bob, carol)
    headers = {"HX-Request": "true", "HX-Target": "work"} if htmx else {}

    response = client.post(
        reverse("mailbox:message-assign", args=[message.pk]),
        {"version": 1, "assignee": bob.pk, "note": NOTE},
        headers=headers,
    )

    assert response.status_code == 422
    html = response.content.decode()
    assert reason in html
    assert f'value="{NOTE}"' in html  # the note typed is still in its field
    # Nothing assigned (without htmx the page comes back as opened anew: its read and lock are those of a page view).
    assert Message.objects.values_list("assignee_id", "version").get(pk=message.pk) == (None, 1)
    assert not AssignmentPeriod.objects.filter(message=message).exists()
