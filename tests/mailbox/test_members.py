"""The members service over a person's working life in a mailbox: every role change, while the mailbox is switched on
and while it is switched off, an account switched off and on again — who holds the open work and the drafts after
each, and that every hand-over of drafts (to the owners and back) leaves an audit event."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from audit.models import AuditEvent
from kimportal.errors import PortalError
from mailbox.models import Membership, Message, OutgoingMessage
from mailbox.selectors.outbox import left_drafts_for_user
from mailbox.services import assignment, claims, manage, members
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.ingest import message_ingest
from mailbox.services.outbox import outgoing_claim
from mailbox.services.signin import wards_from_directory
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory, admin_user_form
from tests.mailbox.mails import MAIL_WITH_PDF

Role = Membership.Role

pytestmark = pytest.mark.django_db


@pytest.fixture
def ward():
    """A mailbox with an owner, a manager (Leitung, not a member) and a nurse who has taken a letter and has a
    half-written reply."""
    box = MailboxFactory(display_name="Kardiologie")
    owner = UserFactory(username="chefin", first_name="Clara", last_name="Chef")
    nurse = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    manager = UserFactory(username="leitung")
    manager.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    MembershipFactory(mailbox=box, user=owner, role=Role.OWNER)
    membership = MembershipFactory(mailbox=box, user=nurse, role=Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="m-1", raw=MAIL_WITH_PDF)
    assignment.message_take(user=nurse, message=message, version=message.version)
    draft = outgoing_draft_save(
        user=nurse,
        mailbox_id=box.pk,
        data=OutgoingData(subject="Halbfertiger Arztbrief", body="Sehr geehrte", to=["a@praxis.kim.telematik"]),
    )
    return box, owner, manager, nurse, membership, message, draft


def _holds_work(message: Message, draft: OutgoingMessage, nurse) -> bool:
    message.refresh_from_db()
    draft.refresh_from_db()
    kept = message.assignee_id == nurse.pk and draft.author_left_at is None
    returned = message.assignee_id is None and draft.author_left_at is not None and draft.author_id == nurse.pk
    assert kept or returned, "the letter and the draft must go (or stay) together"
    return kept


def _switch(manager, box, *, on: bool) -> None:
    manage.mailbox_set_active(user=manager, mailbox=box, active=on)


def _set_role(actor, box, nurse, role: str) -> None:
    members.membership_set(user=actor, mailbox=box, username=nurse.username, role=role)


# --- every role change: losing the right to process is leaving; gaining it back is returning --------------------


@pytest.mark.parametrize("switched_off", [False, True], ids=["mailbox on", "mailbox off"])
@pytest.mark.parametrize(
    ("new_role", "keeps"),
    [(Role.OWNER, True), (Role.PROCESSOR, True), (Role.READER, False), (Role.OBSERVER, False)],
)
def test_a_role_change_returns_the_work_exactly_when_the_right_to_process_goes(ward, switched_off, new_role, keeps):
    box, _owner, manager, nurse, _membership, message, draft = ward
    if switched_off:
        _switch(manager, box, on=False)

    _set_role(manager, box, nurse, new_role)

    assert _holds_work(message, draft, nurse) is keeps
    left = AuditEvent.objects.filter(action="outgoing.draft_left", details__outgoing_id=draft.pk)
    unassigned = AuditEvent.objects.filter(action="message.unassigned", message_id=message.pk)
    assert (left.count(), unassigned.count()) == ((0, 0) if keeps else (1, 1))
    if not keeps:
        assert left.get().details["reason"] == "role_changed" and left.get().actor == manager
        assert unassigned.get().details["reason"] == "role_changed"
    if switched_off:
        # Switched on again, the mailbox is as the role change left it.
        _switch(manager, box, on=True)
        assert _holds_work(message, draft, nurse) is keeps


def test_a_role_change_while_the_mailbox_is_off_does_not_take_the_work_of_a_processor(ward):
    """The mailbox being switched off keeps everyone's work where it is (mailbox_set_active); a change that leaves
    the nurse able to process must not read "no role at all" and hand the work to the owners."""
    box, _owner, manager, nurse, _membership, message, draft = ward
    _switch(manager, box, on=False)

    _set_role(manager, box, nurse, Role.OWNER)

    assert _holds_work(message, draft, nurse)
    assert not AuditEvent.objects.filter(action__in=["outgoing.draft_left", "message.unassigned"]).exists()


def test_joining_a_group_while_the_mailbox_is_off_leaves_the_work_alone(ward):
    box, _owner, manager, nurse, _membership, message, draft = ward
    readers = manage.group_create(user=manager, name="Station 3")
    MembershipFactory(mailbox=box, group=readers, user=None, role=Role.READER)
    _switch(manager, box, on=False)

    manage.group_member_add(user=manager, group=readers, member=nurse)

    assert _holds_work(message, draft, nurse)


@pytest.mark.parametrize("switched_off", [False, True], ids=["mailbox on", "mailbox off"])
def test_a_reader_made_processor_again_gets_their_drafts_back_audited(ward, switched_off):
    box, owner, manager, nurse, _membership, message, draft = ward
    _set_role(manager, box, nurse, Role.READER)
    assert list(left_drafts_for_user(owner)) == [draft]
    if switched_off:
        _switch(manager, box, on=False)

    _set_role(manager, box, nurse, Role.PROCESSOR)

    draft.refresh_from_db()
    assert draft.author_left_at is None and draft.author == nurse
    event = AuditEvent.objects.get(action="outgoing.draft_reclaimed")
    assert event.actor == manager and event.mailbox_id == box.pk
    assert event.details == {"outgoing_id": draft.pk, "person": nurse.pk, "reason": "membership_changed"}
    # The letter went to the queue when the right went; it does not come back by itself.
    message.refresh_from_db()
    assert message.assignee is None
    if switched_off:
        _switch(manager, box, on=True)
    assert list(left_drafts_for_user(owner)) == []


def test_a_removed_member_added_again_gets_their_drafts_back_audited(ward):
    box, owner, _manager, nurse, membership, _message, draft = ward
    members.membership_remove(user=owner, mailbox=box, membership_id=membership.pk)

    _set_role(owner, box, nurse, Role.PROCESSOR)

    draft.refresh_from_db()
    assert draft.author_left_at is None
    event = AuditEvent.objects.get(action="outgoing.draft_reclaimed")
    assert event.actor == owner and event.details["reason"] == "membership_changed"


def test_setting_the_same_role_again_hands_nothing_over(ward):
    box, owner, _manager, nurse, _membership, message, draft = ward
    _set_role(owner, box, nurse, Role.PROCESSOR)
    assert _holds_work(message, draft, nurse)
    assert (
        not AuditEvent.objects.filter(action__startswith="outgoing.draft_")
        .exclude(action="outgoing.draft_created")
        .exists()
    )


def test_a_reader_through_a_group_keeps_their_work_while_a_processor_membership_stays(ward):
    """The strongest role counts: a group that only reads does not take the work of someone who processes anyway."""
    box, owner, manager, nurse, _membership, message, draft = ward
    readers = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, group=readers, user=None, role=Role.READER)
    manage.group_member_add(user=manager, group=readers, member=nurse)
    manage.group_member_remove(user=manager, group=readers, member=nurse)
    assert _holds_work(message, draft, nurse)
    assert list(left_drafts_for_user(owner)) == []


@pytest.mark.parametrize(
    ("how", "reason"),
    [("removed", "membership_ended"), ("made reader", "role_changed"), ("account off", "account_deactivated")],
)
def test_everything_a_leaver_held_goes_back_with_one_reason(ward, how, reason):
    """A read-lock, a failed send they took on, an assigned letter and a draft: each hand-over is audited with the
    same reason, so the trail says why the work moved."""
    box, owner, _manager, nurse, membership, message, draft = ward
    claims.message_claim(user=nurse, message=Message.objects.get(pk=message.pk))
    failed = OutgoingMessage.objects.create(
        mailbox=box, author=nurse, subject="Nicht zugestellt", state=OutgoingMessage.State.FAILED
    )
    outgoing_claim(user=nurse, outgoing=failed)

    if how == "removed":
        members.membership_remove(user=owner, mailbox=box, membership_id=membership.pk)
    elif how == "made reader":
        _set_role(owner, box, nurse, Role.READER)
    else:
        nurse.is_active = False
        nurse.save()

    message.refresh_from_db()
    failed.refresh_from_db()
    assert message.claimed_by is None and failed.claimed_by is None
    assert not _holds_work(message, draft, nurse)
    reasons = {
        action: AuditEvent.objects.get(action=action).details["reason"]
        for action in ("message.released", "message.unassigned", "outgoing.released", "outgoing.draft_left")
    }
    assert reasons == dict.fromkeys(reasons, reason)


def test_a_ward_left_in_the_directory_hands_the_work_back_and_rejoining_gives_the_drafts_back(ward):
    """The wards of a directory sign-in follow the directory (mailbox.services.signin): leaving one is leaving its
    mailboxes, as when a manager takes someone out of the group."""
    box, owner, _manager, _nurse, _membership, _message, _draft = ward
    station = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, group=station, user=None, role=Role.PROCESSOR)
    mapping = {"cn=kim-station-3,ou=groups": "Station 3"}
    nurse = UserFactory(username="pflege1")
    wards_from_directory(user=nurse, group_dns={"cn=kim-station-3,ou=groups"}, mapping=mapping)
    letter = message_ingest(mailbox=box, uidl="m-2", raw=MAIL_WITH_PDF)
    assignment.message_take(user=nurse, message=letter, version=letter.version)
    draft = outgoing_draft_save(user=nurse, mailbox_id=box.pk, data=OutgoingData(subject="Rückfrage Station 3"))

    wards_from_directory(user=nurse, group_dns=set(), mapping=mapping)

    assert not _holds_work(letter, draft, nurse)
    assert AuditEvent.objects.get(action="outgoing.draft_left").details["reason"] == "membership_ended"
    assert list(left_drafts_for_user(owner)) == [draft]

    wards_from_directory(user=nurse, group_dns={"cn=kim-station-3,ou=groups"}, mapping=mapping)

    draft.refresh_from_db()
    assert draft.author_left_at is None
    assert AuditEvent.objects.get(action="outgoing.draft_reclaimed").actor is None


# --- groups changed where Django reports it: the admin's user form, user.groups.add/remove -----------------------


@pytest.fixture
def station(ward):
    """A nurse who processes in the mailbox only through the group "Station 3", with a letter and a draft."""
    box, owner, _manager, _nurse, _membership, _message, _draft = ward
    station = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, group=station, user=None, role=Role.PROCESSOR)
    nurse = UserFactory(username="pflege1")
    nurse.groups.add(station)
    letter = message_ingest(mailbox=box, uidl="m-2", raw=MAIL_WITH_PDF)
    assignment.message_take(user=nurse, message=letter, version=letter.version)
    draft = outgoing_draft_save(user=nurse, mailbox_id=box.pk, data=OutgoingData(subject="Rückfrage Station 3"))
    return box, owner, station, nurse, letter, draft


def test_leaving_a_group_by_groups_remove_hands_the_work_back_and_rejoining_gives_the_drafts_back(station):
    _box, owner, group, nurse, letter, draft = station

    nurse.groups.remove(group)

    assert not _holds_work(letter, draft, nurse)
    assert list(left_drafts_for_user(owner)) == [draft]
    for action in ("message.unassigned", "outgoing.draft_left"):
        event = AuditEvent.objects.get(action=action)
        assert event.actor is None and event.details["reason"] == "membership_ended"
    assert AuditEvent.objects.get(action="group.member_removed").details == {"group": "Station 3", "member": "pflege1"}

    group.user_set.add(nurse)  # the other side of the same relation

    draft.refresh_from_db()
    assert draft.author_left_at is None and draft.author == nurse
    assert AuditEvent.objects.get(action="outgoing.draft_reclaimed").details["reason"] == "membership_changed"
    joins = AuditEvent.objects.filter(action="group.member_added").order_by("pk")
    assert [event.details["member"] for event in joins] == ["pflege1", "pflege1"]  # the fixture's, and this one
    assert list(left_drafts_for_user(owner)) == []


def test_deleting_the_group_hands_its_members_work_back(station):
    # Its memberships go with it (cascade): the nurse can no longer process, and must not keep the letter and draft
    # in a mailbox she cannot open.
    _box, owner, group, nurse, letter, draft = station

    group.delete()

    assert not _holds_work(letter, draft, nurse)
    assert list(left_drafts_for_user(owner)) == [draft]
    assert AuditEvent.objects.get(action="message.unassigned").details["reason"] == "membership_ended"
    assert AuditEvent.objects.get(action="group.deleted").details["members"] == ["pflege1"]


def test_leaving_a_group_while_another_membership_gives_the_right_keeps_the_work(station):
    box, _owner, _group, nurse, letter, draft = station
    MembershipFactory(mailbox=box, user=nurse, role=Role.PROCESSOR)
    nurse.groups.clear()
    assert _holds_work(letter, draft, nurse)
    assert not AuditEvent.objects.filter(action__in=["message.unassigned", "outgoing.draft_left"]).exists()


def test_deleting_the_group_in_the_admin_hands_the_work_back_with_the_administrator(station, client):
    _box, _owner, group, nurse, letter, draft = station
    administrator = UserFactory(username="it-admin", is_staff=True, is_superuser=True)
    client.force_login(administrator)

    client.post(reverse("admin:auth_group_delete", args=[group.pk]), {"post": "yes"})

    assert not Group.objects.filter(pk=group.pk).exists()
    assert not _holds_work(letter, draft, nurse)
    assert AuditEvent.objects.get(action="outgoing.draft_left").actor == administrator


def test_deleting_a_person_gives_their_drafts_to_the_owners(ward, client):
    """Deleting the account clears the drafts' author: unmarked, they were nobody's to see or delete."""
    box, owner, _manager, _nurse, _membership, _message, _draft = ward
    temp = UserFactory(username="aushilfe")
    MembershipFactory(mailbox=box, user=temp, role=Role.PROCESSOR)
    draft = outgoing_draft_save(user=temp, mailbox_id=box.pk, data=OutgoingData(subject="Befundanforderung"))

    temp.delete()

    draft.refresh_from_db()
    assert draft.author_id is None and draft.author_left_at is not None
    assert list(left_drafts_for_user(owner)) == [draft]
    event = AuditEvent.objects.get(action="outgoing.draft_left")
    assert event.details["outgoing_id"] == draft.pk and event.details["reason"] == "user_deleted"
    client.force_login(owner)
    html = client.get(reverse("mailbox:drafts")).content.decode()
    assert f'id="left-draft-{draft.pk}"' in html and "von einem gelöschten Benutzerkonto" in html


def test_deleting_a_person_gives_the_owners_their_draft_in_a_mailbox_they_had_left(ward):
    """A membership removed from code (a script, without the hand-over) left the draft theirs, unmarked: the delete
    clears its author, and it must go to the owners there too, not become nobody's."""
    box, owner, _manager, _nurse, _membership, _message, _draft = ward
    temp = UserFactory(username="aushilfe")
    MembershipFactory(mailbox=box, user=temp, role=Role.PROCESSOR)
    draft = outgoing_draft_save(user=temp, mailbox_id=box.pk, data=OutgoingData(subject="Befundanforderung"))
    Membership.objects.filter(user=temp).delete()
    draft.refresh_from_db()
    assert draft.author == temp and draft.author_left_at is None

    temp.delete()

    draft.refresh_from_db()
    assert draft.author_id is None and draft.author_left_at is not None
    assert list(left_drafts_for_user(owner)) == [draft]
    event = AuditEvent.objects.get(action="outgoing.draft_left")
    assert event.details["outgoing_id"] == draft.pk and event.details["reason"] == "user_deleted"


