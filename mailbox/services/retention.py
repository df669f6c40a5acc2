"""Retention and data minimisation: the content of done messages goes N days after "erledigt".

What goes: the text and HTML bodies, the subject (it often names the patient: it is replaced by a neutral note),
the attachments (rows and blobs), the raw message blob (it *is* the body, headers and attachments in one), the
internal notes and the notifications that quote the subject. What stays, for the audit trail and the lists:
the row with sender, recipients, dates, Message-ID, Dienstkennung, the CM's result headers, size, the raw
message's SHA-256 (proof of what was received), state, responsibility history and the audit events.

A message under legal hold (`legal_hold`) is skipped and counted. A dry run reports exactly what a real run at
the same moment would delete: both come from one plan. A blob is deleted only when no row that keeps its
content still names it (the store is content-addressed: one PDF can belong to several messages) and no other
app still needs it (the store is shared: signing keeps drafts' documents, their earlier versions and signed
results there; mailbox.extensions' blob keepers say which), and only after the rows that named it are committed
without it. A keeper that fails keeps every blob of that run (logged): a file kept too long, never a document lost.

Bytes stored again meanwhile: a mail or a draft with bytes identical to a blob this run deletes finds the blob
present, does not write it, and commits the row naming it a moment later. The store refreshes a blob's time when
a writer finds it, and a blob goes only when it has been idle for storage.BLOB_IDLE_SECONDS (checked race-free,
see blob_delete_if_idle); one that is not is kept and its deletion retried by the nightly run of every mailbox,
which takes it once it is idle and still unnamed. Chosen over a database lock because the guard then lives where
every writer of the store already passes (ingest, signing, compose share no transaction or lock), and it holds
for any number of worker processes and hosts sharing one store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed, PortalError
from mailbox import events
from mailbox.extensions import blobs_kept_elsewhere, message_content_deleted_send
from mailbox.models import (
    Attachment,
    Mailbox,
    Membership,
    Message,
    Note,
    Notification,
    OutgoingAttachment,
    OutgoingMessage,
)
from mailbox.permissions import is_manager, user_role
from mailbox.services.audit import audit_record
from mailbox.storage import BLOB_IDLE_SECONDS, BlobError, blob_delete_if_idle, blob_path, deleting_sweep

log = logging.getLogger(__name__)

# Stored, not translated per reader: the subject column is data that lists, search and exports show as is.
DELETED_SUBJECT = "(Inhalt nach Ablauf der Aufbewahrungsfrist gelöscht)"
_CHUNK = 500


@dataclass
class RetentionReport:
    mailbox_id: int
    mailbox: str
    dry_run: bool
    days: int | None
    messages: int = 0
    attachments: int = 0
    notes: int = 0
    bytes: int = 0  # content deleted: raw messages plus attachments
    blobs: int = 0  # blob files removed (shared ones that other messages keep are not)
    blobs_deferred: int = 0  # unnamed, but written or found by a writer lately: retried by the nightly run
    held: int = 0  # past the period but under legal hold
    message_ids: list[int] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """What was (or would be) deleted, without saying whether it was a dry run: a dry run equals the real one."""
        return {
            "mailbox_id": self.mailbox_id,
            "messages": self.messages,
            "attachments": self.attachments,
            "notes": self.notes,
            "bytes": self.bytes,
            "blobs": self.blobs,
            "held": self.held,
            "message_ids": sorted(self.message_ids),
        }


def _past_period_q(mailbox: Mailbox, now: datetime) -> Q:
    """Done messages whose content is still there and whose period ran out, legal hold or not."""
    assert mailbox.retention_days_after_done is not None
    cutoff = now - timedelta(days=mailbox.retention_days_after_done)
    return Q(mailbox_id=mailbox.pk, state=Message.State.DONE, content_deleted_at__isnull=True, done_at__lte=cutoff)


def _due_q(mailbox: Mailbox, now: datetime) -> Q:
    return _past_period_q(mailbox, now) & Q(legal_hold=False)


@dataclass
class _Plan:
    sizes: dict[int, int]  # message id → raw size
    attachments: dict[int, list[tuple[int, str]]]  # message id → (size, sha256) of each attachment
    notes: dict[int, int]
    blobs: set[str]  # blobs that no message keeping its content names
    held: int


def _plan(mailbox: Mailbox, now: datetime) -> _Plan:
    due = _due_q(mailbox, now)
    rows = list(Message.objects.filter(due).order_by("pk").values_list("pk", "size", "raw_sha256"))
    sizes = {pk: size for pk, size, _sha in rows}
    attachments: dict[int, list[tuple[int, str]]] = {pk: [] for pk in sizes}
    for message_id, size, sha in Attachment.objects.filter(message__in=Message.objects.filter(due)).values_list(
        "message_id", "size", "sha256"
    ):
        attachments[message_id].append((size, sha))
    notes = dict.fromkeys(sizes, 0)
    for message_id in Note.objects.filter(message__in=Message.objects.filter(due)).values_list("message_id", flat=True):
        notes[message_id] += 1
    candidates = {sha for _pk, _size, sha in rows} | {sha for items in attachments.values() for _s, sha in items}
    held = Message.objects.filter(_past_period_q(mailbox, now), legal_hold=True).count()
    return _Plan(sizes, attachments, notes, candidates - _kept(candidates, exclude=due), held)


def _kept(shas: Iterable[str], *, exclude: Q | None = None) -> set[str]:
    """Of these blobs, those still named by a message that keeps its content (other than `exclude`) or an
    attachment row of one."""
    shas = sorted(set(shas))
    kept: set[str] = set()
    keeping = Message.objects.filter(content_deleted_at__isnull=True)
    if exclude is not None:
        keeping = keeping.exclude(exclude)
    for i in range(0, len(shas), _CHUNK):
        chunk = shas[i : i + _CHUNK]
        kept.update(keeping.filter(raw_sha256__in=chunk).values_list("raw_sha256", flat=True))
        kept.update(Attachment.objects.filter(sha256__in=chunk, message__in=keeping).values_list("sha256", flat=True))
        # Sent mail and drafts name blobs too (a forwarded original, an attachment, the bytes that went out).
        kept.update(OutgoingMessage.objects.filter(raw_sha256__in=chunk).values_list("raw_sha256", flat=True))
        kept.update(OutgoingAttachment.objects.filter(sha256__in=chunk).values_list("sha256", flat=True))
        # Other apps' files in the same store (signing's documents and signatures), asked only for what is left.
        kept.update(blobs_kept_elsewhere([sha for sha in chunk if sha not in kept]))
    return kept


def retention_run(
    *, mailbox: Mailbox, dry_run: bool, actor: Any = None, now: datetime | None = None
) -> RetentionReport:
    """Delete (or, with dry_run, only report) the content of the mailbox's messages done longer than its period."""
    now = now or timezone.now()
    days = mailbox.retention_days_after_done
    report = RetentionReport(mailbox_id=mailbox.pk, mailbox=mailbox.display_name, dry_run=dry_run, days=days)
    if days is None:
        return report
    plan = _plan(mailbox, now)
    report.held = plan.held
    if dry_run:
        for pk in plan.sizes:
            _count(report, pk, plan.sizes[pk], plan.attachments[pk], plan.notes[pk])
        idle = [_idle(sha) for sha in plan.blobs]
        report.blobs, report.blobs_deferred = idle.count(True), idle.count(False)
        return report
    due = _due_q(mailbox, now)
    for pk in plan.sizes:
        done = _purge_one(pk, due=due, actor=actor, now=now, days=days)
        if done is not None:
            size, attachments, notes = done
            _count(report, pk, size, attachments, notes)
    # After every row above is committed without them: blobs that nothing keeping its content names any more.
    try:
        gone = plan.blobs - _kept(plan.blobs)
    except Exception:
        # The rows are purged and audited; their blobs wait for the nightly retry rather than risk one still needed.
        log.exception("retention of mailbox %s: could not tell which blobs are still needed; none deleted", mailbox.pk)
        gone = set()
        for sha in plan.blobs:
            if _valid(sha):
                _defer(sha)
    for sha in sorted(gone):
        deleted = _blob_delete(sha)
        if deleted is False:
            _defer(sha)
            report.blobs_deferred += 1
        elif deleted is not None or _valid(sha):
            report.blobs += 1
    audit_record(
        actor=actor,
        action="retention.run",
        mailbox=mailbox,
        days=days,
        messages=report.messages,
        attachments=report.attachments,
        bytes=report.bytes,
        blobs=report.blobs,
        blobs_deferred=report.blobs_deferred,
        held=report.held,
    )
    return report


