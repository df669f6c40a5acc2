"""Store fetched messages: immutable raw blobs first, then the parsed rows in one transaction.

One message (``message_ingest``) or a batch of a fetch round (``message_stage`` for each, then
``messages_store``): the batch's rows share one transaction and one live update; if the database
refuses any row of it, every message of the batch is stored on its own instead, so one bad row
costs no other message its place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DataError, IntegrityError, connections, router, transaction
from django.db.models import Model
from django.utils import timezone

from kimportal.texts import N_
from mailbox import events
from mailbox.models import Attachment, Mailbox, Message
from mailbox.parsing import ParsedMessage, SpilledPayload, parse_message, parse_message_file
from mailbox.services.dsn import acknowledgements_offer, reports_match
from mailbox.services.routing import routing_record, routing_route
from mailbox.storage import BlobBatch, BlobSpool, blob_put

log = logging.getLogger(__name__)

RowT = TypeVar("RowT", bound=Model)


@dataclass(frozen=True)
class StagedMessage:
    """A fetched message, parsed, whose blobs are named (and on their way to disk): ready for its row."""

    uidl: str
    size: int
    pop3_size: int | None
    raw_sha: str
    parsed: ParsedMessage
    attachment_shas: list[str]


def message_ingest(*, mailbox: Mailbox, uidl: str, raw: bytes, pop3_size: int | None = None) -> Message:
    """Idempotent on (mailbox, uidl): a second call for the same UIDL returns the stored message.

    The raw bytes are written before the row; a crash in between leaves an orphan blob, never a
    row without its bytes. Parsing never raises: a broken mail is stored and flagged.
    """
    existing = Message.objects.filter(mailbox=mailbox, uidl=uidl).first()
    if existing is not None:
        return existing
    raw_sha = blob_put(raw)
    parsed = parse_message(raw)
    attachment_shas = [blob_put(a.payload) for a in parsed.attachments if isinstance(a.payload, bytes)]
    staged = StagedMessage(uidl, len(raw), pop3_size, raw_sha, parsed, attachment_shas)
    message, created = _store_one(mailbox, staged)
    if created:
        events.broadcast_message_created(mailbox_id=mailbox.pk, message_id=message.pk)
    return message


def message_stage(*, uidl: str, raw: bytes | BlobSpool, pop3_size: int | None, blobs: BlobBatch) -> StagedMessage:
    """Parse a fetched message and hand its blobs to *blobs*; its row comes with messages_store().

    A spooled message that went to a file (a large mail) is parsed from that file: its raw bytes
    are renamed into the store, large part payloads are decoded straight into blobs of their own,
    and neither the mail nor its attachments are ever held in memory.
    """
    if isinstance(raw, BlobSpool):
        held = raw.held_bytes()
        if held is None:
            return _stage_spooled(uidl, raw, pop3_size, blobs)
        raw.discard()
        raw = held
    raw_sha = blobs.put(raw)
    parsed = parse_message(raw)
    attachment_shas = [_put_payload(blobs, a.payload) for a in parsed.attachments]
    return StagedMessage(uidl, len(raw), pop3_size, raw_sha, parsed, attachment_shas)


def _stage_spooled(uidl: str, spool: BlobSpool, pop3_size: int | None, blobs: BlobBatch) -> StagedMessage:
    # Opened before the spool is renamed into place (on a writer thread): the open file stays readable.
    with spool.open() as fh:
        raw_sha = blobs.put_spool(spool)
        parsed = parse_message_file(fh, spill=lambda: BlobSpool(memory_limit=0))
    attachment_shas = [_put_payload(blobs, a.payload) for a in parsed.attachments]
    return StagedMessage(uidl, spool.size, pop3_size, raw_sha, parsed, attachment_shas)


def _put_payload(blobs: BlobBatch, payload: bytes | SpilledPayload) -> str:
    if isinstance(payload, SpilledPayload):
        assert isinstance(payload.handle, BlobSpool)
        return blobs.put_spool(payload.handle)
    return blobs.put(payload)


def messages_store(*, mailbox: Mailbox, staged: list[StagedMessage], blobs: BlobBatch) -> list[Message | None]:
    """Commit the rows of staged messages; one entry per message: its committed row, or None if refused.

    Returns outside any transaction, so every row returned is committed (the fetch DELEs only
    those). A message the database refuses even as a raw-only row is None: it stays on the server.
    """
    if not staged:
        return []
    # Every blob on disk before any row names it: a committed row never points at lost bytes.
    blobs.wait()
    try:
        with transaction.atomic():
            rows = [_message_row(mailbox, s) for s in staged]
            # Routing rules decide in this transaction: a message is routed once, with its row.
            routed = routing_route(mailbox=mailbox, messages=rows)
            messages = rows_insert(rows)
            rows_insert(list(_attachment_rows(messages, staged)))
            routing_record(routed)
            _send_path_hooks(mailbox, messages)
            events.broadcast_messages_created(mailbox_id=mailbox.pk, message_ids=[m.pk for m in messages])
        return list(messages)
    except (IntegrityError, DataError):
        # Which row? The database does not say; the rows go in one by one, each with its own fallback.
        log.warning("storing a batch of %s messages for %s failed; storing them one by one", len(staged), mailbox.pk)
    stored: list[Message | None] = []
    created: list[int] = []
    for message in staged:
        try:
            row, is_new = _store_one(mailbox, message)
        except (IntegrityError, DataError):
            log.exception("storing %s/%s was refused; it stays on the server", mailbox.pk, message.uidl)
            stored.append(None)
            continue
        stored.append(row)
        if is_new:
            created.append(row.pk)
    events.broadcast_messages_created(mailbox_id=mailbox.pk, message_ids=created)
    return stored


def _store_one(mailbox: Mailbox, staged: StagedMessage) -> tuple[Message, bool]:
    """The row of one message whose blobs are on disk: (message, whether this call created it)."""
    try:
        with transaction.atomic():
            message = _message_row(mailbox, staged)
            routed = routing_route(mailbox=mailbox, messages=[message])
            message.save(force_insert=True)
            Attachment.objects.bulk_create(_attachment_rows([message], [staged]))
            routing_record(routed)
            _send_path_hooks(mailbox, [message])
            return message, True
    except IntegrityError:
        # Another worker stored the same UIDL between our check and insert.
        existing = Message.objects.filter(mailbox=mailbox, uidl=staged.uidl).first()
        if existing is not None:
            return existing, False
        raise
    except DataError:
        # The database refused some parsed value: keep the raw message, flagged, rather than lose it.
        log.exception("storing parsed fields of %s/%s failed; storing raw only", mailbox.pk, staged.uidl)
        with transaction.atomic():
            message = Message.objects.create(
                mailbox=mailbox,
                uidl=staged.uidl,
                pop3_size=staged.pop3_size,
                raw_sha256=staged.raw_sha,
                size=staged.size,
                subject="",
                is_malformed=True,
                parse_problems=[
                    N_("Die Nachricht konnte nicht zerlegt gespeichert werden; nur der Rohtext liegt vor.").stored
                ],
                received_at=timezone.now(),
            )
            return message, True


def _send_path_hooks(mailbox: Mailbox, messages: list[Message]) -> None:
    # In the rows' transaction: a DSN or CM error mail and its effect on the sent message commit together.
    reports_match(mailbox=mailbox, messages=messages)
    acknowledgements_offer(mailbox=mailbox, messages=messages)


def _message_row(mailbox: Mailbox, staged: StagedMessage) -> Message:
    c = _nul_free
    parsed = staged.parsed
    return Message(
        mailbox=mailbox,
        uidl=staged.uidl,
        pop3_size=staged.pop3_size,
        raw_sha256=staged.raw_sha,
        size=staged.size,
        from_address=c(parsed.from_address[:320]),
        from_name=c(parsed.from_name[:300]),
        to=[c(v) for v in parsed.to],
        cc=[c(v) for v in parsed.cc],
        subject=c(parsed.subject),
        date=parsed.date,
        message_id=c(parsed.message_id[:998]),
        in_reply_to=c(parsed.in_reply_to[:998]),
        references=c(parsed.references),
        dienstkennung=c(parsed.dienstkennung[:200]),
        decryption_results=[c(v) for v in parsed.decryption_results],
        integrity_results=[c(v) for v in parsed.integrity_results],
        kim_error_codes=[c(v) for v in parsed.kim_error_codes],
        text_body=c(parsed.text_body),
        html_body=c(parsed.html_body),
        is_malformed=parsed.is_malformed,
        attachment_count=min(sum(1 for a in parsed.attachments if not a.is_inline), Message.ATTACHMENT_COUNT_MAX),
        parse_problems=[_nul_free_stored(problem.stored) for problem in parsed.problems],
    )


def _attachment_rows(messages: list[Message], staged: list[StagedMessage]) -> Iterator[Attachment]:
    c = _nul_free
    for message, one in zip(messages, staged, strict=True):
        for a, sha in zip(one.parsed.attachments, one.attachment_shas, strict=True):
            yield Attachment(
                message=message,
                position=a.position,
                filename=c(a.filename[:500]),
                content_type=c(a.content_type[:200]),
                size=a.size,
                sha256=sha,
                content_id=c(a.content_id[:500]),
                is_inline=a.is_inline,
            )


def _nul_free(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; hostile mail contains it.
    return value.replace("\x00", "\ufffd")


def _nul_free_stored(value: Any) -> Any:
    """A stored text (kimportal.texts) whose parameters came from the mail (a header's name, a date): NUL-free."""
    if isinstance(value, str):
        return _nul_free(value)
    if isinstance(value, list):
        return [_nul_free_stored(item) for item in value]
    if isinstance(value, dict):
        return {_nul_free(str(key)): _nul_free_stored(item) for key, item in value.items()}
    return value


def rows_insert(rows: list[RowT]) -> list[RowT]:
    """Insert unsaved rows of one model, as bulk_create() does, and set their ids; returns *rows*.

    The same statement bulk_create() sends on PostgreSQL (INSERT … SELECT * FROM UNNEST(column
    arrays) RETURNING id), with the arrays in binary: the driver writes an array of text in Python,
    quoting and escaping every body, which cost a tenth of a fetched message's CPU, while a binary
    array is each value's bytes with its length.  The values are the ORM's own (each field's
    pre_save and get_db_prep_save); no signals, as with bulk_create().
    """
    if not rows:
        return rows
    model = type(rows[0])
    alias = router.db_for_write(model)
    connection = connections[alias]
    fields = _insert_fields(model)
    if fields is None or connection.vendor != "postgresql":
        return model._default_manager.using(alias).bulk_create(rows)
    columns: list[list[Any]] = [[f.get_db_prep_save(f.pre_save(row, True), connection) for row in rows] for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(model, fields, connection), columns)
        ids = [pk for (pk,) in cursor.fetchall()]
    for row, pk in zip(rows, ids, strict=True):
        row.pk = pk
        row._state.adding = False
        row._state.db = alias
    return rows


def _insert_fields(model: type[Model]) -> Sequence[Any] | None:
    """The columns an INSERT writes (all but the id); None when a field needs the ORM's own INSERT."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if not getattr(model._meta.pk, "db_returning", False):  # an id the database does not make
        return None
    if any(getattr(f, "generated", False) or f.has_db_default() for f in fields):
        return None
    return fields


_INSERT_SQL: dict[tuple[type[Model], str], str] = {}


def _insert_sql(model: type[Model], fields: Sequence[Any], connection: Any) -> str:
    key = (model, connection.alias)
    sql = _INSERT_SQL.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        meta = model._meta
        # As bulk_create() writes the array types: without length limits (varchar[], not varchar(64)[]).
        # Names and types come from the model, never from data; the values are parameters.
        arrays = ", ".join(f"(%b)::{f.db_type(connection).split('(')[0]}[]" for f in fields)
        columns = ", ".join(qn(f.column) for f in fields)
        sql = f"INSERT INTO {qn(meta.db_table)} ({columns}) SELECT * FROM UNNEST({arrays})"  # noqa: S608
        sql = _INSERT_SQL[key] = f"{sql} RETURNING {qn(meta.pk.column)}"
    return sql
