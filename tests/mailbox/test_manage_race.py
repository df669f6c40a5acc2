"""Managers' writes under concurrency on real PostgreSQL: a mailbox created twice at once (a double click on
"Anlegen", two managers) is one mailbox and a German message, never a server error."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction

from kimportal.errors import PortalError
from mailbox.models import KimAccount, Mailbox, Membership
from mailbox.services import manage
from tests.mailbox.factories import UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the race is specified for PostgreSQL"),
]

ADDRESS = "aufnahme@klinikum-test.kim.telematik-test"
WAIT = 30


def _waiting_backends() -> int:
    """Other connections of this test database that wait for a lock (here: the unique index's pending entry)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def _eventually(condition) -> bool:
    # Polls a condition PostgreSQL reports (a backend waiting for a lock); it orders the threads, it fixes no race.
    pause = threading.Event()
    for _ in range(WAIT * 100):
        if condition():
            return True
        pause.wait(0.01)
    return False


def test_a_mailbox_created_twice_at_once_is_one_mailbox_and_a_german_message(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    manager = UserFactory(username="leitung")
    manager.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    owner = UserFactory(username="chefin")
    first_inserted, first_may_commit = threading.Event(), threading.Event()
    outcome: dict[str, BaseException | Mailbox] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                Mailbox.objects.create(address=ADDRESS, display_name="Aufnahme")
                first_inserted.set()
                first_may_commit.wait(WAIT)
        finally:
            connection.close()

    def second() -> None:
        try:
            account = KimAccount(cm_host="127.0.0.1", fachdienst="f", mandant_id="M", client_system_id="C")
            account.set_password("kim-secret")
            outcome["second"] = manage.mailbox_create(
                user=manager, address=ADDRESS, display_name="Aufnahme", kind="functional", account=account,
                owners=[owner],
            )  # fmt: skip
        except BaseException as exc:
            outcome["second"] = exc
        finally:
            connection.close()

    a = threading.Thread(target=first, daemon=True)
    a.start()
    assert first_inserted.wait(WAIT)
    b = threading.Thread(target=second, daemon=True)
    b.start()
    # The second passed the "exists?" check (the first has not committed) and now waits at the unique index.
    assert _eventually(lambda: _waiting_backends() == 1), "the second never reached the unique index"
    first_may_commit.set()
    a.join(WAIT)
    b.join(WAIT)

    error = outcome["second"]
    assert isinstance(error, PortalError), error
    assert error.message == f"Ein Postfach mit der Adresse {ADDRESS} gibt es schon."
    assert Mailbox.objects.filter(address=ADDRESS).count() == 1
    assert not KimAccount.objects.exists() and not Membership.objects.exists()
