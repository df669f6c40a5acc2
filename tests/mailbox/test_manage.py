"""The managers' pages (Leitung): home page and navigation."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from tests.mailbox.factories import UserFactory

pytestmark = pytest.mark.django_db


def make_manager(**kwargs):
    user = UserFactory(**kwargs)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def test_the_navigation_links_the_manager_home_for_managers_only(client):
    manager, staff = make_manager(), UserFactory()
    home = reverse("manage:home")
    assert home == "/leitung/"

    client.force_login(manager)
    page = client.get(reverse("mailbox:inbox")).content.decode()
    assert f'href="{home}"' in page
    assert client.get(home).status_code == 200

    client.force_login(staff)
    assert f'href="{home}"' not in client.get(reverse("mailbox:inbox")).content.decode()
    assert client.get(home).status_code == 404
