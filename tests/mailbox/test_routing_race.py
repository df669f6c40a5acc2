"""Routing under concurrent ingest on real PostgreSQL: turns are never handed out twice, a message is routed once.

Worker threads with their own connections store mail into one mailbox at the same time, as fetch workers
do. A round-robin rule keeps its cursor in its row, read with SELECT … FOR UPDATE in the storing
transaction: without that lock two workers read the same last turn and give the next message to the
same person, and the shares below come out uneven.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from mailbox.models import AssignmentPeriod, Membership, Message, RoutingRule
from mailbox.services.ingest import message_ingest, message_stage, messages_store
from mailbox.storage import BlobBatch
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent routing is specified for PostgreSQL"),
]

WORKERS = 8
BATCHES = 9  # per worker
PER_BATCH = 2  # not a multiple of the team: a batch alone does not even the shares out
WAIT = 60


def _run(workers: int, target) -> list[BaseException]:
    """Run target(n, barrier) in `workers` threads; the barrier lets them meet before each store."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(workers)

    def run(n: int) -> None:
        try:
            target(n, barrier)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()
        finally:
            # Each thread opened its own connection; leave none behind for the test database teardown.
            connection.close()

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    return errors


@pytest.fixture
def team(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    box = MailboxFactory()
    people = [UserFactory(username=f"p{i}") for i in range(3)]
    for person in people:
        MembershipFactory(mailbox=box, user=person, role=Membership.Role.PROCESSOR)
    RoutingRule.objects.create(
        mailbox=box, position=1, name="reihum", subject_words="Befund", assign=RoutingRule.Assign.ROUND_ROBIN
    )
    return box, people


def test_concurrent_batches_hand_out_every_turn_once(team):
    box, people = team

    def worker(n: int, barrier: threading.Barrier) -> None:
        for b in range(BATCHES):
            with BlobBatch() as blobs:
                staged = [
                    message_stage(uidl=f"w{n}-{b}-{i}", raw=simple_mail(), pop3_size=None, blobs=blobs)
                    for i in range(PER_BATCH)
                ]
                blobs.wait()
                # Parsed and on disk: every worker opens its storing transaction in the same instant.
                barrier.wait(timeout=WAIT)
                assert all(messages_store(mailbox=box, staged=staged, blobs=blobs))

    assert _run(WORKERS, worker) == []

    total = WORKERS * BATCHES * PER_BATCH
    assert Message.objects.filter(mailbox=box).count() == total
    shares = {p.pk: Message.objects.filter(assignee=p).count() for p in people}
    assert sorted(shares.values()) == [total // 3] * 3, shares
    # In the order the turns were taken (the audit rows are written under the lock), they cycle strictly.
    order = [
        pk
        for pk in AuditEvent.objects.filter(action="routing.applied")
        .order_by("pk")
        .values_list("details__assignee", flat=True)
    ]
    ids = sorted(shares)
    assert order == [ids[i % 3] for i in range(total)]
    assert AssignmentPeriod.objects.filter(ended_at__isnull=True).count() == total
    assert RoutingRule.objects.get().last_assignee_id == order[-1]


def test_one_message_stored_by_many_workers_is_routed_once(team):
    box, people = team
    raw = simple_mail()

    def worker(n: int, barrier: threading.Barrier) -> None:
        barrier.wait(timeout=WAIT)
        message_ingest(mailbox=box, uidl="same", raw=raw)

    assert _run(WORKERS, worker) == []

    message = Message.objects.get(mailbox=box, uidl="same")
    assert message.assignee_id == people[0].pk
    assert list(AssignmentPeriod.objects.filter(message=message).values_list("user_id", flat=True)) == [people[0].pk]
    assert AuditEvent.objects.filter(action="routing.applied", message_id=message.pk).count() == 1
    # The losers' turns were rolled back with their refused rows: the next message goes to the second person.
    assert RoutingRule.objects.get().last_assignee_id == people[0].pk
    assert message_ingest(mailbox=box, uidl="next", raw=simple_mail()).assignee_id == people[1].pk
