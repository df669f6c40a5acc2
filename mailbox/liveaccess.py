"""Access checks for live sockets, batched per process.

Before a socket sends anything it must know that its session is still valid, its account active and its
user still a member of the mailbox. One query per socket per event made a busy mailbox cost hundreds of
queries per second (200 open inboxes × every lock and presence change). Sockets of one process that ask
in the same moment — they all received the same event — share one round of three queries.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db.models import Q, QuerySet
from django.utils import timezone

from kimportal.prepared import PreparedQuery
from mailbox.models import Membership


@dataclass(frozen=True)
class Ask:
    user_id: int
    session_key: str | None  # None: a socket without a session (tests, internal tools) checks the account only
    mailbox_id: int | None


@dataclass(frozen=True)
class Answer:
    valid: bool
    role: str | None


def _active_query(user_ids: list[int]) -> QuerySet[Any, tuple[int]]:
    return get_user_model().objects.filter(pk__in=user_ids, is_active=True).values_list("pk")


def _sessions_query(keys: list[str]) -> QuerySet[Session, tuple[str, datetime]]:
    # The expiry is compared here, in Python: the query keeps one shape (kimportal.prepared binds ids and keys).
    return Session.objects.filter(session_key__in=keys).values_list("session_key", "expire_date")


def _groups_query(user_ids: list[int]) -> QuerySet[Any, tuple[int, int]]:
    return get_user_model().groups.through.objects.filter(user_id__in=user_ids).values_list("user_id", "group_id")


def _memberships_query(
    user_ids: list[int], group_ids: list[int], mailbox_ids: list[int]
) -> QuerySet[Membership, tuple[int, int | None, int | None, str]]:
    return Membership.objects.filter(
        Q(user_id__in=user_ids) | Q(group_id__in=group_ids), mailbox_id__in=mailbox_ids, mailbox__is_active=True
    ).values_list("mailbox_id", "user_id", "group_id", "role")


# Asked for every live event by every busy process: compiled once (kimportal.prepared), not per batch.
_ACTIVE = PreparedQuery(_active_query)
_SESSIONS = PreparedQuery(_sessions_query)
_GROUPS = PreparedQuery(_groups_query)
_MEMBERSHIPS = PreparedQuery(_memberships_query)


def answer_all(asks: list[Ask]) -> dict[Ask, Answer]:
    """Three queries for any number of sockets: active users, live sessions, memberships (and the users' groups)."""
    user_ids = sorted({a.user_id for a in asks})
    active = {pk for (pk,) in _ACTIVE.rows(user_ids)}
    keys = sorted({a.session_key for a in asks if a.session_key is not None})
    now = timezone.now()
    live = {key for key, expires in _SESSIONS.rows(keys) if expires > now} if keys else set()
    mailbox_ids = sorted({a.mailbox_id for a in asks if a.mailbox_id is not None})
    roles: dict[tuple[int, int], list[str]] = defaultdict(list)
    if mailbox_ids:
        groups_of: dict[int, set[int]] = defaultdict(set)
        for user_id, group_id in _GROUPS.rows(user_ids):
            groups_of[group_id].add(user_id)
        for mailbox_id, user_id, group_id, member_role in _MEMBERSHIPS.rows(user_ids, sorted(groups_of), mailbox_ids):
            for member in {user_id} if user_id else groups_of.get(group_id, set()):
                roles[(member, mailbox_id)].append(member_role)
    answers = {}
    for ask in asks:
        valid = ask.user_id in active and (ask.session_key is None or ask.session_key in live)
        role: str | None = None
        if valid and ask.mailbox_id is not None:
            found = roles.get((ask.user_id, ask.mailbox_id), [])
            role = max(found, key=lambda r: Membership.RANK[r], default=None)
        answers[ask] = Answer(valid, role)
    return answers


# How a batcher runs the sync query function off the event loop (the consumers' database thread pool).
RunSync = Callable[[Callable[[list["Ask"]], dict["Ask", "Answer"]]], Callable[..., Awaitable[Any]]]


class AccessBatcher:
    """Collects the checks asked in one turn of the event loop and answers them with one round of queries."""

    def __init__(self, run_sync: RunSync) -> None:
        self._run_sync = run_sync
        self._waiting: dict[Ask, list[asyncio.Future[Answer]]] = {}
        self._scheduled = False

    async def check(self, ask: Ask) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.setdefault(ask, []).append(future)
        if not self._scheduled:
            self._scheduled = True
            # Let every socket that received the same event ask first, then answer them together.
            loop.call_soon(lambda: asyncio.ensure_future(self._answer()))
        return await future

    async def _answer(self) -> None:
        waiting, self._waiting, self._scheduled = self._waiting, {}, False
        try:
            answers = await self._run_sync(answer_all)(list(waiting))
        except Exception as exc:  # the database is gone: every asker closes rather than sends
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for ask, futures in waiting.items():
            for future in futures:
                if not future.done():
                    future.set_result(answers[ask])


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AccessBatcher] = weakref.WeakKeyDictionary()


def batcher(
    run_sync: Callable[[Callable[[list[Ask]], dict[Ask, Answer]]], Callable[..., Awaitable[Any]]],
) -> AccessBatcher:
    """The batcher of the running event loop (one per server process; tests run a loop per test)."""
    loop = asyncio.get_running_loop()
    found = _batchers.get(loop)
    if found is None:
        found = _batchers[loop] = AccessBatcher(run_sync)
    return found
