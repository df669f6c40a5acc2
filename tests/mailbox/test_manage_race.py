"""Managers' writes under concurrency on real PostgreSQL: a mailbox or a group created twice at once (a double click
on "Anlegen", two managers) is one row and a German message, never a server error."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection, transaction

from kimportal.errors import PortalError
from mailbox.models import KimAccount, Mailbox, Membership
from mailbox.services import manage
from mailbox.services.audit import AuditEvent
from tests.mailbox.factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the race is specified for PostgreSQL"),
]

ADDRESS = "aufnahme@klinikum-test.kim.telematik-test"
WAIT = 30


@pytest.fixture
def manager(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    user = UserFactory(username="leitung")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def _waiting_backends() -> int:
    """Other connections of this test database that wait for a lock (here: the unique index's pending entry)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def _eventually(condition: Callable[[], bool]) -> bool:
    # Polls a condition PostgreSQL reports (a backend waiting for a lock); it orders the threads, it fixes no race.
    pause = threading.Event()
    for _ in range(WAIT * 100):
        if condition():
            return True
        pause.wait(0.01)
    return False


def _second_while_first_uncommitted(insert_first: Callable[[], Any], second: Callable[[], Any]) -> Any:
    """The first request has inserted and not committed; the second passes its "exists?" check and waits at the
    unique index; then the first commits. Returns what the second returned or raised."""
    inserted, may_commit = threading.Event(), threading.Event()
    outcome: list[Any] = []

    def first() -> None:
        try:
            with transaction.atomic():
                insert_first()
                inserted.set()
                may_commit.wait(WAIT)
        finally:
            connection.close()

    def run_second() -> None:
        try:
            outcome.append(second())
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connection.close()

    a = threading.Thread(target=first, daemon=True)
    a.start()
    assert inserted.wait(WAIT)
    b = threading.Thread(target=run_second, daemon=True)
    b.start()
    assert _eventually(lambda: _waiting_backends() == 1), "the second never reached the unique index"
    may_commit.set()
    a.join(WAIT)
    b.join(WAIT)
    assert not a.is_alive() and not b.is_alive()
    return outcome[0]


def test_a_mailbox_created_twice_at_once_is_one_mailbox_and_a_german_message(manager):
    owner = UserFactory(username="chefin")

    def create() -> Mailbox:
        account = KimAccount(cm_host="127.0.0.1", fachdienst="f", mandant_id="M", client_system_id="C")
        account.set_password("kim-secret")
        return manage.mailbox_create(
            user=manager, address=ADDRESS, display_name="Aufnahme", kind="functional", account=account, owners=[owner]
        )

    error = _second_while_first_uncommitted(
        lambda: Mailbox.objects.create(address=ADDRESS, display_name="Aufnahme"), create
    )

    assert isinstance(error, PortalError), error
    assert error.message == f"Ein Postfach mit der Adresse {ADDRESS} gibt es schon."
    assert Mailbox.objects.filter(address=ADDRESS).count() == 1
    assert not KimAccount.objects.exists() and not Membership.objects.exists()


def test_a_group_created_twice_at_once_is_one_group_and_a_german_message(manager):
    error = _second_while_first_uncommitted(
        lambda: Group.objects.create(name="Station 3"), lambda: manage.group_create(user=manager, name="Station 3")
    )

    assert isinstance(error, PortalError), error
    assert error.message == "Eine Gruppe „Station 3“ gibt es schon."
    assert Group.objects.filter(name="Station 3").count() == 1
    assert not AuditEvent.objects.filter(action="group.created").exists()
