"""Drafts of a person who can no longer work a mailbox: the owners see them ("von ehemaligem Mitglied …") and
delete them or take them over; nobody else does, and the person gets them back on returning."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from kimportal.errors import Conflict, NotAllowed
from mailbox.models import Membership, OutgoingMessage
from mailbox.selectors.outbox import drafts_for_user, left_drafts_for_user, outgoing_list_for_user
from mailbox.services import members
from mailbox.services.compose import OutgoingData, outgoing_discard, outgoing_draft_save, outgoing_draft_take_over
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ward():
    box = MailboxFactory(display_name="Kardiologie")
    owner = UserFactory(username="chefin", first_name="Clara", last_name="Chef")
    nurse = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    colleague = UserFactory(username="kollegin")
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    nurse_membership = MembershipFactory(mailbox=box, user=nurse, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=box, user=colleague, role=Membership.Role.PROCESSOR)
    draft = outgoing_draft_save(
        user=nurse,
        mailbox_id=box.pk,
        data=OutgoingData(subject="Halbfertiger Arztbrief", body="Sehr geehrte", to=["a@praxis.kim.telematik"]),
    )
    return box, owner, nurse, colleague, nurse_membership, draft


def _remove(box, owner, membership) -> None:
    members.membership_remove(user=owner, mailbox=box, membership_id=membership.pk)


def test_an_ex_members_draft_is_shown_to_the_owners_only(ward, client):
    box, owner, nurse, colleague, membership, draft = ward
    assert list(left_drafts_for_user(owner)) == []

    _remove(box, owner, membership)

    draft.refresh_from_db()
    assert draft.author_left_at is not None and draft.author == nurse
    event = AuditEvent.objects.get(action="outgoing.draft_left")
    assert event.actor == owner and event.details["previous"] == nurse.pk
    assert event.details["reason"] == "membership_ended"
    assert list(left_drafts_for_user(owner)) == [draft]
    assert list(left_drafts_for_user(colleague)) == []
    assert not outgoing_list_for_user(colleague).filter(pk=draft.pk).exists()

    client.force_login(owner)
    html = client.get(reverse("mailbox:drafts")).content.decode()
    assert f'id="left-draft-{draft.pk}"' in html
    assert "von ehemaligem Mitglied Paul Pfleger" in html and "Halbfertiger Arztbrief" in html
    # The owner can read it before deciding (an access to patient data like any sent letter: audited).
    assert client.get(reverse("mailbox:outgoing-detail", args=[draft.pk])).status_code == 200
    assert AuditEvent.objects.filter(action="outgoing.viewed", actor=owner).count() == 1
    client.force_login(colleague)
    html = client.get(reverse("mailbox:drafts")).content.decode()
    assert "Halbfertiger Arztbrief" not in html
    assert client.get(reverse("mailbox:outgoing-detail", args=[draft.pk])).status_code == 404
    assert client.post(reverse("mailbox:draft-take-over", args=[draft.pk])).status_code == 404


def test_an_owner_takes_an_ex_members_draft_over(ward, client):
    box, owner, nurse, _colleague, membership, draft = ward
    _remove(box, owner, membership)
    client.force_login(owner)

    response = client.post(reverse("mailbox:draft-take-over", args=[draft.pk]))

    assert response.status_code == 302 and response["Location"] == reverse("mailbox:draft-edit", args=[draft.pk])
    draft.refresh_from_db()
    assert draft.author == owner and draft.author_left_at is None
    assert draft.subject == "Halbfertiger Arztbrief"
    event = AuditEvent.objects.get(action="outgoing.draft_taken_over")
    assert event.actor == owner and event.details["previous"] == nurse.pk
    assert client.get(reverse("mailbox:draft-edit", args=[draft.pk])).status_code == 200


def test_an_owner_deletes_an_ex_members_draft(ward, client):
    box, owner, nurse, _colleague, membership, draft = ward
    _remove(box, owner, membership)
    client.force_login(owner)

    response = client.post(reverse("mailbox:draft-left-discard", args=[draft.pk]))

    assert response.status_code == 302
    assert not OutgoingMessage.objects.filter(pk=draft.pk).exists()
    event = AuditEvent.objects.get(action="outgoing.draft_discarded")
    assert event.actor == owner and event.details["former_author"] == nurse.pk


def test_a_colleague_can_neither_delete_nor_take_over(ward):
    box, owner, nurse, colleague, membership, draft = ward
    _remove(box, owner, membership)
    with pytest.raises(NotAllowed):
        outgoing_draft_take_over(user=colleague, draft=draft)
    with pytest.raises(NotAllowed):
        outgoing_discard(user=colleague, outgoing=draft)
    draft.refresh_from_db()
    assert draft.author == nurse


def test_a_draft_of_a_current_member_stays_private(ward):
    _box, owner, _nurse, _colleague, _membership, draft = ward
    assert not outgoing_list_for_user(owner).filter(pk=draft.pk).exists()
    with pytest.raises(Conflict):
        outgoing_draft_take_over(user=owner, draft=draft)


def test_a_returning_member_gets_their_draft_back(ward):
    box, owner, nurse, _colleague, membership, draft = ward
    _remove(box, owner, membership)
    members.membership_set(user=owner, mailbox=box, username=nurse.username, role=Membership.Role.PROCESSOR)
    draft.refresh_from_db()
    assert draft.author_left_at is None
    assert list(left_drafts_for_user(owner)) == []


def test_a_switched_off_account_leaves_its_drafts_to_the_owners(ward):
    _box, owner, nurse, _colleague, _membership, draft = ward
    nurse.is_active = False
    nurse.save()
    draft.refresh_from_db()
    assert draft.author_left_at is not None
    assert AuditEvent.objects.get(action="outgoing.draft_left").details["reason"] == "account_deactivated"
    assert list(left_drafts_for_user(owner)) == [draft]


def test_an_account_switched_on_again_gets_its_drafts_back(ward, client):
    _box, owner, nurse, _colleague, _membership, draft = ward
    nurse.is_active = False
    nurse.save()
    nurse.is_active = True
    nurse.save()

    draft.refresh_from_db()
    assert draft.author_left_at is None and draft.author == nurse
    # The owners no longer see the draft of a member who works the mailbox again, nor can they take it.
    assert list(left_drafts_for_user(owner)) == []
    client.force_login(owner)
    assert client.get(reverse("mailbox:outgoing-detail", args=[draft.pk])).status_code == 404
    with pytest.raises(Conflict):
        outgoing_draft_take_over(user=owner, draft=draft)


def test_an_account_switched_on_again_without_a_role_there_leaves_its_drafts_left(ward):
    box, owner, nurse, _colleague, membership, draft = ward
    nurse.is_active = False
    nurse.save()
    _remove(box, owner, membership)
    nurse.is_active = True
    nurse.save()

    draft.refresh_from_db()
    assert draft.author_left_at is not None
    assert list(left_drafts_for_user(owner)) == [draft]


def test_a_draft_gone_to_the_owners_leaves_the_authors_list_until_they_return(ward, client):
    box, owner, nurse, _colleague, _membership, draft = ward
    client.force_login(nurse)
    assert f'id="draft-{draft.pk}"' in client.get(reverse("mailbox:drafts")).content.decode()

    # Made reader: the draft goes to the owners; the nurse still reads the mailbox but may not edit it.
    members.membership_set(user=owner, mailbox=box, username=nurse.username, role=Membership.Role.READER)

    html = client.get(reverse("mailbox:drafts")).content.decode()
    assert f'id="draft-{draft.pk}"' not in html and "Halbfertiger Arztbrief" not in html
    assert list(drafts_for_user(nurse)) == []

    members.membership_set(user=owner, mailbox=box, username=nurse.username, role=Membership.Role.PROCESSOR)

    html = client.get(reverse("mailbox:drafts")).content.decode()
    assert f'id="draft-{draft.pk}"' in html and "Halbfertiger Arztbrief" in html
    assert client.get(reverse("mailbox:draft-edit", args=[draft.pk])).status_code == 200
