"""Two administrators delete a mailbox's last two owners at the same moment, each with the admin's "delete selected"
action: the second is refused and the mailbox keeps its owner.

Real PostgreSQL, one connection per thread. The first request has checked and holds before deleting; the second
starts and is either finished or waiting for a lock before the first goes on — the test watches pg_stat_activity
for that instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client
from django.urls import reverse

from mailbox.admin import PortalUserAdmin
from mailbox.models import Membership
from mailbox.services import members
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the race is specified for PostgreSQL"),
]

WAIT = 30  # seconds before the test counts as hung
User = get_user_model()


def _others_waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_two_administrators_deleting_the_last_two_owners_at_once_leave_one(settings, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    box = MailboxFactory(display_name="Kardiologie")
    leads = Group.objects.create(name="Leitung Kardiologie")
    MembershipFactory(mailbox=box, group=leads, user=None, role=Membership.Role.OWNER)
    first, second = UserFactory(username="chefin"), UserFactory(username="oberarzt")
    first.groups.add(leads)
    second.groups.add(leads)
    browsers = []
    for name in ("it-admin", "it-admin-2"):
        browser = Client()
        browser.force_login(UserFactory(username=name, is_staff=True, is_superuser=True))
        browsers.append(browser)

    holding, release = threading.Event(), threading.Event()
    outcomes: dict[str, Any] = {}
    delete_queryset = PortalUserAdmin.delete_queryset

    def held_delete(admin: Any, request: Any, queryset: Any) -> None:
        # The first request stops between its check and its delete, where the two used to interleave.
        if threading.current_thread().name == "first":
            holding.set()
            release.wait(WAIT)
        delete_queryset(admin, request, queryset)

    monkeypatch.setattr(PortalUserAdmin, "delete_queryset", held_delete)

    def delete(browser: Client, person: Any, outcome: str) -> None:
        try:
            outcomes[outcome] = browser.post(
                reverse("admin:auth_user_changelist"),
                {"action": "delete_selected", "_selected_action": [person.pk], "post": "yes"},
            )
        except BaseException as exc:
            outcomes[outcome] = exc
        finally:
            holding.set()
            connection.close()

    one = threading.Thread(target=delete, args=(browsers[0], first, "first"), name="first", daemon=True)
    one.start()
    assert holding.wait(WAIT)
    two = threading.Thread(target=delete, args=(browsers[1], second, "second"), name="second", daemon=True)
    two.start()
    deadline = time.monotonic() + WAIT
    while two.is_alive() and not _others_waiting_for_a_lock():
        assert time.monotonic() < deadline, "the second delete neither finished nor waited"
        two.join(0.01)
    release.set()
    one.join(WAIT)
    two.join(WAIT)

    assert outcomes["first"].status_code == 302
    assert outcomes["second"].status_code == 200
    assert "Postfach „Kardiologie“: ein Postfach braucht mindestens einen Eigentümer" in (
        outcomes["second"].content.decode()
    )
    assert list(User.objects.filter(pk__in=[first.pk, second.pk]).values_list("username", flat=True)) == ["oberarzt"]
    assert members.has_an_owner(box)