def test_deleting_a_person_releases_their_read_lock_for_the_pages_that_show_it(station):
    """The delete alone cleared the lock (SET_NULL): unaudited, and the pages showing "locked by" never heard of it.
    (Someone who was ever responsible for a message cannot be deleted: their assignment history protects them.)"""
    box, _owner, _group, _nurse, letter, _draft = station
    temp = UserFactory(username="aushilfe")
    MembershipFactory(mailbox=box, user=temp, role=Role.PROCESSOR)
    Message.objects.filter(pk=letter.pk).update(claimed_by=None, claim_expires_at=None)
    letter.refresh_from_db()
    assert claims.message_claim(user=temp, message=letter).won
    temp_id = temp.pk

    temp.delete()

    letter.refresh_from_db()
    assert letter.claimed_by_id is None
    event = AuditEvent.objects.get(action="message.released")
    assert event.details["reason"] == "user_deleted" and event.actor_id == temp_id


def test_the_admin_user_form_hands_the_work_over_when_a_group_goes_and_back_when_it_returns(station, client):
    box, owner, group, nurse, letter, draft = station
    readers = Group.objects.create(name="Lesende")
    MembershipFactory(mailbox=box, group=readers, user=None, role=Role.READER)
    nurse.groups.add(readers)
    administrator = UserFactory(username="it-admin", is_staff=True, is_superuser=True)
    client.force_login(administrator)
    url = reverse("admin:auth_user_change", args=[nurse.pk])

    # The form keeps only the readers' group: the nurse still reads, but may no longer process.
    response = client.post(url, admin_user_form(nurse, [readers]))

    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(nurse.groups.all()) == [readers]
    assert not _holds_work(letter, draft, nurse)
    for action in ("message.unassigned", "outgoing.draft_left"):
        event = AuditEvent.objects.get(action=action)
        assert event.actor == administrator and event.details["reason"] == "role_changed"
    removed = AuditEvent.objects.get(action="group.member_removed")
    assert removed.actor == administrator and removed.details["group"] == "Station 3"
    assert list(left_drafts_for_user(owner)) == [draft]

    response = client.post(url, admin_user_form(nurse, [readers, group]))

    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.author_left_at is None
    assert AuditEvent.objects.get(action="outgoing.draft_reclaimed").actor == administrator
    letter.refresh_from_db()
    assert letter.assignee is None  # the letter stays in the queue, where colleagues may have taken it


