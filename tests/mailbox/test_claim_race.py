"""Twenty colleagues claim the same message in the same instant, a thousand times: exactly one wins each time.

Real PostgreSQL, one connection per claimer thread. Twenty persistent workers loop over the rounds; two
barriers per round release them together and let the main thread reset the lease in between.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from mailbox.models import Membership, Message
from mailbox.services import claims
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the claim race is specified for PostgreSQL"),
]

CLAIMERS = 20
ROUNDS = 1_000
WAIT = 60  # seconds a barrier may wait before the test counts as hung


def test_exactly_one_of_twenty_concurrent_claimers_wins_every_round(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # The winner's live update goes out after its commit and cannot change who won; keep Redis out of the timing.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    box = MailboxFactory()
    claimers = [UserFactory(username=f"claimer{i}") for i in range(CLAIMERS)]
    for user in claimers:
        MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    earlier = UserFactory(username="earlier-holder")
    message = message_ingest(mailbox=box, uidl="race", raw=MAIL_WITH_PDF)

    winners: list[list[int]] = [[] for _ in range(ROUNDS)]
    record = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(CLAIMERS + 1)
    done = threading.Barrier(CLAIMERS + 1)

    def claimer(user) -> None:
        try:
            for round_no in range(ROUNDS):
                start.wait(timeout=WAIT)
                if claims.message_claim(user=user, message=message).won:
                    with record:
                        winners[round_no].append(user.pk)
                done.wait(timeout=WAIT)
        except threading.BrokenBarrierError:
            pass
        except BaseException as exc:
            errors.append(exc)
            start.abort()
            done.abort()
        finally:
            # Each thread opened its own connection; leave none behind for the test database teardown.
            connection.close()

    threads = [threading.Thread(target=claimer, args=(user,), daemon=True) for user in claimers]
    for thread in threads:
        thread.start()
    holders: list[int | None] = []
    began = time.perf_counter()
    try:
        for round_no in range(ROUNDS):
            if round_no % 2:
                # Odd rounds race for an expired lease, even rounds for a free message: both paths of the UPDATE.
                expired = timezone.now() - timedelta(seconds=1)
                reset = {
                    "claimed_by": earlier,
                    "claimed_at": expired - timedelta(minutes=10),
                    "claim_expires_at": expired,
                }
            else:
                reset = {"claimed_by": None, "claimed_at": None, "claim_expires_at": None}
            Message.objects.filter(pk=message.pk).update(**reset)
            start.wait(timeout=WAIT)
            done.wait(timeout=WAIT)
            holders.append(Message.objects.values_list("claimed_by_id", flat=True).get(pk=message.pk))
    except threading.BrokenBarrierError:
        pass
    finally:
        start.abort()
        done.abort()
        for thread in threads:
            thread.join(timeout=WAIT)
    duration = time.perf_counter() - began

    assert not errors, errors
    assert len(holders) == ROUNDS
    per_round = [len(w) for w in winners]
    assert per_round == [1] * ROUNDS, {i: w for i, w in enumerate(winners) if len(w) != 1}
    # The winner each thread saw is the holder the database kept.
    assert holders == [w[0] for w in winners]
    assert AuditEvent.objects.filter(action="message.claimed", message_id=message.pk).count() == ROUNDS
    print(
        f"\nclaim race: {ROUNDS} rounds x {CLAIMERS} concurrent claimers on PostgreSQL, "
        f"exactly one winner in every round ({sum(per_round)} wins), {duration:.1f} s"
    )


def test_two_pages_closing_at_once_release_the_lock_every_time(settings):
    """A user's two pages of one message close in the same instant: one of the two leaves must free the lock."""
    from mailbox.models import Presence

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    box = MailboxFactory()
    user = UserFactory(username="zwei-tabs")
    MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="two-tabs", raw=MAIL_WITH_PDF)
    rounds, kept = 30, []
    for round_no in range(rounds):
        claims.message_claim(user=user, message=message, page="")
        channels = [f"tab-a-{round_no}", f"tab-b-{round_no}"]
        for channel in channels:
            Presence.objects.create(message=message, user=user, channel_name=channel)
        start = threading.Barrier(2)

        def leave(channel: str, barrier: threading.Barrier = start) -> None:
            try:
                barrier.wait(timeout=WAIT)
                claims.message_leave(user=user, message_id=message.pk, channel_name=channel)
            finally:
                connection.close()

        threads = [threading.Thread(target=leave, args=(c,)) for c in channels]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=WAIT)
        if Message.objects.filter(pk=message.pk, claimed_by=user).exists():
            kept.append(round_no)
    assert kept == [], f"the lock outlived both pages in rounds {kept}"
