"""Store one fetched message: immutable raw blob first, then the parsed row in one transaction."""

from __future__ import annotations

import logging

from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from mailbox import events
from mailbox.models import Attachment, Mailbox, Message
from mailbox.parsing import ParsedMessage, parse_message
from mailbox.storage import blob_put

log = logging.getLogger(__name__)


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
    attachment_shas = [blob_put(a.payload) for a in parsed.attachments]
    try:
        with transaction.atomic():
            return _create(mailbox, uidl, raw, raw_sha, parsed, attachment_shas, pop3_size)
    except IntegrityError:
        # Another worker stored the same UIDL between our check and insert.
        existing = Message.objects.filter(mailbox=mailbox, uidl=uidl).first()
        if existing is not None:
            return existing
        raise
    except DataError:
        # The database refused some parsed value: keep the raw message, flagged, rather than lose it.
        log.exception("storing parsed fields of %s/%s failed; storing raw only", mailbox.pk, uidl)
        with transaction.atomic():
            message = Message.objects.create(
                mailbox=mailbox,
                uidl=uidl,
                pop3_size=pop3_size,
                raw_sha256=raw_sha,
                size=len(raw),
                subject="",
                is_malformed=True,
                parse_problems=["Die Nachricht konnte nicht zerlegt gespeichert werden; nur der Rohtext liegt vor."],
                received_at=timezone.now(),
            )
            events.broadcast_message_created(mailbox_id=mailbox.pk, message_id=message.pk)
            return message


def _create(
    mailbox: Mailbox,
    uidl: str,
    raw: bytes,
    raw_sha: str,
    parsed: ParsedMessage,
    attachment_shas: list[str],
    pop3_size: int | None = None,
) -> Message:
    c = _nul_free
    message = Message.objects.create(
        mailbox=mailbox,
        uidl=uidl,
        pop3_size=pop3_size,
        raw_sha256=raw_sha,
        size=len(raw),
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
        attachment_count=min(sum(1 for a in parsed.attachments if not a.is_inline), 32767),
        parse_problems=[c(v) for v in parsed.problems],
    )
    Attachment.objects.bulk_create(
        Attachment(
            message=message,
            position=a.position,
            filename=c(a.filename[:500]),
            content_type=c(a.content_type[:200]),
            size=len(a.payload),
            sha256=sha,
            content_id=c(a.content_id[:500]),
            is_inline=a.is_inline,
        )
        for a, sha in zip(parsed.attachments, attachment_shas, strict=True)
    )
    events.broadcast_message_created(mailbox_id=mailbox.pk, message_id=message.pk)
    return message


def _nul_free(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; hostile mail contains it.
    return value.replace("\x00", "\ufffd")
