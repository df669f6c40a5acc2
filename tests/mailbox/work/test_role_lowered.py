"""A page left open on a message by a processor whose role was lowered to reader meanwhile: its buttons are still
there, and its next action (work panel or lock) is refused with the reason (423, which htmx shows), the panel
redrawn for the role held now. A 403 would not be shown — htmx swaps neither 403 nor 404 — and the click would
seem to do nothing. Without htmx the refusal stays the 403 page."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from mailbox.models import Membership
from mailbox.services.members import membership_set
from tests.mailbox.work.support import add_member, snapshot

pytestmark = pytest.mark.django_db

REASON = "Dafür fehlt Ihnen die Berechtigung in diesem Postfach."
ACTIONS = [
    ("mailbox:message-take", {"version": 1}, "work"),
    ("mailbox:message-state", {"version": 1, "state": "done"}, "work"),
    ("mailbox:message-assign", {"version": 1, "assignee": "bob", "note": "bitte"}, "work"),
    ("mailbox:message-note", {"body": "Rückruf erledigt"}, "work"),
    ("mailbox:message-claim", {}, "lock-panel"),
]


@pytest.mark.parametrize(("route", "data", "target"), ACTIONS)
def test_the_open_page_of_someone_lowered_to_reader_is_told_why_its_action_did_nothing(
    client, route, data, target, box, owner, alice, bob, message
):
    client.force_login(alice)
    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert reverse(route, args=[message.pk]) in page or target == "lock-panel"  # opened as a processor
    membership_set(user=owner, mailbox=box, username=alice.username, role=Membership.Role.READER)
    before = snapshot(message)
    data = {**data, **({"assignee": bob.pk} if data.get("assignee") == "bob" else {})}
    url = reverse(route, args=[message.pk])

    response = client.post(url, data, headers={"HX-Request": "true", "HX-Target": target})

    assert response.status_code == 423
    html = response.content.decode()
    assert REASON in html
    # The targeted panel comes back as a reader sees it: no action of a processor left to press.
    section = re.search(rf'<section id="{target}".*', html, re.S)
    assert section is not None
    assert "hx-post" not in html
    assert snapshot(message) == before

    # Without JavaScript: the 403 page, and nothing changed.
    assert client.post(url, data).status_code == 403
    assert snapshot(message) == before


def test_an_owner_lowered_to_processor_is_told_why_the_lock_stayed(client, box, owner, alice, message):
    """The owner's page shows "Sperre aufheben" on a colleague's lock; since then they are a processor only."""
    client.force_login(owner)
    client.get(reverse("mailbox:message-detail", args=[message.pk]))
    client.post(reverse("mailbox:message-release", args=[message.pk]))
    client.force_login(alice)
    client.get(reverse("mailbox:message-detail", args=[message.pk]))  # alice holds the lock now
    second_owner = add_member(box, "oskar", Membership.Role.OWNER, "Oskar", "Ost")
    membership_set(user=second_owner, mailbox=box, username=owner.username, role=Membership.Role.PROCESSOR)
    client.force_login(owner)
    before = snapshot(message)
    url = reverse("mailbox:message-break-lock", args=[message.pk])

    response = client.post(url, headers={"HX-Request": "true", "HX-Target": "lock-panel"})

    assert response.status_code == 423
    html = response.content.decode()
    assert REASON in html and "Sperre aufheben" not in html
    assert snapshot(message) == before
    assert client.post(url).status_code == 403
