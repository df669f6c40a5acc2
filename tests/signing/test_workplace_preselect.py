"""The workstation on the sign forms (queue and draft page): the browser's remembered choice, else — with exactly
one active workstation in the house — that one, so that "Auswahl signieren" works without picking the only
choice first (the demo's case)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from signing.models import SignatureBatch
from tests.signing.factories import DraftFactory, WorkplaceFactory

pytestmark = pytest.mark.django_db

COOKIE = "kimportal_signing_workplace"


def _selected(html: str) -> list[str]:
    """The values of the selected options of the workstation select."""
    select = re.search(r'<select id="sign-workplace".*?</select>', html, re.S)
    assert select is not None
    return re.findall(r'<option value="(\d*)" selected>', select.group(0))


@pytest.fixture
def draft(physician, assistant, mailbox):
    return DraftFactory(author=assistant, signer=physician, mailbox=mailbox)


def _pages(client, draft) -> list[str]:
    return [
        client.get(reverse("signing:queue")).content.decode(),
        client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode(),
    ]


def test_the_only_active_workplace_is_preselected_without_a_remembered_choice(client, physician, draft):
    only = WorkplaceFactory(workplace_id="AP-1", label="Arztzimmer")
    WorkplaceFactory(workplace_id="AP-alt", label="Altes Terminal", is_active=False)
    client.force_login(physician)
    for html in _pages(client, draft):
        assert _selected(html) == [str(only.pk)]


def test_with_two_workplaces_nothing_is_preselected(client, physician, draft):
    WorkplaceFactory(workplace_id="AP-1", label="Arztzimmer")
    WorkplaceFactory(workplace_id="AP-2", label="Ambulanz")
    client.force_login(physician)
    for html in _pages(client, draft):
        assert _selected(html) == []


def test_the_remembered_choice_wins(client, physician, draft):
    WorkplaceFactory(workplace_id="AP-1", label="Arztzimmer")
    second = WorkplaceFactory(workplace_id="AP-2", label="Ambulanz")
    client.force_login(physician)
    client.cookies[COOKIE] = str(second.pk)
    for html in _pages(client, draft):
        assert _selected(html) == [str(second.pk)]


def test_a_remembered_workplace_that_was_deactivated_gives_way_to_the_only_active_one(client, physician, draft):
    gone = WorkplaceFactory(workplace_id="AP-alt", label="Altes Terminal", is_active=False)
    only = WorkplaceFactory(workplace_id="AP-1", label="Arztzimmer")
    client.force_login(physician)
    client.cookies[COOKIE] = str(gone.pk)
    for html in _pages(client, draft):
        assert _selected(html) == [str(only.pk)]


@pytest.mark.parametrize("value", ["²", "¹²", "12a", ""])
def test_a_hand_made_cookie_that_only_looks_like_a_number_is_no_remembered_choice(client, physician, draft, value):
    # str.isdigit() takes "²", int() does not: the pages answered 500 instead of offering the choice.
    only = WorkplaceFactory(workplace_id="AP-1", label="Arztzimmer")
    client.force_login(physician)
    client.cookies[COOKIE] = value
    for html in _pages(client, draft):
        assert _selected(html) == [str(only.pk)]


def test_sign_selection_works_with_the_preselected_workplace(
    client, physician, assistant, mailbox, django_capture_on_commit_callbacks
):
    """The queue's form as the browser submits it (the preselected option's value) starts the batch."""
    only = WorkplaceFactory(workplace_id="AP-1", label="Arztzimmer")
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(2)]
    client.force_login(physician)
    (workplace,) = _selected(client.get(reverse("signing:queue")).content.decode())
    with django_capture_on_commit_callbacks():
        response = client.post(
            reverse("signing:batch-start"),
            {"workplace": workplace, "draft": [f"{d.pk}:{d.version}:{d.sha256}" for d in drafts]},
        )
    batch = SignatureBatch.objects.get(signer=physician)
    assert response.status_code == 302 and response["Location"] == reverse("signing:batch", args=[batch.pk])
    assert batch.workplace == only and batch.total == 2
    assert response.cookies[COOKIE].value == str(only.pk)
