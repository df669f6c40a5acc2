"""Who has which message open, and whether they are writing. One row per open page (socket)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.models import QuerySet
from django.db.models.constants import OnConflict
from django.db.models.sql.subqueries import InsertQuery
from django.utils import timezone

from kimportal.prepared import PreparedDelete, PreparedQuery
from mailbox import events
from mailbox.models import Message, Presence
from mailbox.selectors.presence import PRESENCE_TTL_SECONDS

_JOIN_FIELDS = ("channel_name", "user", "message", "page_token", "writing", "last_seen")


@functools.cache
def _join_upsert(alias: str, vendor: str) -> str:
    """The upsert of a page's row on its unique channel name, as bulk_create(update_conflicts=True) writes it:
    compiled once per database (every message page's socket joins; compiling it was most of a join's CPU)."""
    fields = [field for field in Presence._meta.concrete_fields if field.name in _JOIN_FIELDS]
    fields.sort(key=lambda field: _JOIN_FIELDS.index(field.name))
    query = InsertQuery(
        Presence,
        on_conflict=OnConflict.UPDATE,
        update_fields=fields[1:],
        unique_fields=[fields[0]],
    )
    stand_in = Presence(
        channel_name="", user_id=0, message_id=0, page_token="", writing=False, last_seen=timezone.now()
    )
    query.insert_values(fields, [stand_in])
    [(sql, _params)] = query.get_compiler(using=alias).as_sql()
    return str(sql)


def presence_join(
    *, user: Any, message: Message, channel_name: str, page_token: str = "", using: str = "default"
) -> None:
    # One upsert on the unique channel name (a reconnect may reuse it), instead of a locking read and a write; one
    # statement needs no transaction of its own (the event goes when it commits, or with the caller's).
    connection = connections[using]
    last_seen = Presence._meta.get_field("last_seen").get_db_prep_save(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(
            _join_upsert(using, connection.vendor),
            [channel_name, user.pk, message.pk, page_token, False, last_seen],
        )
    events.broadcast_presence(mailbox_id=message.mailbox_id, message_id=message.pk, origin=channel_name)


@transaction.atomic
def presence_beat(*, channel_name: str, writing: bool, now=None) -> Presence | None:
    """Heartbeat from an open page. Re-creates nothing: a page whose row is gone must reconnect."""
    row = Presence.objects.select_related("message").filter(channel_name=channel_name).first()
    if row is None:
        return None
    changed = row.writing != writing
    Presence.objects.filter(pk=row.pk).update(last_seen=now or timezone.now(), writing=writing)
    if changed:
        events.broadcast_presence(mailbox_id=row.message.mailbox_id, message_id=row.message_id)
    return row


@dataclass(frozen=True)
class Left:
    """A page's presence row as it was removed, and whether its user still has the message open elsewhere."""

    message_id: int
    user_id: int
    page_token: str
    still_open: bool


def _channel_query(channel_name: str) -> QuerySet[Presence, tuple[int, int, int, str]]:
    return Presence.objects.filter(channel_name=channel_name).values_list("pk", "message_id", "user_id", "page_token")


def _gone_query(channel_name: str) -> QuerySet[Presence]:
    return Presence.objects.filter(channel_name=channel_name)


def _pages_query(message_id: int, user_id: int) -> QuerySet[Presence, tuple[datetime]]:
    return Presence.objects.filter(message_id=message_id, user_id=user_id).values_list("last_seen")


# Every page that closes asks these: compiled once (kimportal.prepared), not per leave. Nothing refers to a presence
# row and no receiver watches its deletion: one DELETE … RETURNING removes it and says what it was.
_CHANNEL = PreparedQuery(_channel_query)
_GONE = PreparedDelete(_gone_query, returning=("message_id", "user_id", "page_token"))
_PAGES = PreparedQuery(_pages_query)


@transaction.atomic(savepoint=False)
def presence_leave(*, channel_name: str, others: bool = True) -> Left | None:
    """Remove the page's row; None when it was gone already. The caller announces the change (a leave that
    also releases the lock sends one message change, which redraws presence too, instead of two events).

    `others=False`: the caller does not need to know whether the user has the message open elsewhere (it holds
    no lock to release); still_open is then False without asking."""
    if PreparedDelete.supported():
        gone = _GONE.rows(channel_name)
        if not gone:
            return None
        message_id, user_id, page_token = gone[0]
    else:
        found = _CHANNEL.rows(channel_name)
        if not found:
            return None
        pk, message_id, user_id, page_token = found[0]
        Presence.objects.filter(pk=pk).delete()
    if not others:
        return Left(message_id, user_id, page_token, False)
    # The TTL is applied here, not in SQL: the query keeps one shape (a user's few pages of one message).
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS)
    still_open = any(last_seen >= cutoff for (last_seen,) in _PAGES.rows(message_id, user_id))
    return Left(message_id, user_id, page_token, still_open)


def presence_purge_stale() -> int:
    """Housekeeping only: stale rows are already invisible after the TTL."""
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS * 4)
    deleted, _ = Presence.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
