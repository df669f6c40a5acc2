"""Appending to the trail: the one way an event gets in.

On PostgreSQL the row goes in unsealed and a deferred trigger (migration 0003) gives it its place in the chain
when the writer's transaction commits: it locks the one-row chain head, so appends take their places one after
another and the chain cannot fork; and since that lock is the last one the transaction takes and is held only
for the commit, it can neither deadlock with the message row locks services take before or after recording an
event nor make every page view in the house wait for another's whole transaction. A rolled-back action leaves
no event and no gap. Elsewhere (the embedded SQLite) transactions take the write lock at BEGIN, so writers are
already one at a time and the writer seals the row itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import connection, connections, transaction
from django.db.models.sql.subqueries import InsertQuery
from django.utils import timezone

from audit.chain import content_hash, details_normalized, link_hash
from audit.models import AuditEvent, ChainHead

SUBJECT_SNAPSHOT = 500  # characters of the subject kept: enough to find a patient reference, no whole texts

_FIELDS = tuple(f for f in AuditEvent._meta.concrete_fields if not f.primary_key)


@functools.cache
def _insert_sql(alias: str) -> str:
    """The INSERT … RETURNING id that AuditEvent.objects.create() runs on PostgreSQL, compiled once per database:
    every page view records an event or two, and compiling the INSERT cost more than sending it."""
    query = InsertQuery(AuditEvent)
    query.insert_values(_FIELDS, [AuditEvent()])
    compiler = query.get_compiler(using=alias)
    compiler.returning_fields = [AuditEvent._meta.pk]
    [(sql, _params)] = compiler.as_sql()
    return str(sql)


def _insert(event: AuditEvent, alias: str = "default") -> AuditEvent:
    """As event.save() inserts it (AuditEvent has no signal receivers; asserted by tests/audit), by the compiled
    statement: the values prepared for the database as the ORM prepares them."""
    db = connections[alias]
    params = [field.get_db_prep_save(field.pre_save(event, True), db) for field in _FIELDS]
    with db.cursor() as cursor:
        cursor.execute(_insert_sql(alias), params)
        (event.pk,) = cursor.fetchone()
    event._state.adding = False
    event._state.db = alias
    return event


@functools.cache
def _insert_many_sql(alias: str, count: int) -> str:
    """The compiled INSERT with `count` rows of values, RETURNING their ids in the order given."""
    head, values = _insert_sql(alias).split(" VALUES ", 1)
    row, returning = values.split(" RETURNING ", 1)
    return f"{head} VALUES {', '.join([row] * count)} RETURNING {returning}"


def _insert_many(events: list[AuditEvent], alias: str = "default") -> None:
    """Several events with one statement, as _insert() would insert them one after another: a multi-row INSERT
    takes its ids (and so its places in the chain at commit) in the order of its rows."""
    db = connections[alias]
    params = [field.get_db_prep_save(field.pre_save(event, True), db) for event in events for field in _FIELDS]
    with db.cursor() as cursor:
        cursor.execute(_insert_many_sql(alias, len(events)), params)
        ids = [pk for (pk,) in cursor.fetchall()]
    for event, pk in zip(events, sorted(ids), strict=True):
        event.pk = pk
        event._state.adding = False
        event._state.db = alias


_PENDING: ContextVar[list[AuditEvent] | None] = ContextVar("audit_pending", default=None)


@contextmanager
def events_together() -> Iterator[None]:
    """The events recorded inside the block go in with one INSERT when it ends (PostgreSQL): opening a message
    records two, and each statement was a round trip. Only inside the caller's transaction, so that an error in
    the block (which records nothing) rolls it all back; until the block ends, the events have no id and reads of
    the trail do not see them. Elsewhere, and when nested, events go in as they are recorded."""
    if connection.vendor != "postgresql" or _PENDING.get() is not None:
        yield
        return
    if not connection.in_atomic_block:
        raise transaction.TransactionManagementError("events_together() needs the caller's transaction.")
    pending: list[AuditEvent] = []
    token = _PENDING.set(pending)
    try:
        yield
    finally:
        _PENDING.reset(token)
    if len(pending) == 1:
        _insert(pending[0])
    elif pending:
        _insert_many(pending)


# No savepoint when nested (every audited action records inside its own transaction): a failed append fails
# that action anyway, and a savepoint cost two round trips per event.
@transaction.atomic(savepoint=False)
def event_record(
    *,
    action: str,
    actor: Any = None,
    mailbox_id: int | None = None,
    mailbox_address: str = "",
    message_id: int | None = None,
    message_subject: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. `actor` is a user or None (the system, or nobody signed in: a failed sign-in keeps the
    name that was tried in `details`)."""
    signed_in = getattr(actor, "is_authenticated", False)
    fields: dict[str, Any] = {
        "at": timezone.now(),
        "action": action,
        "actor_id": actor.pk if signed_in else None,
        "actor_username": actor.get_username() if signed_in else "",
        "mailbox_id": mailbox_id,
        "mailbox_address": mailbox_address,
        "message_id": message_id,
        "message_subject": message_subject[:SUBJECT_SNAPSHOT],
        "details": details_normalized(details or {}),
    }
    digest = content_hash(**fields)
    if connection.vendor == "postgresql":
        event = AuditEvent(content_hash=digest, **fields)
        pending = _PENDING.get()
        if pending is None:
            return _insert(event)
        pending.append(event)
        return event
    head, _ = ChainHead.objects.select_for_update().get_or_create(pk=1)
    seq = head.seq + 1
    link = link_hash(head.hash, seq, digest)
    event = AuditEvent.objects.create(seq=seq, content_hash=digest, prev_hash=head.hash, hash=link, **fields)
    ChainHead.objects.filter(pk=1).update(seq=seq, hash=link)
    return event