def test_moved_in_the_admin_between_two_wards_of_one_mailbox_keeps_the_work(station, client):
    """Django saves the form's groups in two steps (the old ones removed, then the new added): between them the
    nurse could not process, which must not read as leaving the mailbox."""
    box, _owner, group, nurse, letter, draft = station
    other_ward = Group.objects.create(name="Station 4")
    MembershipFactory(mailbox=box, group=other_ward, user=None, role=Role.PROCESSOR)
    administrator = UserFactory(username="it-admin", is_staff=True, is_superuser=True)
    client.force_login(administrator)

    response = client.post(reverse("admin:auth_user_change", args=[nurse.pk]), admin_user_form(nurse, [other_ward]))

    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(nurse.groups.all()) == [other_ward]
    assert _holds_work(letter, draft, nurse)
    assert not AuditEvent.objects.filter(action__in=["message.unassigned", "outgoing.draft_left"]).exists()
    moves = AuditEvent.objects.filter(action__startswith="group.member_", actor=administrator)
    assert sorted((e.action, e.details["group"]) for e in moves) == [
        ("group.member_added", "Station 4"),
        ("group.member_removed", group.name),
    ]


# --- accounts switched off and on ----------------------------------------------------------------------------------


def test_an_account_switched_on_again_reclaims_its_drafts_audited(ward):
    _box, owner, _manager, nurse, _membership, _message, draft = ward
    nurse.is_active = False
    nurse.save()
    assert list(left_drafts_for_user(owner)) == [draft]

    nurse.is_active = True
    nurse.save()

    draft.refresh_from_db()
    assert draft.author_left_at is None
    event = AuditEvent.objects.get(action="outgoing.draft_reclaimed")
    assert event.actor is None  # the system: who switched the account on is not known here
    assert event.details == {"outgoing_id": draft.pk, "person": nurse.pk, "reason": "account_reactivated"}
    assert event.action_label == "Entwurf eines zurückgekehrten Mitglieds ihm wieder übergeben"


