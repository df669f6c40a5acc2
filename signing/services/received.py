"""Signatures on received letters, checked by the Konnektor (SignatureService VerifyDocument).

A fetch round's new messages arrive through mailbox's ``messages_ingested`` signal (connected in signing.apps):
one query picks the messages with candidate attachments (a PDF, a .p7s, a .p7m, by content type or file name), and
one task for the round gives each of them a task of its own. That task reads the attachments: a PDF with a
/ByteRange is a PAdES signature, a .p7s signs the document of the same name beside it (CAdES detached; the only
other file if no name matches), a .p7m holding a CMS SignedData carries its document inside (CAdES enveloping).
Each is sent to the Konnektor; its answer is stored (ReceivedSignature), audited and shown live on the message page
(mailbox.extensions).

Which Konnektor context: the Mandant and client system of the settings, and the workplace
KIMPORTAL_KONNEKTOR_VERIFY_WORKPLACE names, or else the first active workstation (signing's Workplace, by id).
VerifyDocument needs no card and no PIN: any workstation the Konnektor knows will do; no user id is sent.

When the Konnektor cannot be asked (unreachable, timeout, refused connection settings, busy), the signature is
"nicht prüfbar" with the reason and is tried again by the beat (RETRY_DELAYS), until MAX_ATTEMPTS; anyone who
may see the message can have it checked again at any time.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from asn1crypto import cms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from kimportal.jobs import enqueue_on_commit
from kimportal.texts import N_, Stored
from konnektor import INCONCLUSIVE, VALID, CallContext, KonnektorClient, KonnektorError, VerifyResult
from mailbox.extensions import panel_changed
from mailbox.models import Attachment, Message
from mailbox.services.audit import audit_record
from mailbox.storage import BlobError, blob_get, blob_path
from signing.models import ReceivedSignature, Workplace
from signing.services.konnektor import konnektor_client
from signing.texts import konnektor_stored

log = logging.getLogger(__name__)

PANEL = "received-signatures"
TASK = "signing.tasks.signing_received_verify"
DISPATCH_TASK = "signing.tasks.signing_received_dispatch"

PDF_TYPES = frozenset({"application/pdf", "application/x-pdf", "application/pdf-a"})
DETACHED_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature"})
ENVELOPING_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})

# A check that started holds its rows this long; a worker that died meanwhile is followed by the beat's sweep.
PENDING_LEASE = timedelta(minutes=15)
# While the Konnektor cannot be asked: the next automatic try after 1, 4, 15 minutes, then hourly, for a day.
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=4), timedelta(minutes=15), timedelta(hours=1))
MAX_ATTEMPTS = 24
# Konnektor faults that say "not now" or "not with this context" rather than something about the signature:
# internal error, busy, and the call context the administrator has to put right (Mandant, client system, workplace).
RETRY_FAULT_CODES = frozenset({4001, 4004, 4005, 4006, 4010, 4011, 4014, 4021, 4060, 4204})
RETRY_KINDS = frozenset({"unreachable", "timeout", "auth", "tls", "config"})
MAX_SIGNATURES_PER_MESSAGE = 20


def _lower(value: str) -> str:
    return value.strip().lower()


def is_pdf(attachment: Attachment) -> bool:
    return _lower(attachment.content_type) in PDF_TYPES or _lower(attachment.filename).endswith(".pdf")


def is_detached_signature(attachment: Attachment) -> bool:
    return _lower(attachment.content_type) in DETACHED_TYPES or _lower(attachment.filename).endswith(".p7s")


def is_enveloping(attachment: Attachment) -> bool:
    return _lower(attachment.content_type) in ENVELOPING_TYPES or _lower(attachment.filename).endswith(".p7m")


def is_candidate(attachment: Attachment) -> bool:
    """From what the message page has loaded anyway: may this attachment carry or be a signature?"""
    return is_pdf(attachment) or is_detached_signature(attachment) or is_enveloping(attachment)


def _candidate_q() -> Q:
    q = Q(content_type__in=PDF_TYPES | DETACHED_TYPES | ENVELOPING_TYPES)
    for extension in (".pdf", ".p7s", ".p7m"):
        q |= Q(filename__iendswith=extension)
    return q


def messages_with_candidates(message_ids: Iterable[int]) -> list[int]:
    """Of these messages, those with an attachment worth a look: one query for a whole fetch round."""
    return sorted(
        set(
            Attachment.objects.filter(message_id__in=list(message_ids))
            .filter(_candidate_q())
            .values_list("message_id", flat=True)
        )
    )


def on_messages_ingested(sender: Any, *, mailbox_id: int, message_ids: list[int], **kwargs: Any) -> None:
    """mailbox.extensions.messages_ingested: one query, and one task for the round's messages that may carry a
    signature (nothing per message in the fetch: a round of 50 letters with PDFs sends one task, not 50)."""
    candidates = messages_with_candidates(message_ids)
    if candidates:
        enqueue_on_commit(DISPATCH_TASK, candidates)


def received_signatures_dispatch(*, message_ids: list[int]) -> int:
    """A task per message (in the worker, off the fetch's path): checks run side by side on several workers."""
    for message_id in message_ids:
        enqueue_on_commit(TASK, int(message_id))
    return len(message_ids)


# --- finding the signed documents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Found:
    """A signed document of a message and what the Konnektor needs to check it (or why it cannot)."""

    kind: str
    document_position: int
    signature_position: int | None
    filename: str
    document: bytes | None = None
    signature: bytes | None = None
    mime_type: str = ""
    signer_hint: str = ""  # the signer's name as the signature itself says (unchecked)
    # Set: not sent to the Konnektor, stored "nicht prüfbar" with this reason (kept untranslated, kimportal.texts).
    problem: Stored = ""


def _max_bytes() -> int:
    return int(settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES)


def _read(attachment: Attachment) -> bytes | None:
    try:
        return blob_get(attachment.sha256)
    except BlobError:
        return None


def _signed_data(data: bytes) -> cms.SignedData | None:
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            return None
        signed = info["content"]
        signed.native  # noqa: B018 - parses the whole structure: a broken CMS fails here, not later
        return signed
    except (ValueError, TypeError, KeyError):
        return None


def _signer_hint(signed: cms.SignedData | None) -> str:
    """The common name of the signer's certificate in the CMS (the one its first SignerInfo names; a CMS may carry
    the CA's too): who the signature claims to be from, unchecked."""
    if signed is None:
        return ""
    try:
        sid = signed["signer_infos"][0]["sid"]
        wanted = sid.chosen if sid.name == "issuer_and_serial_number" else None
        for cert in signed["certificates"] or []:
            tbs = cert.chosen["tbs_certificate"]
            if wanted is not None and (
                tbs["issuer"] != wanted["issuer"] or tbs["serial_number"].native != wanted["serial_number"].native
            ):
                continue
            name = cert.chosen.subject.native.get("common_name")
            if name:
                return str(name)[:300]
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        pass
    return ""


_PDF_CONTENTS = re.compile(rb"/Contents\s*<([0-9A-Fa-f\s]+)>")


def _pdf_signer_hint(pdf: bytes) -> str:
    match = _PDF_CONTENTS.search(pdf, max(0, pdf.rfind(b"/ByteRange") - 20000))
    if match is None:
        return ""
    try:
        der = bytes.fromhex(re.sub(rb"\s", b"", match.group(1)).decode("ascii")).rstrip(b"\x00")
    except ValueError:
        return ""
    return _signer_hint(_signed_data(der))


def _too_big(name: str) -> Stored:
    return (
        N_("Die Datei „%(name)s“ ist für die Prüfung am Konnektor zu groß (höchstens %(mb)d MB).")
        % {"name": name, "mb": _max_bytes() // 2**20}
    ).stored


def _gone() -> Stored:
    return N_("Die Datei ist nicht mehr vorhanden.").stored


def received_find(message: Message) -> list[Found]:
    """The signed documents of a message, with their bytes (read here, outside any transaction)."""
    attachments = list(Attachment.objects.filter(message=message).order_by("position"))
    signatures = [a for a in attachments if is_detached_signature(a)]
    documents = [a for a in attachments if not is_detached_signature(a) and not is_enveloping(a)]

    # A letter carries one or a few; a mail with hundreds is no letter and must not keep the Konnektor busy — nor
    # the worker's memory: what is beyond the limit is not even read.
    def detached(signature: Attachment) -> list[Found]:
        return [_detached(signature, documents, single=len(signatures) == 1)]

    steps: list[Callable[[], list[Found]]] = []
    for a in attachments:
        if is_detached_signature(a):
            continue
        if is_enveloping(a):
            steps.append(partial(_enveloping, a))
        elif is_pdf(a):
            steps.append(partial(_pades, a))
    steps += [partial(detached, signature) for signature in signatures]
    found: list[Found] = []
    for number, step in enumerate(steps):
        if len(found) >= MAX_SIGNATURES_PER_MESSAGE:
            log.warning(
                "message %s: checking the first %s signatures, %s files left unread",
                message.pk,
                MAX_SIGNATURES_PER_MESSAGE,
                len(steps) - number,
            )
            break
        found.extend(step())
    return found[:MAX_SIGNATURES_PER_MESSAGE]


def _pades(a: Attachment) -> list[Found]:
    if a.size > _max_bytes():
        # Whether it is signed at all is only known from its bytes (read in pieces); an unsigned one is not reported.
        if not _blob_contains(a, b"/ByteRange"):
            return []
        return [Found(ReceivedSignature.Kind.PADES, a.position, None, a.filename, problem=_too_big(a.filename))]
    data = _read(a)
    if data is None or b"/ByteRange" not in data:
        return []
    return [
        Found(
            ReceivedSignature.Kind.PADES,
            a.position,
            None,
            a.filename,
            document=data,
            mime_type="application/pdf",
            signer_hint=_pdf_signer_hint(data),
        )
    ]


def _blob_contains(a: Attachment, needle: bytes) -> bool:
    try:
        with blob_path(a.sha256).open("rb") as fh:
            tail = b""
            while chunk := fh.read(1 << 20):
                if needle in tail + chunk:
                    return True
                tail = chunk[-len(needle) :]
    except OSError:
        return False
    return False


def _enveloping(a: Attachment) -> list[Found]:
    kind = ReceivedSignature.Kind.CADES_ENVELOPING
    if a.size > _max_bytes():
        return [Found(kind, a.position, None, a.filename, problem=_too_big(a.filename))]
    data = _read(a)
    signed = _signed_data(data) if data is not None else None
    if data is None or signed is None:
        # Not a signature (an encrypted .p7m, or not CMS at all): nothing to report.
        return []
    return [
        Found(
            kind,
            a.position,
            None,
            a.filename,
            signature=data,
            mime_type=a.content_type or "application/pkcs7-mime",
            signer_hint=_signer_hint(signed),
        )
    ]


def _detached(signature: Attachment, documents: list[Attachment], *, single: bool) -> Found:
    kind = ReceivedSignature.Kind.CADES_DETACHED
    stem = signature.filename[: -len(".p7s")] if _lower(signature.filename).endswith(".p7s") else ""
    named = [d for d in documents if stem and _lower(d.filename) == _lower(stem)]
    if named:
        document: Attachment | None = named[0]
    elif single and len(documents) == 1:
        document = documents[0]
    else:
        document = None
    sig_bytes = _read(signature) if signature.size <= _max_bytes() else None
    hint = _signer_hint(_signed_data(sig_bytes)) if sig_bytes is not None else ""
    if document is None:
        return Found(
            kind,
            signature.position,
            signature.position,
            signature.filename,
            signer_hint=hint,
            problem=(
                N_("Zur Signaturdatei „%(name)s“ fehlt das signierte Dokument in dieser Nachricht.")
                % {"name": signature.filename}
            ).stored,
        )
    if signature.size > _max_bytes() or document.size > _max_bytes():
        return Found(
            kind, document.position, signature.position, document.filename, problem=_too_big(document.filename)
        )
    doc_bytes = _read(document)
    if sig_bytes is None or doc_bytes is None:
        return Found(kind, document.position, signature.position, document.filename, problem=_gone())
    return Found(
        kind,
        document.position,
        signature.position,
        document.filename,
        document=doc_bytes,
        signature=sig_bytes,
        mime_type=document.content_type or "application/octet-stream",
        signer_hint=hint,
    )


# --- asking the Konnektor -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str
    result: str = ""
    reason: Stored = ""  # kept untranslated (kimportal.texts); the Konnektor's own words as they came
    signer_name: str = ""
    signer_certificate: bytes | None = None
    signing_time: datetime | None = None
    is_qes: bool = False
    retry: bool = False  # the Konnektor could not be asked: try again later


def verify_workplace_id() -> str | None:
    """The WorkplaceId of VerifyDocument calls: the setting, else the first active workstation, else None."""
    configured = str(getattr(settings, "KIMPORTAL_KONNEKTOR_VERIFY_WORKPLACE", "") or "")
    if configured:
        return configured
    return Workplace.objects.filter(is_active=True).order_by("pk").values_list("workplace_id", flat=True).first()


def verify_context() -> CallContext | None:
    workplace_id = verify_workplace_id()
    if workplace_id is None:
        return None
    return CallContext(
        mandant_id=settings.KIMPORTAL_KONNEKTOR_MANDANT,
        client_system_id=settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM,
        workplace_id=workplace_id,
        user_id=None,
    )


def _outcome(result: VerifyResult) -> Outcome:
    if result.valid and result.result == VALID:
        status = ReceivedSignature.Status.VALID
    elif result.result == INCONCLUSIVE:
        status = ReceivedSignature.Status.INCONCLUSIVE
    else:
        status = ReceivedSignature.Status.INVALID
    reason: Stored = result.reason
    if status != ReceivedSignature.Status.VALID and not reason:
        reason = N_("Der Konnektor nennt keinen Grund.").stored
    return Outcome(
        status=status,
        result=result.result[:20],
        reason=reason,
        signer_name=result.signer_name[:300],
        signer_certificate=result.signer_certificate,
        signing_time=result.signing_time,
        is_qes=result.is_qes,
    )


def _ask(client: KonnektorClient, ctx: CallContext, found: Found) -> Outcome:
    try:
        if found.kind == ReceivedSignature.Kind.PADES:
            answer = client.verify_document(ctx, signature=None, document=found.document, mime_type=found.mime_type)
        else:
            answer = client.verify_document(
                ctx, signature=found.signature, document=found.document, mime_type=found.mime_type
            )
    except KonnektorError as exc:
        log.warning("VerifyDocument for %s failed: %r", found.filename, exc)
        retry = exc.kind in RETRY_KINDS or exc.code in RETRY_FAULT_CODES
        return Outcome(
            ReceivedSignature.Status.UNVERIFIABLE, reason=konnektor_stored(exc.code, exc.text).stored, retry=retry
        )
    except Exception as exc:
        # A bug or an answer nobody foresaw: recorded and tried again later, never a check left "running".
        log.exception("VerifyDocument for %s failed unexpectedly", found.filename)
        return _unverifiable(_internal(exc), retry=True)
    return _outcome(answer)


def _internal(exc: BaseException) -> Stored:
    text = N_("Interner Fehler bei der Prüfung (%(kind)s). Details im Server-Log.")
    return (text % {"kind": exc.__class__.__name__}).stored


def _unverifiable(reason: Stored, *, retry: bool) -> Outcome:
    return Outcome(ReceivedSignature.Status.UNVERIFIABLE, reason=reason, retry=retry)


def _no_workplace() -> Stored:
    return N_(
        "Für die Signaturprüfung ist kein Arbeitsplatz eingerichtet (Signatur → Verwaltung → Arbeitsplätze, "
        "oder KIMPORTAL_KONNEKTOR_VERIFY_WORKPLACE)."
    ).stored


# --- the task's work ----------------------------------------------------------------------------------------------


def received_signatures_verify(*, message_id: int, force: bool = False, requested_by: int | None = None) -> int:
    """Find and check the signatures of a received message; the number of signatures checked.

    ``force``: check again even when a result is stored (on demand, the retry sweep); without it a message whose
    check has finished is left alone (a task delivered twice costs nothing). Runs outside a transaction: the
    Konnektor is asked between two short ones (rows pending → results)."""
    message = Message.objects.filter(pk=message_id).only("pk", "mailbox_id", "subject", "content_deleted_at").first()
    if message is None or message.content_deleted_at is not None:
        return 0
    existing = {(r.kind, r.document_position): r for r in ReceivedSignature.objects.filter(message=message)}
    if not force and existing and all(r.status != ReceivedSignature.Status.PENDING for r in existing.values()):
        return 0
    found = received_find(message)
    if not found and not existing:
        return 0
    _rows_pending(message, found, existing)
    ctx = verify_context()
    outcomes: list[tuple[Found, Outcome]] = []
    client: KonnektorClient | None = None
    try:
        for item in found:
            if item.problem:
                outcomes.append((item, _unverifiable(item.problem, retry=False)))
            elif ctx is None:
                outcomes.append((item, _unverifiable(_no_workplace(), retry=True)))
            else:
                if client is None:
                    try:
                        client = konnektor_client()
                    except (OSError, ValueError) as exc:
                        # A certificate file named in the settings is missing or unreadable: the administrator's.
                        log.exception("the Konnektor client cannot be set up")
                        outcomes.append((item, _unverifiable(_internal(exc), retry=True)))
                        continue
                outcomes.append((item, _ask(client, ctx, item)))
    finally:
        if client is not None:
            client.close()
    actor = get_user_model().objects.filter(pk=requested_by).first() if requested_by else None
    _rows_store(message, outcomes, actor=actor)
    return len(outcomes)


def _content_kept(message: Message) -> bool:
    """Whether the message still has its content, locking its row: retention deletes the content (and with it
    these rows, on_message_content_deleted) under the same lock, so a check that read the bytes before cannot
    write rows after."""
    return Message.objects.select_for_update().filter(pk=message.pk, content_deleted_at__isnull=True).exists()


def on_message_content_deleted(sender: Any, *, message_id: int, **kwargs: Any) -> None:
    """mailbox.extensions.message_content_deleted (retention): the checked signatures name the files and their
    signers, part of the content: they go with it, in the same transaction."""
    ReceivedSignature.objects.filter(message_id=message_id).delete()


@transaction.atomic
def _rows_pending(message: Message, found: list[Found], existing: dict[tuple[str, int], ReceivedSignature]) -> None:
    """Show the check as running (rows created or reset), held for PENDING_LEASE; rows no longer found go."""
    if not _content_kept(message):
        return
    now = timezone.now()
    keys = {(f.kind, f.document_position) for f in found}
    gone = [r.pk for key, r in existing.items() if key not in keys]
    if gone:
        ReceivedSignature.objects.filter(pk__in=gone).delete()
    for item in found:
        ReceivedSignature.objects.update_or_create(
            message=message,
            kind=item.kind,
            document_position=item.document_position,
            defaults={"status": ReceivedSignature.Status.PENDING, "next_try_at": now + PENDING_LEASE},
            create_defaults={
                "signature_position": item.signature_position,
                "filename": item.filename[:500],
                "signer_name": item.signer_hint,
                "status": ReceivedSignature.Status.PENDING,
                "next_try_at": now + PENDING_LEASE,
            },
        )
    panel_changed(message_id=message.pk, panel=PANEL)


def _retry_at(attempts: int, now: datetime) -> datetime | None:
    if attempts >= MAX_ATTEMPTS:
        return None
    return now + RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]


@transaction.atomic
def _rows_store(message: Message, outcomes: list[tuple[Found, Outcome]], *, actor: Any) -> None:
    if not _content_kept(message):
        return
    now = timezone.now()
    rows = {
        (r.kind, r.document_position): r for r in ReceivedSignature.objects.select_for_update().filter(message=message)
    }
    for item, outcome in outcomes:
        row = rows.get((item.kind, item.document_position))
        if row is None:  # removed meanwhile (the message's content deleted): nothing to record
            continue
        row.status = outcome.status
        row.result = outcome.result
        row.reason = outcome.reason
        row.signer_name = outcome.signer_name or item.signer_hint
        row.signer_certificate = outcome.signer_certificate
        row.signing_time = outcome.signing_time
        row.is_qes = outcome.is_qes
        row.signature_position = item.signature_position
        row.filename = item.filename[:500]
        row.checked_at = now
        if outcome.retry:
            row.attempts += 1
            row.next_try_at = _retry_at(row.attempts, now)
        else:
            row.attempts = 0
            row.next_try_at = None
        row.save()
        audit_record(
            actor=actor,
            action="signing.received_verified",
            message=message,
            file=row.filename,
            kind=row.kind,
            status=row.status,
            result=row.result,
            signer=row.signer_name,
            qes=row.is_qes,
            reason=row.reason,
            next_try_at=row.next_try_at.isoformat() if row.next_try_at else None,
        )
    panel_changed(message_id=message.pk, panel=PANEL)


# --- on demand and the retry sweep --------------------------------------------------------------------------------


@transaction.atomic
def received_signatures_redo(*, user: Any, message: Message) -> bool:
    """Check a message's signatures again, for someone who may see it (the caller found it through
    Message.objects.visible_to): shown as running at once, the task follows after commit. False when a check of
    the message is running already (within its lease): a second click, or a reader's script, queues nothing."""
    now = timezone.now()
    rows = ReceivedSignature.objects.select_for_update().filter(message=message)
    if any(r.status == ReceivedSignature.Status.PENDING and r.next_try_at and r.next_try_at > now for r in rows):
        return False
    rows.update(status=ReceivedSignature.Status.PENDING, next_try_at=now + PENDING_LEASE)
    audit_record(actor=user, action="signing.received_verify_requested", message=message)
    panel_changed(message_id=message.pk, panel=PANEL)
    enqueue_on_commit(TASK, message.pk, True, user.pk)
    return True


def received_signatures_retry_due(*, now: datetime | None = None, limit: int = 100) -> int:
    """Queue a new check for messages whose signatures are due again (the Konnektor could not be asked, or a
    check's worker died); each due message is claimed by moving its rows' next try on, so two sweeps never
    queue one message twice."""
    now = now or timezone.now()
    due = list(
        ReceivedSignature.objects.filter(next_try_at__lte=now)
        .order_by("next_try_at")
        .values_list("message_id", flat=True)
        .distinct()[: limit * 4]
    )
    queued = 0
    for message_id in dict.fromkeys(due):
        if queued >= limit:
            break
        claimed = ReceivedSignature.objects.filter(message_id=message_id, next_try_at__lte=now).update(
            next_try_at=now + PENDING_LEASE
        )
        if claimed:
            enqueue_on_commit(TASK, message_id, True)
            queued += 1
    return queued
