"""Orphaned drafts: open drafts whose author, signer and reviewer have all left the sending mailbox. Only the
mailbox's owners find them (with what they need to decide, not the letter) and hand each over: take it over as
author or withdraw it. Membership is read now; a forged or stale POST changes nothing; two owners at once leave
exactly one author. On PostgreSQL."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from kimportal.errors import NotAllowed
from mailbox.models import Membership
from mailbox.permissions import user_role
from signing.models import Draft
from signing.services.drafts import draft_withdraw
from signing.services.orphans import orphan_take_over, orphan_withdraw, orphaned, orphaned_for_owner
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import DraftFactory
from tests.signing.support import together

pytestmark = pytest.mark.django_db

BODY = "Streng vertraulicher Befundtext"


@pytest.fixture
def owner(mailbox):
    user = UserFactory(username="chefin", first_name="Olga", last_name="Oberärztin")
    MembershipFactory(mailbox=mailbox, user=user, role=Membership.Role.OWNER)
    return user


@pytest.fixture
def draft(signer, assistant, mailbox):
    return DraftFactory(
        author=assistant,
        signer=signer,
        mailbox=mailbox,
        subject="Entlassbrief Herz",
        patient_reference="PID-4711",
        body=BODY,
    )


def _leave(user, mailbox) -> None:
    Membership.objects.filter(mailbox=mailbox, user=user).delete()


@pytest.fixture
def orphan(draft, signer, assistant, mailbox):
    _leave(assistant, mailbox)
    _leave(signer, mailbox)
    return draft


def _client(user, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


# --- detection ------------------------------------------------------------------------------------------------


def test_a_draft_whose_author_and_signer_left_is_orphaned_and_only_then(draft, signer, assistant, mailbox):
    assert not orphaned().filter(pk=draft.pk).exists()
    _leave(assistant, mailbox)
    assert not orphaned().filter(pk=draft.pk).exists()  # the signer is still there
    _leave(signer, mailbox)
    assert orphaned().filter(pk=draft.pk).exists()


def test_membership_through_a_group_counts(orphan, assistant, mailbox):
    ward = Group.objects.create(name="Station 3")
    assistant.groups.add(ward)
    Membership.objects.create(mailbox=mailbox, group=ward, role=Membership.Role.OBSERVER)
    assert not orphaned().filter(pk=orphan.pk).exists()


def test_a_reviewer_still_in_the_mailbox_keeps_the_draft_from_being_orphaned(orphan, mailbox):
    reviewer = UserFactory()
    MembershipFactory(mailbox=mailbox, user=reviewer)
    Draft.objects.filter(pk=orphan.pk).update(reviewer=reviewer, review_state=Draft.Review.PENDING)
    assert not orphaned().filter(pk=orphan.pk).exists()
    _leave(reviewer, mailbox)
    assert orphaned().filter(pk=orphan.pk).exists()


def test_a_deactivated_member_counts_as_gone(draft, signer, assistant, mailbox):
    _leave(signer, mailbox)
    type(assistant).objects.filter(pk=assistant.pk).update(is_active=False)
    assert orphaned().filter(pk=draft.pk).exists()


@pytest.mark.parametrize(
    "standing",
    ["direct", "through a group", "account off", "mailbox off", "group of another mailbox", "none"],
)
def test_whether_the_author_still_counts_is_the_rule_every_page_asks(orphan, assistant, mailbox, standing):
    """One rule for "may this person use the mailbox now" (mailbox.models.memberships_in_force): the orphan list
    agrees with user_role, which every page, socket and service asks, in every way a person can stand."""
    ward = Group.objects.create(name="Station 3")
    if standing == "direct":
        MembershipFactory(mailbox=mailbox, user=assistant, role=Membership.Role.READER)
    elif standing == "through a group":
        assistant.groups.add(ward)
        Membership.objects.create(mailbox=mailbox, group=ward, role=Membership.Role.READER)
    elif standing == "account off":
        MembershipFactory(mailbox=mailbox, user=assistant, role=Membership.Role.PROCESSOR)
        type(assistant).objects.filter(pk=assistant.pk).update(is_active=False)
    elif standing == "mailbox off":
        MembershipFactory(mailbox=mailbox, user=assistant, role=Membership.Role.PROCESSOR)
        type(mailbox).objects.filter(pk=mailbox.pk).update(is_active=False)
    elif standing == "group of another mailbox":
        assistant.groups.add(ward)
        Membership.objects.create(mailbox=MailboxFactory(), group=ward, role=Membership.Role.OWNER)

    has_role = user_role(type(assistant).objects.get(pk=assistant.pk), mailbox.pk) is not None
    assert orphaned().filter(pk=orphan.pk).exists() is not has_role
    assert has_role is (standing in ("direct", "through a group"))


@pytest.mark.parametrize("state", [Draft.State.SIGNING, Draft.State.SIGNED, Draft.State.SENT, Draft.State.WITHDRAWN])
def test_a_draft_no_longer_open_is_not_listed(orphan, owner, state):
    Draft.objects.filter(pk=orphan.pk).update(state=state)
    assert not orphaned_for_owner(owner).exists()


def test_only_the_owners_of_the_drafts_mailbox_find_it(orphan, owner, assistant, signer, manager):
    other_owner = UserFactory()
    MembershipFactory(mailbox=MailboxFactory(), user=other_owner, role=Membership.Role.OWNER)
    processor = UserFactory()
    MembershipFactory(mailbox=orphan.mailbox, user=processor, role=Membership.Role.PROCESSOR)
    assert list(orphaned_for_owner(owner)) == [orphan]
    for user in (other_owner, processor, assistant, signer, manager):
        assert not orphaned_for_owner(user).exists()


def test_an_owner_through_a_group_finds_it(orphan, mailbox):
    lead = UserFactory()
    leads = Group.objects.create(name="Leitung Innere")
    lead.groups.add(leads)
    Membership.objects.create(mailbox=mailbox, group=leads, role=Membership.Role.OWNER)
    assert list(orphaned_for_owner(lead)) == [orphan]


# --- the page -------------------------------------------------------------------------------------------------


def test_the_owner_sees_what_is_needed_to_decide_but_not_the_letter(orphan, owner, assistant):
    response = _client(owner).get(reverse("signing:orphans"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Entlassbrief Herz" in page and "PID-4711" in page
    assert "Paula Praxis" in page and "Anna Sommer" in page  # who left
    assert BODY not in page
    assert reverse("signing:draft-document", args=[orphan.pk]) not in page
    # Before taking over, the letter stays closed to the owner.
    assert _client(owner).get(reverse("signing:draft-detail", args=[orphan.pk])).status_code == 404
    # The signing menu links the page for owners.
    menu = _client(owner).get(reverse("signing:queue")).content.decode()
    assert reverse("signing:orphans") in menu


def test_the_page_in_english(orphan, owner, settings):
    client = _client(owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get(reverse("signing:orphans")).content.decode()
    assert "Orphaned drafts" in page and "Take over draft “Entlassbrief Herz” (PID-4711)" in page
    assert "Verwaiste" not in page


def test_a_processor_gets_404_and_no_link(orphan, mailbox):
    processor = UserFactory()
    MembershipFactory(mailbox=mailbox, user=processor, role=Membership.Role.PROCESSOR)
    client = _client(processor)
    assert client.get(reverse("signing:orphans")).status_code == 404
    assert reverse("signing:orphans") not in client.get(reverse("signing:queue")).content.decode()


# --- take over and withdraw -----------------------------------------------------------------------------------


def test_take_over_makes_the_owner_the_author(orphan, owner, assistant, signer):
    client = _client(owner)
    response = client.post(reverse("signing:orphan-take-over", args=[orphan.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("signing:draft-detail", args=[orphan.pk])
    orphan.refresh_from_db()
    assert orphan.author_id == owner.pk and orphan.state == Draft.State.DRAFT
    assert client.get(reverse("signing:draft-detail", args=[orphan.pk])).status_code == 200
    assert client.get(reverse("signing:draft-edit", args=[orphan.pk])).status_code == 200
    event = AuditEvent.objects.get(action="signing.draft_taken_over")
    assert event.actor_id == owner.pk and event.mailbox_id == orphan.mailbox_id
    assert event.details["draft"] == orphan.pk
    assert event.details["previous_author"] == assistant.pk and event.details["previous_signer"] == signer.pk
    assert not orphaned_for_owner(owner).exists()


def test_withdraw_takes_the_draft_back(orphan, owner):
    response = _client(owner).post(reverse("signing:orphan-withdraw", args=[orphan.pk]), {"reason": "Doppelt"})
    assert response.status_code == 302
    orphan.refresh_from_db()
    assert orphan.state == Draft.State.WITHDRAWN
    event = AuditEvent.objects.get(action="signing.draft_withdrawn")
    assert event.actor_id == owner.pk and event.details["orphaned"] is True and event.details["reason"] == "Doppelt"


def test_the_owners_and_the_authors_withdrawal_write_the_same_state_and_event(draft, owner, signer, assistant, mailbox):
    # Both ways share one writer: they differ only in who acts and in their own details (via; orphaned, who left).
    by_author = DraftFactory(author=assistant, signer=signer, mailbox=mailbox, subject="Befund Lunge")
    before = {d.pk: d.updated_at for d in (draft, by_author)}
    reason = "x" * 600
    draft_withdraw(user=assistant, draft=by_author, via="KIS: Test", reason=reason)
    _leave(assistant, mailbox)
    _leave(signer, mailbox)
    orphan_withdraw(user=owner, pk=draft.pk, reason=reason)
    events = {e.details["draft"]: e for e in AuditEvent.objects.filter(action="signing.draft_withdrawn")}
    for withdrawn, actor, own in (
        (by_author, assistant, {"via": "KIS: Test"}),
        (draft, owner, {"orphaned": True, "previous_author": assistant.pk, "previous_signer": signer.pk}),
    ):
        withdrawn.refresh_from_db()
        assert withdrawn.state == Draft.State.WITHDRAWN and withdrawn.updated_at > before[withdrawn.pk]
        event = events[withdrawn.pk]
        assert (event.actor_id, event.mailbox_id, event.message_subject) == (actor.pk, mailbox.pk, withdrawn.subject)
        assert event.details == {
            "draft": withdrawn.pk,
            "patient": withdrawn.patient_reference,
            "document_type": withdrawn.document_type,
            "version": withdrawn.version,
            "reason": "x" * 500,
            **own,
        }


def test_a_draft_that_is_not_orphaned_cannot_be_taken(draft, owner):
    with pytest.raises(NotAllowed):
        orphan_take_over(user=owner, pk=draft.pk)
    with pytest.raises(NotAllowed):
        orphan_withdraw(user=owner, pk=draft.pk)
    draft.refresh_from_db()
    assert draft.author_id != owner.pk and draft.state == Draft.State.DRAFT
    assert not AuditEvent.objects.filter(action__in=["signing.draft_taken_over", "signing.draft_withdrawn"]).exists()


# --- forged and stale POSTs -----------------------------------------------------------------------------------


def _unchanged(orphan, assistant) -> None:
    orphan.refresh_from_db()
    assert orphan.author_id == assistant.pk and orphan.state == Draft.State.DRAFT
    assert not AuditEvent.objects.filter(action__in=["signing.draft_taken_over", "signing.draft_withdrawn"]).exists()


@pytest.mark.parametrize("name", ["signing:orphan-take-over", "signing:orphan-withdraw"])
def test_forged_posts_change_nothing(orphan, owner, assistant, mailbox, name):
    url = reverse(name, args=[orphan.pk])
    # Without the CSRF token.
    assert _client(owner, enforce_csrf_checks=True).post(url).status_code == 403
    # Not by GET.
    assert _client(owner).get(url).status_code == 405
    # A processor of the mailbox, an owner of another one, the former author.
    processor = UserFactory()
    MembershipFactory(mailbox=mailbox, user=processor, role=Membership.Role.PROCESSOR)
    elsewhere = UserFactory()
    MembershipFactory(mailbox=MailboxFactory(), user=elsewhere, role=Membership.Role.OWNER)
    for user in (processor, elsewhere, assistant):
        assert _client(user).post(url).status_code == 404
    # An owner who lost the role since the page was loaded (an old tab).
    client = _client(owner)
    assert client.get(reverse("signing:orphans")).status_code == 200
    Membership.objects.filter(mailbox=mailbox, user=owner).update(role=Membership.Role.PROCESSOR)
    assert client.post(url).status_code == 404
    _unchanged(orphan, assistant)


def test_a_stale_tab_after_the_author_came_back_changes_nothing(orphan, owner, assistant, mailbox):
    client = _client(owner)
    MembershipFactory(mailbox=mailbox, user=assistant)
    response = client.post(reverse("signing:orphan-take-over", args=[orphan.pk]), follow=True)
    assert "nicht mehr verwaist" in response.content.decode()
    _unchanged(orphan, assistant)


# --- two owners at once ---------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rounds", [3])
def test_two_owners_taking_over_at_once_leave_exactly_one_author(signer, assistant, owner, mailbox, rounds):
    second = UserFactory()
    MembershipFactory(mailbox=mailbox, user=second, role=Membership.Role.OWNER)
    _leave(assistant, mailbox)
    _leave(signer, mailbox)
    for _ in range(rounds):
        orphan = DraftFactory(author=assistant, signer=signer, mailbox=mailbox, members=False)
        pk = orphan.pk
        answers = together(*(lambda u=u, pk=pk: orphan_take_over(user=u, pk=pk) for u in (owner, second)))
        won = [a for a in answers if isinstance(a, Draft)]
        refused = [a for a in answers if isinstance(a, NotAllowed)]
        assert len(won) == 1 and len(refused) == 1, answers
        orphan.refresh_from_db()
        assert orphan.author_id == won[0].author_id
        assert AuditEvent.objects.filter(action="signing.draft_taken_over", details__draft=orphan.pk).count() == 1


@pytest.mark.django_db(transaction=True)
def test_take_over_racing_withdraw_leaves_one_outcome(signer, assistant, owner, mailbox):
    second = UserFactory()
    MembershipFactory(mailbox=mailbox, user=second, role=Membership.Role.OWNER)
    _leave(assistant, mailbox)
    _leave(signer, mailbox)
    orphan = DraftFactory(author=assistant, signer=signer, mailbox=mailbox, members=False)
    answers = together(
        lambda: orphan_take_over(user=owner, pk=orphan.pk), lambda: orphan_withdraw(user=second, pk=orphan.pk)
    )
    assert sum(isinstance(a, Draft) for a in answers) == 1, answers
    orphan.refresh_from_db()
    took = AuditEvent.objects.filter(action="signing.draft_taken_over").count()
    withdrew = AuditEvent.objects.filter(action="signing.draft_withdrawn").count()
    assert took + withdrew == 1
    if took:
        assert orphan.author_id == owner.pk and orphan.state == Draft.State.DRAFT
    else:
        assert orphan.author_id == assistant.pk and orphan.state == Draft.State.WITHDRAWN
