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

from kimportal.prepared import PreparedDelete, PreparedQuery, PreparedUpdate
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


def _beat_update(channel_name: str, now: datetime, writing: bool) -> tuple[QuerySet[Presence], dict[str, Any]]:
    # A beat that changes nothing but the time: the writing state stays as it was.
    return Presence.objects.filter(channel_name=channel_name, writing=writing), {"last_seen": now}


# Every open page beats: compiled once per writing state (kimportal.prepared binds no booleans).
_BEAT = {
    writing: PreparedUpdate(
        lambda channel_name, now, writing=writing: _beat_update(channel_name, now, writing), returning=("message_id",)
    )
    for writing in (False, True)
}


def presence_beat(*, channel_name: str, writing: bool, now: datetime | None = None) -> int | None:
    """Heartbeat from an open page: its row renewed, the message's id returned. Re-creates nothing: None when the
    page's row is gone (it must reconnect).

    Most beats change only the time: one UPDATE … RETURNING. A changed writing state is read, written and announced.
    No transaction: the page's row is written by its own socket only, and the announcement goes once it is written.
    """
    now = now or timezone.now()
    if PreparedUpdate.supported():
        same = _BEAT[writing].rows(channel_name, now)
        if same:
            return int(same[0][0])
    found = (
        Presence.objects.filter(channel_name=channel_name)
        .values_list("pk", "writing", "message_id", "message__mailbox_id")
        .first()
    )
    if found is None:
        return None
    pk, was_writing, message_id, mailbox_id = found
    Presence.objects.filter(pk=pk).update(last_seen=now, writing=writing)
    if was_writing != writing:
        events.broadcast_presence(mailbox_id=mailbox_id, message_id=message_id)
    return int(message_id)


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


@functools.cache
def _leave_sql(alias: str) -> str:
    """DELETE … RETURNING the removed row and whether another page of its user on its message is fresh (PostgreSQL)."""
    quote = connections[alias].ops.quote_name
    table = quote(Presence._meta.db_table)
    columns = {field.name: str(field.column) for field in Presence._meta.concrete_fields}
    column = {name: quote(columns[name]) for name in _LEAVE_COLUMNS}
    message, user, channel = column["message"], column["user"], column["channel_name"]
    # Only quoted names of the model's own table and columns are formatted in; the values are parameters.
    same = f"other.{message} = {table}.{message} AND other.{user} = {table}.{user}"
    fresh = f"other.{channel} <> %s AND other.{column['last_seen']} >= %s"
    others = f"SELECT 1 FROM {table} AS other WHERE {same} AND {fresh}"  # noqa: S608
    returning = f"{message}, {user}, {column['page_token']}, EXISTS ({others})"
    return f"DELETE FROM {table} WHERE {channel} = %s RETURNING {returning}"  # noqa: S608


_LEAVE_COLUMNS = ("message", "user", "page_token", "channel_name", "last_seen")


@transaction.atomic(savepoint=False)
def presence_leave(*, channel_name: str, others: bool = True) -> Left | None:
    """Remove the page's row; None when it was gone already. The caller announces the change (a leave that
    also releases the lock sends one message change, which redraws presence too, instead of two events).

    `others=False`: the caller does not need to know whether the user has the message open elsewhere (it holds
    no lock to release); still_open is then False without asking."""
    # The TTL is applied here, not in SQL: the query keeps one shape (a user's few pages of one message).
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS)
    connection = connections["default"]
    if others and connection.vendor == "postgresql":
        # One statement removes the row and says whether the user has the message open on another page still: it
        # runs after the caller locked the message row, so it sees the leaves that went before (its snapshot is
        # its own, and its own row is left out by name).
        last_seen = Presence._meta.get_field("last_seen").get_db_prep_value(cutoff, connection)
        with connection.cursor() as cursor:
            cursor.execute(_leave_sql("default"), [channel_name, channel_name, last_seen])
            removed = cursor.fetchall()
        if not removed:
            return None
        message_id, user_id, page_token, still_open = removed[0]
        return Left(message_id, user_id, page_token, bool(still_open))
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
    still_open = any(last_seen >= cutoff for (last_seen,) in _PAGES.rows(message_id, user_id))
    return Left(message_id, user_id, page_token, still_open)


def presence_purge_stale() -> int:
    """Housekeeping only: stale rows are already invisible after the TTL."""
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS * 4)
    deleted, _ = Presence.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
