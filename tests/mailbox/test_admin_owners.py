"""Accounts and groups in the Django admin: a mailbox keeps an owner who can sign in (the user form's groups and
"Aktiv", deleting users or groups are refused before anything is saved), programmatic changes that take the last
owner are audited, and a group's permissions changed in the admin are audited."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.models import Membership, Message
from mailbox.services import assignment
from mailbox.services.ingest import message_ingest
from mailbox.services.signin import wards_from_directory
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory, admin_user_form
from tests.mailbox.mails import MAIL_WITH_PDF

Role = Membership.Role
User = get_user_model()

pytestmark = pytest.mark.django_db

REFUSED = "Damit hätte das Postfach „Kardiologie“ keinen Eigentümer mehr, der sich anmelden kann."


@pytest.fixture
def house(client):
    """Kardiologie, owned by the people of the group "Leitung Kardiologie" (only Clara is in it), with a nurse who
    processes and has taken a letter; an administrator signed in to the Django admin."""
    box = MailboxFactory(display_name="Kardiologie")
    leads = Group.objects.create(name="Leitung Kardiologie")
    MembershipFactory(mailbox=box, group=leads, user=None, role=Role.OWNER)
    owner = UserFactory(username="chefin", first_name="Clara", last_name="Chef", email="chefin@example.org")
    owner.groups.add(leads)
    nurse = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    MembershipFactory(mailbox=box, user=nurse, role=Role.PROCESSOR)
    letter = message_ingest(mailbox=box, uidl="m-1", raw=MAIL_WITH_PDF)
    assignment.message_take(user=nurse, message=letter, version=letter.version)
    administrator = UserFactory(username="it-admin", is_staff=True, is_superuser=True)
    client.force_login(administrator)
    return box, leads, owner, nurse, administrator


def _group_changes() -> list[str]:
    """Those made in the admin (the fixture's own are by the system)."""
    changes = AuditEvent.objects.filter(action__startswith="group.member_", actor_username="it-admin")
    return list(changes.values_list("action", flat=True))


# --- the user form ---------------------------------------------------------------------------------------------


def test_the_user_form_refuses_to_take_the_last_owner_out_of_the_owners_group(house, client):
    _box, leads, owner, _nurse, _administrator = house
    ward = Group.objects.create(name="Station 3")

    response = client.post(reverse("admin:auth_user_change", args=[owner.pk]), admin_user_form(owner, [ward]))

    assert response.status_code == 200
    assert REFUSED in response.content.decode()
    assert list(owner.groups.all()) == [leads]  # nothing saved, not even the group joined
    assert _group_changes() == []


def test_the_user_form_lets_an_owner_leave_the_owners_group_when_another_owner_stays(house, client):
    box, _leads, owner, _nurse, _administrator = house
    MembershipFactory(mailbox=box, user=UserFactory(username="oberarzt"), role=Role.OWNER)

    response = client.post(reverse("admin:auth_user_change", args=[owner.pk]), admin_user_form(owner, []))

    assert response.status_code == 302, response.content.decode()[:3000]
    assert not owner.groups.exists()
    assert _group_changes() == ["group.member_removed"]


def test_the_user_form_refuses_to_switch_off_the_last_owner(house, client):
    _box, leads, owner, _nurse, _administrator = house

    response = client.post(
        reverse("admin:auth_user_change", args=[owner.pk]), admin_user_form(owner, [leads], active=False)
    )

    assert response.status_code == 200
    assert REFUSED in response.content.decode()
    owner.refresh_from_db()
    assert owner.is_active
    assert not AuditEvent.objects.filter(action="mailbox.owner_lost").exists()


def test_the_user_form_switches_off_a_processor_and_their_work_goes_back(house, client):
    """The refusal is for the last owner only: switching off anyone else still works and hands the work back."""
    box, _leads, _owner, nurse, _administrator = house

    response = client.post(reverse("admin:auth_user_change", args=[nurse.pk]), admin_user_form(nurse, [], active=False))

    assert response.status_code == 302, response.content.decode()[:3000]
    nurse.refresh_from_db()
    assert not nurse.is_active
    assert Message.objects.get(mailbox=box).assignee is None


def test_a_switched_off_owner_does_not_count_as_the_one_who_stays(house, client):
    box, leads, owner, _nurse, _administrator = house
    MembershipFactory(mailbox=box, user=UserFactory(username="ehemalig", is_active=False), role=Role.OWNER)

    response = client.post(reverse("admin:auth_user_change", args=[owner.pk]), admin_user_form(owner, []))

    assert response.status_code == 200
    assert REFUSED in response.content.decode()
    assert list(owner.groups.all()) == [leads]


# --- deleting users and groups ---------------------------------------------------------------------------------


def test_the_last_owner_cannot_be_deleted(house, client):
    _box, _leads, owner, _nurse, _administrator = house
    url = reverse("admin:auth_user_delete", args=[owner.pk])

    page = client.get(url).content.decode()
    response = client.post(url, {"post": "yes"})

    assert "Postfach „Kardiologie“: ein Postfach braucht mindestens einen Eigentümer" in page
    assert response.status_code == 200
    assert User.objects.filter(pk=owner.pk).exists()


def test_two_owners_deleted_together_are_refused_though_each_alone_could_go(house, client):
    box, leads, owner, _nurse, _administrator = house
    second = UserFactory(username="oberarzt")
    second.groups.add(leads)

    alone = client.get(reverse("admin:auth_user_delete", args=[second.pk])).content.decode()
    response = client.post(
        reverse("admin:auth_user_changelist"),
        {"action": "delete_selected", "_selected_action": [owner.pk, second.pk], "post": "yes"},
    )

    assert "ein Postfach braucht mindestens einen Eigentümer" not in alone
    assert response.status_code == 200
    assert "Postfach „Kardiologie“: ein Postfach braucht mindestens einen Eigentümer" in response.content.decode()
    assert User.objects.filter(pk__in=[owner.pk, second.pk]).count() == 2

    response = client.post(reverse("admin:auth_user_delete", args=[second.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not User.objects.filter(pk=second.pk).exists()
    assert Membership.objects.filter(mailbox=box, group=leads, role=Role.OWNER).exists()


def test_the_owners_group_of_the_last_owner_cannot_be_deleted(house, client):
    _box, leads, _owner, _nurse, _administrator = house
    url = reverse("admin:auth_group_delete", args=[leads.pk])

    response = client.post(url, {"post": "yes"})

    assert response.status_code == 200
    assert "Postfach „Kardiologie“: ein Postfach braucht mindestens einen Eigentümer" in response.content.decode()
    assert Group.objects.filter(pk=leads.pk).exists()


# --- outside the forms: not refused, but audited and logged ----------------------------------------------------


def test_groups_remove_of_the_last_owner_is_audited_and_logged(house, caplog):
    box, leads, owner, _nurse, _administrator = house

    with caplog.at_level(logging.WARNING, logger="mailbox.services.members"):
        owner.groups.remove(leads)

    assert not owner.groups.exists()
    event = AuditEvent.objects.get(action="mailbox.owner_lost")
    assert event.mailbox_id == box.pk and event.actor is None
    assert event.details == {"member": "chefin", "reason": "group_left"}
    assert event.action_label == "Postfach ohne Eigentümer, der sich anmelden kann"
    assert "has no owner who can sign in" in caplog.text


def test_leaving_the_owners_group_while_another_owner_stays_is_no_warning(house):
    box, leads, owner, _nurse, _administrator = house
    MembershipFactory(mailbox=box, user=UserFactory(username="oberarzt"), role=Role.OWNER)

    leads.user_set.remove(owner)

    assert not AuditEvent.objects.filter(action="mailbox.owner_lost").exists()


def test_the_last_owner_leaving_the_owners_ward_in_the_directory_leaves_it_audited(house):
    """The directory decides at sign-in: refusing would keep an owner the hospital has taken out of the ward."""
    box, _leads, owner, _nurse, _administrator = house

    wards_from_directory(
        user=owner, group_dns=set(), mapping={"cn=kim-leitung-kardio,ou=groups": "Leitung Kardiologie"}
    )

    assert not owner.groups.exists()
    event = AuditEvent.objects.get(action="mailbox.owner_lost")
    assert event.mailbox_id == box.pk
    assert event.details == {"member": "chefin", "reason": "directory"}


def test_switching_off_the_last_owner_from_the_shell_is_audited(house):
    box, _leads, owner, _nurse, _administrator = house

    owner.is_active = False
    owner.save()

    event = AuditEvent.objects.get(action="mailbox.owner_lost")
    assert event.mailbox_id == box.pk
    assert event.details == {"member": "chefin", "reason": "account_deactivated"}


# --- a group's permissions -------------------------------------------------------------------------------------


def test_a_groups_permissions_changed_in_the_admin_are_audited_with_who_and_what(house, client):
    _box, leads, _owner, _nurse, administrator = house
    manage_house = Permission.objects.get(content_type__app_label="mailbox", codename="manage_house")
    change_membership = Permission.objects.get(content_type__app_label="mailbox", codename="change_membership")
    leads.permissions.add(change_membership)
    url = reverse("admin:auth_group_change", args=[leads.pk])

    response = client.post(url, {"name": leads.name, "permissions": [manage_house.pk]})

    assert response.status_code == 302, response.content.decode()[:3000]
    event = AuditEvent.objects.get(action="group.permissions_changed", actor_username="it-admin")
    assert event.actor == administrator
    assert event.details == {
        "group": "Leitung Kardiologie",
        "added": ["mailbox.manage_house"],
        "removed": ["mailbox.change_membership"],
    }
    assert event.action_label == "Berechtigungen einer Gruppe geändert"
    # The setup's change (by the system) and the form's save: one event, not one per step of the save.
    assert AuditEvent.objects.filter(action="group.permissions_changed").count() == 2

    client.post(url, {"name": "Leitung Kardiologie (Haus)", "permissions": [manage_house.pk]})

    assert AuditEvent.objects.filter(action="group.permissions_changed").count() == 2  # renamed only: no change
