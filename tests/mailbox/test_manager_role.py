"""The house's manager role (Leitung): a permission, not a superuser and not a mailbox membership."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, Group, Permission

from mailbox.permissions import is_manager, user_role
from tests.mailbox.factories import MailboxFactory, UserFactory

pytestmark = pytest.mark.django_db


def _manage_house() -> Permission:
    return Permission.objects.get(content_type__app_label="mailbox", codename="manage_house")


def test_the_permission_makes_a_manager_directly_or_through_a_group():
    plain, direct, via_group = UserFactory(), UserFactory(), UserFactory()
    direct.user_permissions.add(_manage_house())
    leitung = Group.objects.create(name="Leitung")
    leitung.permissions.add(_manage_house())
    via_group.groups.add(leitung)
    assert [is_manager(u) for u in (plain, direct, via_group)] == [False, True, True]
    assert not is_manager(AnonymousUser())


def test_a_deactivated_manager_is_none_and_managing_grants_no_mailbox():
    manager = UserFactory()
    manager.user_permissions.add(_manage_house())
    box = MailboxFactory()
    assert is_manager(manager)
    assert user_role(manager, box) is None  # reading messages still needs a membership
    manager.is_active = False
    manager.save()
    assert not is_manager(type(manager).objects.get(pk=manager.pk))


def test_a_request_reads_the_manager_flag_with_its_user_and_each_request_anew(client, monkeypatch):
    from django.urls import reverse

    from mailbox import permissions

    plain, direct, via_group = UserFactory(), UserFactory(), UserFactory()
    direct.user_permissions.add(_manage_house())
    leitung = Group.objects.create(name="Leitung")
    leitung.permissions.add(_manage_house())
    via_group.groups.add(leitung)

    def no_own_query(user_id):
        raise AssertionError("a request's user comes with the answer")

    monkeypatch.setattr(permissions._MANAGER, "rows", no_own_query)

    def manager_in_request(user) -> bool:
        client.force_login(user)
        request = client.get(reverse("mailbox:inbox")).wsgi_request
        return is_manager(request.user)

    assert [manager_in_request(u) for u in (plain, direct, via_group)] == [False, True, True]
    via_group.groups.remove(leitung)
    direct.user_permissions.remove(_manage_house())
    client.force_login(direct)
    assert not is_manager(client.get(reverse("mailbox:inbox")).wsgi_request.user)  # the next request knows
    client.force_login(via_group)
    assert not is_manager(client.get(reverse("mailbox:inbox")).wsgi_request.user)
