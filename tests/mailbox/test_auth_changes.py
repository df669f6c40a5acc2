"""Accounts and groups changed anywhere — the Django admin, a script, the shell: deleting a user or a group, renaming
a group and the permissions a user or group holds directly are audited once, in the writer's transaction; a delete
that takes a mailbox's last owner who can sign in is not refused from code, but audited as mailbox.owner_lost."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.urls import reverse
from django.utils import translation

from audit.models import AuditEvent
from mailbox.models import Membership
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory, admin_user_form

Role = Membership.Role
User = get_user_model()

pytestmark = pytest.mark.django_db


@pytest.fixture
def house(client):
    """Kardiologie, owned by the people of "Leitung Kardiologie" (only Clara is in it) and read by the ward "Station
    3" (Paul); an administrator signed in to the Django admin."""
    box = MailboxFactory(display_name="Kardiologie", address="kardio@klinik.kim.telematik")
    leads = Group.objects.create(name="Leitung Kardiologie")
    ward = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, group=leads, user=None, role=Role.OWNER)
    MembershipFactory(mailbox=box, group=ward, user=None, role=Role.READER)
    owner = UserFactory(username="chefin")
    owner.groups.add(leads)
    nurse = UserFactory(username="pfleger")
    nurse.groups.add(ward)
    administrator = UserFactory(username="it-admin", is_staff=True, is_superuser=True)
    client.force_login(administrator)
    return box, leads, ward, owner, nurse, administrator


def _permission(codename: str) -> Permission:
    return Permission.objects.get(content_type__app_label="mailbox", codename=codename)


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq", "pk"))


# --- deleting from code: audited, not refused --------------------------------------------------------------------


def test_deleting_the_last_owner_from_code_is_audited_with_what_it_owned(house):
    box, _leads, _ward, owner, _nurse, _administrator = house
    owner_pk = owner.pk

    owner.delete()

    assert not User.objects.filter(pk=owner_pk).exists()  # not refused
    [event] = _events("user.deleted")
    assert event.actor is None
    assert event.details == {
        "user_id": owner_pk,
        "member": "chefin",
        "groups": ["Leitung Kardiologie"],
        "owner_of": ["kardio@klinik.kim.telematik"],
    }
    [lost] = _events("mailbox.owner_lost")
    assert lost.mailbox_id == box.pk
    assert lost.details == {"member": "chefin", "reason": "user_deleted"}


def test_deleting_one_of_two_owners_from_code_is_audited_but_no_owner_is_lost(house):
    _box, leads, _ward, owner, _nurse, _administrator = house
    UserFactory(username="oberarzt").groups.add(leads)

    User.objects.filter(pk=owner.pk).delete()

    assert [event.details["member"] for event in _events("user.deleted")] == ["chefin"]
    assert _events("mailbox.owner_lost") == []


def test_deleting_someone_who_owns_nothing_names_no_mailbox(house):
    _box, _leads, _ward, _owner, nurse, _administrator = house

    nurse.delete()

    [event] = _events("user.deleted")
    assert event.details["groups"] == ["Station 3"] and event.details["owner_of"] == []
    assert _events("mailbox.owner_lost") == []


def test_deleting_the_owners_group_from_code_is_audited_per_member_who_went(house):
    box, leads, _ward, _owner, _nurse, _administrator = house
    leads_pk = leads.pk

    Group.objects.filter(name="Leitung Kardiologie").delete()

    [event] = _events("group.deleted")
    assert event.details == {
        "group_id": leads_pk,
        "group": "Leitung Kardiologie",
        "members": ["chefin"],
        "mailboxes": ["kardio@klinik.kim.telematik"],
        "owner_of": ["kardio@klinik.kim.telematik"],
    }
    [lost] = _events("mailbox.owner_lost")
    assert lost.mailbox_id == box.pk
    assert lost.details == {"member": "chefin", "reason": "group_deleted"}


def test_a_delete_rolled_back_leaves_no_event(house):
    _box, _leads, ward, _owner, _nurse, _administrator = house
    ward_pk = ward.pk

    with pytest.raises(RuntimeError), transaction.atomic():
        ward.delete()
        raise RuntimeError("the script fails later")

    assert Group.objects.filter(pk=ward_pk).exists()
    assert _events("group.deleted") == []


# --- renaming a group --------------------------------------------------------------------------------------------


def test_renaming_a_group_from_code_is_audited_with_old_and_new_name(house):
    _box, _leads, ward, _owner, _nurse, _administrator = house

    ward.name = "Station 3a"
    ward.save()
    ward.save()  # saved again unchanged: nothing more

    [event] = _events("group.renamed")
    assert event.actor is None
    assert event.details == {"group_id": ward.pk, "group": "Station 3a", "previous": "Station 3"}


