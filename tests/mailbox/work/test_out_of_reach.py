"""A page left open on a message by someone who was removed from its mailbox meanwhile: its next action (work panel
or lock) is refused with the reason (423, which htmx shows) instead of a 404 the page would swallow. Someone who
never opened the message still gets the 404."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from mailbox.models import Membership
from mailbox.services.members import membership_remove
from tests.mailbox.work.support import snapshot

pytestmark = pytest.mark.django_db

REASON = "Sie haben keinen Zugriff mehr auf diese Nachricht"
ACTIONS = [
    ("mailbox:message-state", {"version": 1, "state": "done"}, "work"),
    ("mailbox:message-take", {"version": 1}, "work"),
    ("mailbox:message-note", {"version": 1, "body": "Rückruf erledigt"}, "work"),
    ("mailbox:message-claim", {}, "lock-panel"),
    ("mailbox:message-release", {}, "lock-panel"),
]


@pytest.mark.parametrize(("route", "data", "target"), ACTIONS)
def test_the_open_page_of_a_removed_member_is_told_why_its_action_did_nothing(
    client, route, data, target, box, owner, alice, outsider, message
):
    client.force_login(alice)
    assert client.get(reverse("mailbox:message-detail", args=[message.pk])).status_code == 200  # read and locked
    membership_remove(user=owner, mailbox=box, membership_id=Membership.objects.get(mailbox=box, user=alice).pk)
    before = snapshot(message)
    url = reverse(route, args=[message.pk])

    response = client.post(url, data, headers={"HX-Request": "true", "HX-Target": target})
    assert response.status_code == 423
    html = response.content.decode()
    assert REASON in html
    # The panel the action targeted is the answer; the other one is replaced out of band.
    other = "lock-panel" if target == "work" else "work"
    tags = dict(re.findall(r'<section id="([a-z-]+)"([^>]*)>', html))
    assert "hx-swap-oob" not in tags[target] and 'hx-swap-oob="true"' in tags[other]
    assert message.subject not in html and "<form" not in html
    assert snapshot(message) == before

    # Without JavaScript: the inbox, with the reason.
    plain = client.post(url, data, follow=True)
    assert plain.redirect_chain == [(reverse("mailbox:inbox"), 302)]
    assert REASON in plain.content.decode()
    assert snapshot(message) == before

    # Someone who never opened the message learns nothing: 404 as for any foreign id.
    client.force_login(outsider)
    assert client.post(url, data, headers={"HX-Request": "true", "HX-Target": target}).status_code == 404