def _count(report: RetentionReport, pk: int, size: int, attachments: list[tuple[int, str]], notes: int) -> None:
    report.messages += 1
    report.message_ids.append(pk)
    report.attachments += len(attachments)
    report.notes += notes
    report.bytes += size + sum(s for s, _sha in attachments)


@transaction.atomic
def _purge_one(
    pk: int, *, due: Q, actor: Any, now: datetime, days: int
) -> tuple[int, list[tuple[int, str]], int] | None:
    """One message's content, in its own transaction; None when it is no longer due (a legal hold set meanwhile,
    reopened, or another run was first)."""
    message = Message.objects.select_for_update(of=("self",)).filter(due, pk=pk).first()
    if message is None:
        return None
    attachments = list(message.attachments.values_list("size", "sha256"))
    notes = Note.objects.filter(message=message).count()
    message.attachments.all().delete()
    Note.objects.filter(message=message).delete()
    # Notifications about the message quote its subject.
    Notification.objects.filter(message=message).delete()
    # What other apps keep of the content (e.g. signing's checked signatures: file names, signers).
    message_content_deleted_send(message_id=pk)
    Message.objects.filter(pk=pk).update(
        subject=DELETED_SUBJECT,
        text_body="",
        html_body="",
        attachment_count=0,
        content_deleted_at=now,
        version=F("version") + 1,
    )
    audit_record(
        actor=actor,
        action="retention.deleted",
        message=message,
        days=days,
        done_at=message.done_at.isoformat() if message.done_at else None,
        raw_sha256=message.raw_sha256,
        size=message.size,
        attachments=len(attachments),
        attachment_bytes=sum(s for s, _sha in attachments),
        notes=notes,
    )
    events.broadcast_message_changed(mailbox_id=message.mailbox_id, message_id=pk)
    return message.size, attachments, notes