def test_an_account_switched_on_while_its_mailbox_is_off_gets_its_drafts_back(ward):
    """Otherwise the drafts would stay with the owners for good: nothing reclaims them when the mailbox comes back."""
    box, owner, manager, nurse, _membership, _message, draft = ward
    nurse.is_active = False
    nurse.save()
    _switch(manager, box, on=False)

    nurse.is_active = True
    nurse.save()
    _switch(manager, box, on=True)

    draft.refresh_from_db()
    assert draft.author_left_at is None
    assert list(left_drafts_for_user(owner)) == []
    assert AuditEvent.objects.filter(action="outgoing.draft_reclaimed").count() == 1


def test_a_switched_off_account_whose_role_changes_gets_nothing_back(ward):
    box, owner, manager, nurse, _membership, _message, draft = ward
    nurse.is_active = False
    nurse.save()
    readers = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, group=readers, user=None, role=Role.OWNER)

    manage.group_member_add(user=manager, group=readers, member=nurse)

    draft.refresh_from_db()
    assert draft.author_left_at is not None
    assert list(left_drafts_for_user(owner)) == [draft]
    assert not AuditEvent.objects.filter(action="outgoing.draft_reclaimed").exists()


# --- the last owner ----------------------------------------------------------------------------------------------
# An owner is a person who can sign in: an owners' group nobody is in, or switched-off accounts, manage nothing.


