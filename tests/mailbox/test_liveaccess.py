"""Batched access checks for live sockets: the same answers as one check per socket, in three queries."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Group
from django.contrib.sessions.backends.db import SessionStore

from mailbox.liveaccess import Answer, Ask, answer_all, batcher
from mailbox.models import Membership
from mailbox.permissions import user_role
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    box, other = MailboxFactory(), MailboxFactory()
    ward = Group.objects.create(name="Station 3")
    direct = UserFactory(username="direkt")
    via_group = UserFactory(username="gruppe")
    via_group.groups.add(ward)
    both = UserFactory(username="beides")
    both.groups.add(ward)
    gone = UserFactory(username="deaktiviert", is_active=False)
    stranger = UserFactory(username="fremd")
    MembershipFactory(mailbox=box, user=direct, role=Membership.Role.READER)
    MembershipFactory(mailbox=box, group=ward, user=None, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=box, user=both, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=box, user=gone, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=other, user=stranger, role=Membership.Role.OWNER)
    return box, other, [direct, via_group, both, gone, stranger]


def test_answers_match_the_role_lookup_for_direct_group_inactive_and_strangers(world):
    box, other, users = world
    asks = [Ask(u.pk, None, m.pk) for u in users for m in (box, other)]
    answers = answer_all(asks)
    for ask in asks:
        user = next(u for u in users if u.pk == ask.user_id)
        expected_role = user_role(user, ask.mailbox_id)
        assert answers[ask] == Answer(valid=user.is_active, role=expected_role), (user.username, ask.mailbox_id)
    # The strongest of direct and group role wins, as in the permission module.
    both = users[2]
    assert answers[Ask(both.pk, None, box.pk)].role == Membership.Role.OWNER


def test_a_dead_session_makes_the_answer_invalid(world):
    box, _other, users = world
    live, dead = SessionStore(), SessionStore()
    live.create()
    dead.create()
    dead.delete()
    answers = answer_all([Ask(users[0].pk, live.session_key, box.pk), Ask(users[0].pk, dead.session_key, box.pk)])
    assert answers[Ask(users[0].pk, live.session_key, box.pk)].valid
    assert not answers[Ask(users[0].pk, dead.session_key, box.pk)].valid


def test_fifty_sockets_cost_the_same_few_queries_as_one(world, django_assert_max_num_queries):
    box, _other, users = world
    extra = [UserFactory(username=f"leser{i}") for i in range(47)]
    for user in extra:
        MembershipFactory(mailbox=box, user=user, role=Membership.Role.READER)
    asks = [Ask(u.pk, None, box.pk) for u in [*users[:3], *extra]]
    with django_assert_max_num_queries(4):
        answers = answer_all(asks)
    assert all(a.valid and a.role for a in answers.values())


@pytest.mark.django_db(transaction=True)
def test_asks_in_the_same_moment_share_one_round(world):
    box, _other, users = world
    rounds = []

    def counting(func):
        async def run(asks):
            rounds.append(len(asks))
            return await database_sync_to_async(func)(asks)

        return run

    async def ask_together():
        checks = [batcher(counting).check(Ask(u.pk, None, box.pk)) for u in users[:3]]
        return await asyncio.gather(*checks)

    answers = asyncio.run(ask_together())
    assert rounds == [3]
    assert [a.role for a in answers] == [Membership.Role.READER, Membership.Role.PROCESSOR, Membership.Role.OWNER]


def test_a_row_asked_for_by_many_threads_at_once_is_computed_once():
    import threading

    from mailbox.livecache import RenderMemo

    memo: RenderMemo[int] = RenderMemo(ttl=5)
    calls = []
    gate = threading.Event()

    def compute() -> int:
        calls.append(1)
        gate.wait(timeout=5)  # the first caller is still computing while the others ask
        return 42

    results = []
    threads = [threading.Thread(target=lambda: results.append(memo.get(("seq", 1), compute))) for _ in range(8)]
    for thread in threads:
        thread.start()
    while len(calls) < 1:
        gate.wait(timeout=0.01)
    gate.set()
    for thread in threads:
        thread.join(timeout=5)
    assert results == [42] * 8
    assert len(calls) == 1
