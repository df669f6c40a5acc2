"""Reading patient data: every view of a message, its HTML, source or attachment is audited."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connections, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql.subqueries import InsertQuery
from django.utils import timezone

from audit.services import events_together
from mailbox.models import Message, MessageRead
from mailbox.services.audit import audit_record
from mailbox.services.claims import message_claim

_READ_FIELDS = (MessageRead.message.field, MessageRead.user.field, MessageRead.read_at.field)


@functools.cache
def _read_insert(alias: str, vendor: str) -> str:
    """The INSERT of a read that leaves an earlier one alone, as bulk_create(ignore_conflicts=True) writes it:
    compiled once per database (kimportal.prepared does the same for reads) — compiling it was a quarter of a
    millisecond on every page view."""
    query = InsertQuery(MessageRead, on_conflict=OnConflict.IGNORE)
    query.insert_values(_READ_FIELDS, [MessageRead(message_id=0, user_id=0, read_at=timezone.now())])
    [(sql, _params)] = query.get_compiler(using=alias).as_sql()
    return str(sql)


@functools.cache
def _read_insert_readers(alias: str, vendor: str) -> str:
    """_read_insert() and the message's readers in one statement (PostgreSQL): the readers as the statement
    began (its snapshot does not see its own insert) and the row it added, if it added one; oldest first."""
    qn = connections[alias].ops.quote_name
    reads, users = qn(MessageRead._meta.db_table), qn(get_user_model()._meta.db_table)
    names = "u.first_name, u.last_name, u.username"
    # Only the models' identifiers go into the text; the values are parameters.
    added = f"{_read_insert(alias, vendor)} RETURNING user_id, read_at"
    earlier = f"SELECT {names}, r.read_at FROM {reads} r JOIN {users} u ON u.id = r.user_id WHERE r.message_id = %s"  # noqa: S608
    new = f"SELECT {names}, a.read_at FROM added a JOIN {users} u ON u.id = a.user_id"  # noqa: S608
    return f"WITH added AS ({added}) {earlier} UNION ALL {new} ORDER BY 4"


Reader = tuple[str, str, str, datetime]  # first name, last name, username, read at


def _read_record(*, user: Any, message: Message, using: str = "default") -> list[Reader] | None:
    """Mark the message read by the user (the first read's time stays); on PostgreSQL the same statement returns
    the message's readers, this user included, which the page would otherwise read next (None elsewhere, and when
    they came without this user)."""
    connection = connections[using]
    read_at = MessageRead.read_at.field.get_db_prep_save(timezone.now(), connection)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(_read_insert(using, connection.vendor), [message.pk, user.pk, read_at])
            return None
        cursor.execute(_read_insert_readers(using, connection.vendor), [message.pk, user.pk, read_at, message.pk])
        readers: list[Reader] = cursor.fetchall()
    # Without this user: another tab's read of theirs committed while this statement waited for its row (the
    # statement's snapshot is older). The page then reads the readers itself.
    username = user.get_username()
    return readers if any(reader[2] == username for reader in readers) else None


# The read-lock as a claim leaves it on the row.
_LOCK_FIELDS = ("claimed_by_id", "claimed_at", "claim_expires_at", "claim_renewed_at", "claim_page", "first_claimed_at")


@transaction.atomic
def message_open(*, user: Any, message: Message, claim_page: str | None = None) -> list[Reader] | None:
    """Opening a message is access to patient data: audited, and it marks the message read for this user.

    With `claim_page` the user opens it to work on it: the read-lock is taken in the same transaction
    (one commit per page view), and `message` then shows the lock as the claim left it (holder, lease), so the
    page need not read the row again.

    Returns the message's readers with this user (first name, last name, username, read at; oldest first) when
    the read's statement gave them (PostgreSQL), for the page to show; None when it did not.
    """
    # The view's and the claim's events with one INSERT at the end of the block.
    with events_together():
        # One INSERT … ON CONFLICT DO NOTHING: the first read's time stays; no SELECT, no savepoint.
        readers = _read_record(user=user, message=message)
        audit_record(actor=user, action="message.viewed", message=message)
        if claim_page is not None:
            fresh = message_claim(user=user, message=message, page=claim_page).message
            for name in _LOCK_FIELDS:
                setattr(message, name, getattr(fresh, name))
            Message.claimed_by.field.set_cached_value(message, fresh.claimed_by)
    return readers


def message_access_record(*, user: Any, message: Message, action: str, **details: Any) -> None:
    audit_record(actor=user, action=action, message=message, **details)