def _valid(sha: str) -> bool:
    try:
        blob_path(sha)
    except BlobError:
        return False
    return True


def _blob_delete(sha: str) -> bool | None:
    """blob_delete_if_idle for a name from the database: None (nothing deleted) for one that is no blob name."""
    try:
        return blob_delete_if_idle(sha)
    except BlobError:
        log.warning("retention: %r is not a blob name; nothing deleted", sha)
        return None


def _idle(sha: str) -> bool | None:
    """What a real run would do now: delete the blob or find it gone (True), defer it (False), or leave a name
    that is no blob name (None)."""
    try:
        return blob_path(sha).stat().st_mtime <= time.time() - BLOB_IDLE_SECONDS
    except FileNotFoundError:
        return True
    except BlobError:
        return None


# Blobs whose deletion waits until they are idle: one empty file per blob, named by it, in the store itself (shared
# by every host that shares the store, and needing no schema).
def _deferred_dir() -> Path:
    return Path(settings.KIMPORTAL_BLOB_DIR) / ".retention-deferred"


def _defer(sha: str) -> None:
    directory = _deferred_dir()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / sha).touch()


def blobs_deferred_delete() -> int:
    """Retry the deletions retention deferred: a blob goes once it is idle and still nothing names it; one that is
    named again is no longer waited for. Returns how many were deleted."""
    try:
        waiting = sorted(entry.name for entry in os.scandir(_deferred_dir()) if _valid(entry.name))
    except FileNotFoundError:
        return 0
    if not waiting:
        return 0
    try:
        kept = _kept(waiting)
    except Exception:
        log.exception("retention: could not tell which deferred blobs are still needed; none deleted")
        return 0
    deleted = 0
    for sha in waiting:
        result = None if sha in kept else _blob_delete(sha)
        if result is False:
            continue  # still busy: the next run tries again
        deleted += result is True
        (_deferred_dir() / sha).unlink(missing_ok=True)
    if deleted:
        log.info("retention: %d deferred blob(s) deleted", deleted)
    return deleted