def test_the_last_person_who_owns_cannot_be_removed_behind_an_empty_owners_group(ward):
    box, owner, manager, _nurse, _membership, _message, _draft = ward
    empty = Group.objects.create(name="Leitung Kardiologie")
    MembershipFactory(mailbox=box, group=empty, user=None, role=Role.OWNER)
    owner_membership = Membership.objects.get(mailbox=box, user=owner)

    with pytest.raises(PortalError, match="mindestens einen Eigentümer"):
        members.membership_remove(user=manager, mailbox=box, membership_id=owner_membership.pk)
    with pytest.raises(PortalError, match="mindestens einen Eigentümer"):
        _set_role(manager, box, owner, Role.READER)

    assert Membership.objects.get(pk=owner_membership.pk).role == Role.OWNER
    assert not AuditEvent.objects.filter(action__in=["membership.removed", "membership.set"]).exists()


def test_the_last_person_who_owns_cannot_be_removed_behind_a_switched_off_owner(ward):
    box, owner, manager, _nurse, _membership, _message, _draft = ward
    gone = UserFactory(username="ehemalig", is_active=False)
    MembershipFactory(mailbox=box, user=gone, role=Role.OWNER)

    with pytest.raises(PortalError, match="mindestens einen Eigentümer"):
        members.membership_remove(
            user=manager, mailbox=box, membership_id=Membership.objects.get(mailbox=box, user=owner).pk
        )
    assert Membership.objects.filter(mailbox=box, user=owner, role=Role.OWNER).exists()


