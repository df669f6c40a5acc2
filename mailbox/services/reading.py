"""Reading patient data: every view of a message, its HTML, source or attachment is audited."""

from __future__ import annotations

import functools
from typing import Any

from django.db import connections, transaction
from django.db.models.constants import OnConflict
from django.db.models.sql.subqueries import InsertQuery
from django.utils import timezone

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


def _read_record(*, user: Any, message: Message, using: str = "default") -> None:
    connection = connections[using]
    read_at = MessageRead.read_at.field.get_db_prep_save(timezone.now(), connection)
    with connection.cursor() as cursor:
        cursor.execute(_read_insert(using, connection.vendor), [message.pk, user.pk, read_at])


# The read-lock as a claim leaves it on the row.
_LOCK_FIELDS = ("claimed_by_id", "claimed_at", "claim_expires_at", "claim_renewed_at", "claim_page", "first_claimed_at")


@transaction.atomic
def message_open(*, user: Any, message: Message, claim_page: str | None = None) -> None:
    """Opening a message is access to patient data: audited, and it marks the message read for this user.

    With `claim_page` the user opens it to work on it: the read-lock is taken in the same transaction
    (one commit per page view), and `message` then shows the lock as the claim left it (holder, lease), so the
    page need not read the row again.
    """
    # One INSERT … ON CONFLICT DO NOTHING: the first read's time stays; no SELECT, no savepoint.
    _read_record(user=user, message=message)
    audit_record(actor=user, action="message.viewed", message=message)
    if claim_page is not None:
        fresh = message_claim(user=user, message=message, page=claim_page).message
        for name in _LOCK_FIELDS:
            setattr(message, name, getattr(fresh, name))
        Message.claimed_by.field.set_cached_value(message, fresh.claimed_by)


def message_access_record(*, user: Any, message: Message, action: str, **details: Any) -> None:
    audit_record(actor=user, action=action, message=message, **details)
