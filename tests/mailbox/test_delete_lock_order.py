"""Two scripts delete owners in bulk at the same moment (`User.objects.filter(...).delete()`, the same for groups),
over the same two mailboxes: both finish, one after the other, instead of PostgreSQL aborting one as a deadlock.

Django sends pre_delete one instance after the other; each locks the mailboxes it owns. The first delete owns the
second mailbox through its first person and the first mailbox through its second; the other delete the other way
round. Real PostgreSQL, one connection per thread: the first delete holds after its first person's pre_delete, the
second starts and is either finished or waiting for a lock (the test watches pg_stat_activity instead of sleeping),
then the first goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.db.models.signals import pre_delete
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from mailbox.models import Mailbox, Membership
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30  # seconds before the test counts as hung
User = get_user_model()


def _others_waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def _owner_person(mailbox: Mailbox, name: str) -> Any:
    person = UserFactory(username=name)
    MembershipFactory(mailbox=mailbox, user=person, role=Membership.Role.OWNER)
    return person


def _owner_group(mailbox: Mailbox, name: str) -> Group:
    group = Group.objects.create(name=name)
    group.user_set.add(UserFactory(username=f"in-{name}"))
    MembershipFactory(mailbox=mailbox, group=group, user=None, role=Membership.Role.OWNER)
    return group


@pytest.mark.parametrize(
    ("model", "owner", "action"),
    [(User, _owner_person, "user.deleted"), (Group, _owner_group, "group.deleted")],
    ids=["people", "groups"],
)
def test_two_bulk_deletes_over_the_same_mailboxes_in_opposite_order_both_finish(
    settings, model: Any, owner: Callable[[Mailbox, str], Any], action: str
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    first_box, second_box = MailboxFactory(display_name="Kardiologie"), MailboxFactory(display_name="Radiologie")
    assert first_box.pk < second_box.pk
    # Created in this order, so pre_delete (in pk order) meets them in this order within each delete.
    one_a, one_b = owner(second_box, "eins-a"), owner(first_box, "eins-b")
    two_a, two_b = owner(first_box, "zwei-a"), owner(second_box, "zwei-b")

    holding, release = threading.Event(), threading.Event()
    outcomes: dict[str, BaseException | None] = {}

    def hold(sender: Any, instance: Any, **kwargs: Any) -> None:
        # After the portal's own receiver has read (and locked) for the first delete's first instance.
        if threading.current_thread().name == "first" and instance.pk == one_a.pk:
            holding.set()
            release.wait(WAIT)

    def delete(pks: list[int], name: str) -> None:
        try:
            model.objects.filter(pk__in=pks).delete()
            outcomes[name] = None
        except BaseException as exc:
            outcomes[name] = exc
        finally:
            holding.set()
            connection.close()

    pre_delete.connect(hold, sender=model, weak=False, dispatch_uid="test-hold-delete")
    try:
        first = threading.Thread(target=delete, args=([one_a.pk, one_b.pk], "first"), name="first", daemon=True)
        first.start()
        assert holding.wait(WAIT)
        second = threading.Thread(target=delete, args=([two_a.pk, two_b.pk], "second"), name="second", daemon=True)
        second.start()
        deadline = time.monotonic() + WAIT
        while second.is_alive() and not _others_waiting_for_a_lock():
            assert time.monotonic() < deadline, "the second delete neither finished nor waited"
            second.join(0.01)
        release.set()
        first.join(WAIT)
        second.join(WAIT)
    finally:
        release.set()
        pre_delete.disconnect(sender=model, dispatch_uid="test-hold-delete")

    assert not first.is_alive() and not second.is_alive()
    assert outcomes == {"first": None, "second": None}
    assert not model.objects.filter(pk__in=[one_a.pk, one_b.pk, two_a.pk, two_b.pk]).exists()
    assert AuditEvent.objects.filter(action=action).count() == 4


def _together_locks(queries: CaptureQueriesContext) -> list[str]:
    """The locks over the mailboxes a whole bulk delete owns: their ids chosen by a subquery over the memberships,
    where each instance's own lock names its mailboxes' ids."""
    return [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith('SELECT "mailbox_mailbox"."id"')
        and '"mailbox_membership"' in query["sql"]
        and query["sql"].endswith("FOR UPDATE")
    ]


@pytest.mark.parametrize(("model", "owner"), [(User, _owner_person), (Group, _owner_group)], ids=["people", "groups"])
def test_a_bulk_delete_locks_what_they_own_together_once(settings, model: Any, owner: Callable[[Mailbox, str], Any]):
    # Taken at the first instance's pre_delete and held to the end of the delete's transaction: asking again for
    # each further instance only repeated the query.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    boxes = [MailboxFactory(display_name=f"Station {i}") for i in range(3)]
    for i, box in enumerate(boxes):
        owner(box, f"eins-{i}")
    named = model.objects.filter(
        **({"name__startswith": "eins-"} if model is Group else {"username__startswith": "eins-"})
    )
    with CaptureQueriesContext(connection) as queries:
        named.delete()
    assert len(_together_locks(queries)) == 1
    assert not named.exists()
    # The same queryset deleted again is another delete (another transaction): it locks again.
    owner(boxes[0], "eins-neu")
    with CaptureQueriesContext(connection) as again:
        named.delete()
    assert len(_together_locks(again)) == 1
    assert not named.exists()