def test_the_last_owner_cannot_leave_the_owners_group_and_the_error_names_the_mailbox(ward):
    box, owner, manager, _nurse, _membership, _message, _draft = ward
    leads = Group.objects.create(name="Leitung Kardiologie")
    MembershipFactory(mailbox=box, group=leads, user=None, role=Role.OWNER)
    leads.user_set.add(owner)
    members.membership_remove(
        user=manager, mailbox=box, membership_id=Membership.objects.get(mailbox=box, user=owner).pk
    )

    with pytest.raises(PortalError, match="Kardiologie: Ein Postfach braucht mindestens einen Eigentümer"):
        manage.group_member_remove(user=manager, group=leads, member=owner)

    assert leads.user_set.filter(pk=owner.pk).exists()
    assert not AuditEvent.objects.filter(action="group.member_removed").exists()


def test_a_mailbox_whose_owners_group_is_empty_can_still_be_changed_and_mended(ward):
    """Such a mailbox (from before this rule, or whose owners were switched off) must not lock every change: adding a
    reader works, and so does giving it an owner again."""
    box, owner, manager, nurse, _membership, _message, _draft = ward
    owner.is_active = False
    owner.save()
    newcomer = UserFactory(username="neu")

    _set_role(manager, box, newcomer, Role.READER)
    _set_role(manager, box, nurse, Role.OWNER)

    assert Membership.objects.get(mailbox=box, user=nurse).role == Role.OWNER
