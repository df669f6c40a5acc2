"""Two owners removed at the same moment, each by a different request: the mailbox keeps one of them.

Real PostgreSQL, one connection per thread. The first removal holds its transaction open; the second starts
and is either finished or waiting for a lock before the first commits — the test watches pg_stat_activity for
that instead of sleeping.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction

from kimportal.errors import PortalError
from mailbox.models import Membership
from mailbox.services import members
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the race is specified for PostgreSQL"),
]

WAIT = 30  # seconds before the test counts as hung


def _waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_two_owners_removed_at_once_leave_one(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    box = MailboxFactory(display_name="Kardiologie")
    first, second = UserFactory(username="chefin"), UserFactory(username="oberarzt")
    first_membership = MembershipFactory(mailbox=box, user=first, role=Membership.Role.OWNER)
    second_membership = MembershipFactory(mailbox=box, user=second, role=Membership.Role.OWNER)
    manager = UserFactory(username="leitung")
    manager.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))

    holding, release = threading.Event(), threading.Event()
    outcomes: dict[str, object] = {}

    def remove_first() -> None:
        try:
            with transaction.atomic():
                members.membership_remove(user=manager, mailbox=box, membership_id=first_membership.pk)
                holding.set()
                release.wait(WAIT)
            outcomes["first"] = "removed"
        except BaseException as exc:
            outcomes["first"] = exc
            holding.set()
        finally:
            connection.close()

    def remove_second() -> None:
        try:
            members.membership_remove(user=manager, mailbox=box, membership_id=second_membership.pk)
            outcomes["second"] = "removed"
        except BaseException as exc:
            outcomes["second"] = exc
        finally:
            connection.close()

    one = threading.Thread(target=remove_first, daemon=True)
    one.start()
    assert holding.wait(WAIT)
    two = threading.Thread(target=remove_second, daemon=True)
    two.start()
    deadline = time.monotonic() + WAIT
    while two.is_alive() and not _waiting_for_a_lock():
        assert time.monotonic() < deadline, "the second removal neither finished nor waited"
        two.join(0.01)
    release.set()
    one.join(WAIT)
    two.join(WAIT)

    assert outcomes["first"] == "removed"
    assert isinstance(outcomes["second"], PortalError)
    assert "mindestens einen Eigentümer" in str(outcomes["second"])
    assert list(Membership.objects.filter(mailbox=box, role=Membership.Role.OWNER).values_list("user", flat=True)) == [
        second.pk
    ]
    assert members.has_an_owner(box)