def test_renaming_a_group_in_the_admin_is_audited_once_with_the_administrator(house, client):
    _box, _leads, ward, _owner, _nurse, administrator = house
    url = reverse("admin:auth_group_change", args=[ward.pk])

    response = client.post(url, {"name": "Station 3a", "permissions": []})
    client.post(url, {"name": "Station 3a", "permissions": []})

    assert response.status_code == 302, response.content.decode()[:3000]
    [event] = _events("group.renamed")
    assert event.actor == administrator
    assert event.details["previous"] == "Station 3" and event.details["group"] == "Station 3a"
    assert _events("group.permissions_changed") == []


# --- a person's own permissions ----------------------------------------------------------------------------------


def test_a_persons_permissions_changed_from_code_are_audited(house):
    _box, _leads, _ward, _owner, nurse, _administrator = house
    manage_house, change_membership = _permission("manage_house"), _permission("change_membership")

    nurse.user_permissions.add(manage_house, change_membership)
    nurse.user_permissions.add(manage_house)  # held already: no change
    nurse.user_permissions.remove(change_membership, _permission("delete_membership"))  # the second is not held
    nurse.user_permissions.clear()

    details = [event.details for event in _events("user.permissions_changed")]
    assert details == [
        {"member": "pfleger", "added": ["mailbox.change_membership", "mailbox.manage_house"], "removed": []},
        {"member": "pfleger", "added": [], "removed": ["mailbox.change_membership"]},
        {"member": "pfleger", "added": [], "removed": ["mailbox.manage_house"]},
    ]


def test_a_permission_given_from_its_own_side_is_audited_per_person(house):
    _box, _leads, _ward, owner, nurse, _administrator = house
    manage_house = _permission("manage_house")

    manage_house.user_set.add(owner, nurse)
    manage_house.user_set.clear()

    details = [
        (event.details["member"], event.details["added"], event.details["removed"])
        for event in _events("user.permissions_changed")
    ]
    assert details == [
        ("chefin", ["mailbox.manage_house"], []),
        ("pfleger", ["mailbox.manage_house"], []),
        ("chefin", [], ["mailbox.manage_house"]),
        ("pfleger", [], ["mailbox.manage_house"]),
    ]


def test_a_groups_permissions_changed_from_code_are_audited(house):
    _box, leads, _ward, _owner, _nurse, _administrator = house

    leads.permissions.add(_permission("manage_house"))

    [event] = _events("group.permissions_changed")
    assert event.actor is None
    assert event.details == {"group": "Leitung Kardiologie", "added": ["mailbox.manage_house"], "removed": []}


def test_the_user_form_writes_one_event_per_change_of_permissions_and_none_when_unchanged(house, client):
    _box, _leads, ward, _owner, nurse, administrator = house
    manage_house, change_membership = _permission("manage_house"), _permission("change_membership")
    nurse.user_permissions.add(change_membership)
    url = reverse("admin:auth_user_change", args=[nurse.pk])
    form = admin_user_form(nurse, [ward])

    response = client.post(url, {**form, "user_permissions": [manage_house.pk]})
    client.post(url, {**form, "user_permissions": [manage_house.pk]})  # saved again unchanged

    assert response.status_code == 302, response.content.decode()[:3000]
    [setup, event] = _events("user.permissions_changed")  # the form's save: one event, not one per step
    assert setup.actor is None and event.actor == administrator
    assert event.details == {
        "member": "pfleger",
        "added": ["mailbox.manage_house"],
        "removed": ["mailbox.change_membership"],
    }


# --- the admin's deletes name the administrator --------------------------------------------------------------------


def test_deleting_in_the_admin_is_audited_with_the_administrator(house, client):
    _box, _leads, ward, _owner, nurse, administrator = house

    user_response = client.post(reverse("admin:auth_user_delete", args=[nurse.pk]), {"post": "yes"})
    group_response = client.post(
        reverse("admin:auth_group_changelist"),
        {"action": "delete_selected", "_selected_action": [ward.pk], "post": "yes"},
    )

    assert user_response.status_code == 302 and group_response.status_code == 302
    assert [(event.actor, event.details["member"]) for event in _events("user.deleted")] == [(administrator, "pfleger")]
    assert [(event.actor, event.details["group"]) for event in _events("group.deleted")] == [
        (administrator, "Station 3")
    ]


# --- labels --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "german", "english"),
    [
        ("user.deleted", "Benutzerkonto gelöscht", "User account deleted"),
        ("group.deleted", "Gruppe gelöscht", "Group deleted"),
        ("group.renamed", "Gruppe umbenannt", "Group renamed"),
        ("user.permissions_changed", "Berechtigungen einer Person geändert", "Permissions of a person changed"),
    ],
)
def test_the_new_events_have_labels_in_german_and_english(action, german, english):
    event = AuditEvent(action=action)

    with translation.override("de"):
        assert event.action_label == german
    with translation.override("en"):
        assert event.action_label == english