def retention_run_all(*, dry_run: bool, actor: Any = None, now: datetime | None = None) -> list[RetentionReport]:
    """Every mailbox with a retention period (the nightly task and the management command)."""
    now = now or timezone.now()
    mailboxes = Mailbox.objects.filter(retention_days_after_done__isnull=False).order_by("display_name")
    reports = [retention_run(mailbox=m, dry_run=dry_run, actor=actor, now=now) for m in mailboxes]
    if not dry_run:
        # What a killed deletion left aside goes back, and is decided again with the deferred ones.
        for sha in deleting_sweep():
            _defer(sha)
        blobs_deferred_delete()
    return reports


def retention_preview(mailboxes: Iterable[Mailbox], *, now: datetime | None = None) -> list[RetentionReport]:
    now = now or timezone.now()
    return [retention_run(mailbox=m, dry_run=True, now=now) for m in mailboxes]


@transaction.atomic
def message_legal_hold_set(*, user: Any, message: Message, hold: bool, reason: str = "") -> Message:
    """Put a message under legal hold (its content outlives the retention period) or release it.

    The mailbox's owners and the house's managers may; it is audited with the reason (e.g. a file number).
    """
    if not (is_manager(user) or user_role(user, message.mailbox_id) == Membership.Role.OWNER):
        raise NotAllowed(_("Eine Aufbewahrungssperre setzen nur Eigentümer des Postfachs und die Leitung."))
    current = Message.objects.select_for_update(of=("self",)).get(pk=message.pk)
    if current.content_deleted_at is not None:
        raise PortalError(_("Der Inhalt dieser Nachricht ist bereits gelöscht."))
    if current.legal_hold == hold:
        return current
    Message.objects.filter(pk=current.pk).update(legal_hold=hold, version=F("version") + 1)
    current.legal_hold = hold
    audit_record(
        actor=user,
        action="message.legal_hold_set" if hold else "message.legal_hold_released",
        message=current,
        reason=reason,
    )
    events.broadcast_message_changed(mailbox_id=current.mailbox_id, message_id=current.pk)
    return current


@transaction.atomic
def mailbox_retention_set(*, user: Any, mailbox: Mailbox, days: int | None) -> Mailbox:
    """A manager sets how many days after "erledigt" the mailbox's message content is deleted (None: kept)."""
    if not is_manager(user):
        raise NotAllowed(_("Aufbewahrungsfristen legt die Leitung fest."))
    if days is not None and days < 1:
        raise PortalError(_("Die Frist muss mindestens einen Tag betragen."))
    old = Mailbox.objects.filter(pk=mailbox.pk).values_list("retention_days_after_done", flat=True).get()
    Mailbox.objects.filter(pk=mailbox.pk).update(retention_days_after_done=days)
    mailbox.retention_days_after_done = days
    audit_record(actor=user, action="mailbox.retention_changed", mailbox=mailbox, old=old, new=days)
    return mailbox
