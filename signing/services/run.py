"""One batch against the Konnektor, run by the Celery task (signing.tasks.signing_batch_run).

discover → GetCards(HBA) → the signer's card (ICCSN, or the Telematik-ID in its QES certificate) → GetPinStatus
(PIN.QES) → per SignDocument call: GetJobNumber, stored and shown before the call blocks for the PIN → results
matched by RequestID → each signature checked locally → signed drafts leave the queue, the others stay with the
reason. Each call is one PIN entry at the terminal (and the Konnektor may split a call and ask again): the page
says which call waits. A failure before or during a call leaves every draft not yet signed intact in the queue.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, cast

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kimportal.jobs import enqueue_on_commit
from kimportal.texts import N_, Stored, StoredText
from konnektor import (
    Card,
    KonnektorClient,
    KonnektorError,
    SignItem,
    SignResult,
    batches,
)
from mailbox.storage import BlobBatch, BlobError, blob_get, blob_path
from signing import events
from signing.models import BatchItem, Draft, Signature, SignatureBatch, SignerCard
from signing.permissions import SIGNER_REFUSED_IN_BATCH, signing_mailbox_ids
from signing.services.audit import signing_audit
from signing.services.comfort import (
    CARD_GONE,
    COMFORT_ENDED,
    ComfortSession,
    comfort_after_batch,
    comfort_after_call,
    comfort_before_call,
    comfort_call_ended,
    comfort_for_batch,
)
from signing.services.hba import BatchStopped, find_signer_card, pin_fault_text
from signing.services.konnektor import (
    batch_job_stop,
    call_context,
    konnektor_client,
    konnektor_config,
    qes_ca_pem,
    signature_job_stop,
)
from signing.services.verify import SignatureInvalid, verify_cades_detached, verify_pades
from signing.texts import (
    code_stored,
    document_missing,
    konnektor_stored,
    lazy_stored,
    outside_stored,
    scoped_stored,
)

log = logging.getLogger(__name__)

SHORT_TEXT_FORBIDDEN = re.compile(r"[^a-zA-Z 0-9_.\-äöüÄÖÜß]")


def short_text_for(draft: Draft) -> str:
    """SignRequest's ShortText: names the document in the signature, ≤ 30 characters of the allowed set."""
    text = SHORT_TEXT_FORBIDDEN.sub("_", draft.filename or draft.subject).strip() or f"Dokument {draft.pk}"
    return text[:30]


def _refresh(batch: SignatureBatch) -> SignatureBatch:
    return SignatureBatch.objects.get(pk=batch.pk)


def _update(batch: SignatureBatch, **fields: Any) -> None:
    # Never on an ended batch: a late worker must not make a finished batch look running again.
    SignatureBatch.objects.filter(pk=batch.pk, finished_at__isnull=True).update(**fields)
    for name, value in fields.items():
        setattr(batch, name, value)
    events.broadcast_batch_changed(batch_id=batch.pk)


def _cancel_requested(batch: SignatureBatch) -> bool:
    return SignatureBatch.objects.filter(pk=batch.pk, cancel_requested_at__isnull=False).exists()


def _ended(batch: SignatureBatch) -> bool:
    """Ended without this worker (the stale recovery took a worker that fell silent for its own)."""
    return SignatureBatch.objects.filter(pk=batch.pk, finished_at__isnull=False).exists()


def _lock_pending(batch: SignatureBatch) -> set[int]:
    """In the caller's transaction: lock the batch row (as _finish does) and return the ids of its items still
    pending; none when the batch has ended meanwhile. Its drafts are then back in the queue, perhaps in a new
    batch: nothing this worker still gets for them is used."""
    current = SignatureBatch.objects.select_for_update().filter(pk=batch.pk).first()
    if current is None or not current.is_active:
        return set()
    return set(current.items.filter(state=BatchItem.State.PENDING).values_list("pk", flat=True))


def _find_card(client: KonnektorClient, ctx: Any, mapping: SignerCard) -> tuple[Card, list[bytes]]:
    """The signer's own eHBA, and its QES certificates (RSA, and ECC on a G2.1 card)."""
    card = find_signer_card(client, ctx, mapping)
    return card, client.read_qes_certificates(ctx, card.card_handle)


def _after_pin_fault(client: KonnektorClient, ctx: Any, card_handle: str, exc: KonnektorError) -> BatchStopped:
    text = pin_fault_text(client, ctx, card_handle, exc)
    return BatchStopped(4063 if text == code_stored(4063) else exc.code, text)


CARD_UNMAPPED = gettext_lazy(
    "Ihnen ist kein eHBA mehr zugeordnet: Die Leitung hat die Zuordnung während des Signaturvorgangs entfernt oder "
    "geändert. Es wird nichts weiter signiert; die nicht signierten Entwürfe sind wieder in der Liste."
)


def _require_card(batch: SignatureBatch, mapping: SignerCard) -> None:
    """Before each call and before its answers are used: the eHBA mapping the batch started with still stands.
    A manager takes it away for a card lost or a physician who left; what the card still answers is not used."""
    if not SignerCard.objects.filter(
        pk=mapping.pk, user_id=batch.signer_id, telematik_id=mapping.telematik_id, iccsn=mapping.iccsn
    ).exists():
        raise BatchStopped(None, lazy_stored(CARD_UNMAPPED))


def _check_pin(client: KonnektorClient, ctx: Any, card: Card) -> None:
    """Before the first call that asks for the PIN: a transport PIN or a blocked PIN stops the batch here."""
    pin = client.get_pin_status(ctx, card.card_handle, pin_ref="PIN.QES")
    if pin.status == "TRANSPORT_PIN":
        raise BatchStopped(4065, code_stored(4065))
    if pin.status == "BLOCKED":
        raise BatchStopped(4063, code_stored(4063))


def batch_run(batch_id: int) -> None:
    with transaction.atomic():
        batch = SignatureBatch.objects.select_for_update().select_related("workplace").get(pk=batch_id)
        # A redelivered task never signs twice: only a batch nobody has started yet runs.
        if batch.state != SignatureBatch.State.PREPARED or batch.started_at is not None:
            return
        batch.started_at = batch.heartbeat_at = timezone.now()
        batch.save(update_fields=["started_at", "heartbeat_at"])
    heartbeat = _Heartbeat(batch.pk)
    heartbeat.start()
    try:
        if _cancel_requested(batch):
            raise BatchStopped(None, StoredText([]))
        # A deactivated account has no rights anywhere, also not in a batch it queued before (read now, not then).
        if not get_user_model().objects.filter(pk=batch.signer_id, is_active=True).exists():
            raise BatchStopped(None, N_("Das Konto ist deaktiviert; es wird nichts signiert."))
        mapping = SignerCard.objects.filter(user_id=batch.signer_id).first()
        if mapping is None:
            raise BatchStopped(None, N_("Ihnen ist kein eHBA mehr zugeordnet."))
        client = konnektor_client()
        ctx = call_context(workplace=batch.workplace, card=mapping)
        client.discover()
        card, certificates = _find_card(client, ctx, mapping)
        _update(batch, card_handle=card.card_handle, card_iccsn=card.iccsn or "")
        # Komfortsignatur (issue 12): the physician's active activation at this workstation and card signs
        # without a PIN; when it ends during the batch the rest asks for the PIN (signing.services.comfort).
        comfort = comfort_for_batch(client, batch, card)
        if comfort is None:
            _check_pin(client, ctx, card)
        items = list(batch.items.select_related("draft").order_by("position"))
        by_request = {item.request_id: item for item in items}
        _check_documents_stored(items)
        # Split within the Konnektor's limits by the documents' sizes; a document too big for any call fails alone
        # (4283). The bytes are read one call at a time: 250 documents of 25 MB must not all sit in memory at once.
        plan = batches([_planned_item(item) for item in items], konnektor_config())
        calls = list(plan.calls)
        _update(batch, calls_total=len(calls))
        ca = qes_ca_pem()
        if plan.rejected:
            _store_results(batch, by_request, {}, plan.rejected, certificates, ca)
        number = 0
        while calls:
            if _cancel_requested(batch) or _ended(batch):
                break
            _require_card(batch, mapping)
            call = _without_refused(batch, by_request, calls.pop(0))
            if not call:
                _update(batch, calls_total=batch.calls_total - 1)
                continue
            if comfort is not None:
                left = comfort_before_call(client, comfort)
                if left is None:
                    comfort = None
                    _check_pin(client, ctx, card)
                elif left < len(call):
                    # What the session still allows now; the rest is the next call (with the PIN, if it ran out).
                    calls.insert(0, call[left:])
                    call = call[:left]
                    _update(batch, calls_total=batch.calls_total + 1)
            sent = [_sign_item(by_request[s.request_id]) for s in call]
            documents = {s.request_id: s.content for s in sent}
            job_number = client.get_job_number(ctx)
            # Stored and shown before SignDocument blocks: the physician compares it with the terminal's display.
            # With the Komfortsignatur it is shown for the record; the terminal asks for nothing.
            state = SignatureBatch.State.PIN if comfort is None else SignatureBatch.State.SIGNING
            _update(batch, state=state, job_number=job_number, calls_done=number)
            # A cancel, or an eHBA mapping taken away, while this call's documents were read found no job of this
            # call to stop: asked again now that its job number is stored (from now on either stops it), before the
            # terminal asks for the PIN.
            if _cancel_requested(batch) or _ended(batch):
                break
            _require_card(batch, mapping)
            if comfort is not None:
                try:
                    results = _sign_call(client, comfort.ctx, card.card_handle, job_number, sent)
                except KonnektorError as exc:
                    if _cancel_requested(batch):
                        break
                    if exc.code not in COMFORT_ENDED and exc.code not in CARD_GONE:
                        raise _after_pin_fault(client, comfort.ctx, card.card_handle, exc) from exc
                    # The Konnektor ended the comfort mode during this call: the same documents again, with PIN.
                    comfort_call_ended(comfort, exc)
                    comfort = None
                    if exc.code in CARD_GONE:
                        raise
                    _check_pin(client, ctx, card)
                    calls.insert(0, call)
                    _update(batch, calls_total=batch.calls_total + 1)
                    continue
                ended = [r for r in results if not r.ok and r.code in COMFORT_ENDED]
                results = [r for r in results if r.ok or r.code not in COMFORT_ENDED]
                comfort_after_call(
                    comfort, job_number=job_number, documents=len(call), signed=sum(1 for r in results if r.ok)
                )
                if ended:
                    comfort_call_ended(comfort, None)
                    comfort = None
                    _check_pin(client, ctx, card)
                    retry = {r.request_id for r in ended}
                    calls.insert(0, [s for s in call if s.request_id in retry])
                    _update(batch, calls_total=batch.calls_total + 1)
            else:
                try:
                    results = _sign_call(client, ctx, card.card_handle, job_number, sent)
                except KonnektorError as exc:
                    if _cancel_requested(batch):
                        break
                    raise _after_pin_fault(client, ctx, card.card_handle, exc) from exc
            number += 1
            _update(batch, state=SignatureBatch.State.SIGNING, calls_done=number)
            if _cancel_requested(batch):
                # Stopped (StopSignature ends the call "without error", each document marked 4049): what was
                # signed is kept, the rest goes back to the queue as not signed, not as failed.
                results = [r for r in results if r.ok]
            _require_card(batch, mapping)
            _store_results(batch, by_request, documents, results, certificates, ca, comfort=comfort)
            # This call's documents and signed PDFs go before the next call's are read.
            del sent, documents, results
        if comfort is not None:
            comfort_after_batch(client, comfort)
    except BatchStopped as stop:
        _finish(batch, code=stop.code, text=stop.text)
    except KonnektorError as exc:
        _finish(batch, code=exc.code, text=konnektor_stored(exc.code, exc.text))
    except SoftTimeLimitExceeded:
        log.warning("signing batch %s reached the task's time limit", batch_id)
        _finish(batch, code=None, text=lazy_stored(TOO_LONG))
    except Exception:
        log.exception("signing batch %s failed", batch_id)
        _finish(
            batch, code=None, text=N_("Interner Fehler beim Signieren. Die Entwürfe sind unverändert in der Liste.")
        )
    else:
        _finish(batch, code=None, text=StoredText([]))
    finally:
        heartbeat.stop()


def _sign_call(
    client: KonnektorClient, ctx: Any, card_handle: str, job_number: str, items: Sequence[SignItem]
) -> list[SignResult]:
    """One SignDocument call. When the portal stops waiting for its answer (timeout, the task's time limit), the
    Konnektor may still be
    asking for the PIN: StopSignature ends that job (signing.services.konnektor.signature_job_stop)."""
    try:
        return client.sign_documents(ctx, card_handle, job_number, items)
    except KonnektorError as exc:
        if exc.kind == "timeout":
            signature_job_stop(client, ctx, job_number, why="timeout")
        raise
    except SoftTimeLimitExceeded:
        # The task's time limit came while the terminal waits for the PIN: that job ends with the batch.
        signature_job_stop(client, ctx, job_number, why="time limit")
        raise


def heartbeat_seconds() -> float:
    return float(getattr(settings, "KIMPORTAL_SIGNING_HEARTBEAT_SECONDS", 15.0))


class _Heartbeat(threading.Thread):
    """Renews the batch's heartbeat while the task runs, also while SignDocument blocks for minutes waiting for
    the PIN. A killed worker stops renewing: its batch is ended within a minute or two, not after the time limit."""

    def __init__(self, batch_id: int) -> None:
        super().__init__(name=f"signing-heartbeat-{batch_id}", daemon=True)
        self.batch_id = batch_id
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(heartbeat_seconds()):
                try:
                    _beat(self.batch_id)
                except Exception:
                    # A database hiccup must not end the beats for good: the batch, alive, would be ended as
                    # stale while the physician types the PIN. The next beat starts on a fresh connection.
                    log.exception("heartbeat of signing batch %s failed", self.batch_id)
                    connection.close()
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=heartbeat_seconds() + 5)


def _beat(batch_id: int) -> None:
    SignatureBatch.objects.filter(pk=batch_id, finished_at__isnull=True).update(heartbeat_at=timezone.now())


def _allowed_mailboxes(batch: SignatureBatch) -> set[int]:
    """The departments the batch's signer may sign for now (read now: the batch may have waited in the queue, and
    SignDocument blocks for minutes while the PIN is typed)."""
    signer = get_user_model().objects.filter(pk=batch.signer_id).first()
    return signing_mailbox_ids(signer) if signer is not None else set()


def _refuse(batch: SignatureBatch, items: Sequence[BatchItem]) -> None:
    """Items whose signer left the draft's department (or lost the role) since the batch was queued: not signed,
    back in the queue as failed with the reason, on the audit trail."""
    with transaction.atomic():
        pending = _lock_pending(batch)
        items = [item for item in items if item.pk in pending]
        if not items:
            return
        for item in items:
            _item_failed(batch, item, None, lazy_stored(SIGNER_REFUSED_IN_BATCH), reason="signer_not_allowed")
        SignatureBatch.objects.filter(pk=batch.pk).update(failed_count=F("failed_count") + len(items))
        events.broadcast_batch_changed(batch_id=batch.pk, item_ids=[item.pk for item in items])
        events.broadcast_drafts_changed(
            user_ids=[batch.signer_id, *(item.draft.author_id for item in items)],
            draft_ids=[item.draft_id for item in items],
        )


def _without_refused(batch: SignatureBatch, by_request: dict[str, BatchItem], call: list[SignItem]) -> list[SignItem]:
    """The call without the documents its signer may no longer sign; those are refused before the card signs."""
    allowed = _allowed_mailboxes(batch)
    refused = [
        by_request[s.request_id]
        for s in call
        if by_request[s.request_id].draft.mailbox_id not in allowed
        and by_request[s.request_id].state == BatchItem.State.PENDING
    ]
    if refused:
        _refuse(batch, refused)
    gone = {item.request_id for item in refused}
    return [s for s in call if s.request_id not in gone]


class _Length:
    """A document's size standing in for its bytes while the calls are planned (konnektor.batches weighs each
    item by len(content) only)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def _document_missing(item: BatchItem) -> BatchStopped:
    return BatchStopped(None, document_missing(item.draft_id, item.draft.filename))


def _check_documents_stored(items: Sequence[BatchItem]) -> None:
    """Before the first PIN: a document gone from the store stops the batch before anything is signed (its bytes
    are read, and their digest checked, only when its call comes)."""
    for item in items:
        try:
            stored = blob_path(item.document_sha256).is_file()
        except BlobError:
            stored = False
        if not stored:
            raise _document_missing(item)


def _planned_item(item: BatchItem) -> SignItem:
    # Draft.size is the length of the blob named by document_sha256: both change together (draft_update), and
    # batch_create took the item only at the digest the page showed.
    return _sign_item(item, content=cast(bytes, _Length(item.draft.size)))


def _sign_item(item: BatchItem, *, content: bytes | None = None) -> SignItem:
    if content is None:
        try:
            content = blob_get(item.document_sha256)
        except BlobError as exc:
            raise _document_missing(item) from exc
    return SignItem(
        request_id=item.request_id,
        content=content,
        mime_type=item.draft.mime_type,
        short_text=short_text_for(item.draft),
        pades=item.draft.is_pdf,
    )


def _store_results(
    batch: SignatureBatch,
    by_request: dict[str, BatchItem],
    documents: dict[str, bytes],
    results: Sequence[SignResult],
    certificates: list[bytes],
    ca: bytes | None,
    *,
    comfort: ComfortSession | None = None,
) -> None:
    """One call's answers: each signature checked, written to the blob store (durable before its row), then the
    rows of the whole call in one transaction (bulk: a call carries up to 250 documents)."""
    good: list[tuple[BatchItem, Signature]] = []
    bad: list[tuple[BatchItem, int | None, StoredText]] = []
    refused: list[BatchItem] = []
    # The signer may have left a department while the call waited for the PIN: a signature made for a draft
    # they may no longer sign is not used (its draft stays in the queue, refused with the reason).
    allowed = _allowed_mailboxes(batch)
    with BlobBatch() as blobs:
        for result in results:
            item = by_request.get(result.request_id)
            if item is None or item.state != BatchItem.State.PENDING:
                continue  # an answer to a request we did not send (or twice): ignored
            if item.draft.mailbox_id not in allowed:
                refused.append(item)
                continue
            if not result.ok:
                code = result.code
                if result.text:
                    text = konnektor_stored(code, result.text)
                else:
                    text = code_stored(code) if code is not None else N_("Nicht signiert.")
                bad.append((item, code, text))
                continue
            try:
                signature = _checked_signature(item, documents[item.request_id], result, certificates, ca, blobs)
                good.append((item, signature))
            except SignatureInvalid as exc:
                reason = outside_stored(str(exc)).stored
                bad.append((item, None, N_("Signatur bei der Prüfung abgelehnt: %(reason)s") % {"reason": reason}))
        blobs.wait()
    now = timezone.now()
    with transaction.atomic():
        pending = _lock_pending(batch)
        late = len(good) + len(bad) + len(refused)
        good = [(item, signature) for item, signature in good if item.pk in pending]
        bad = [(item, code, text) for item, code, text in bad if item.pk in pending]
        refused = [item for item in refused if item.pk in pending]
        if late != len(good) + len(bad) + len(refused):
            log.warning(
                "signing batch %s ended before its answers came: %s of them not used",
                batch.pk,
                late - len(good) - len(bad) - len(refused),
            )
        for item, signature in good:
            signature.signed_at = signature.verified_at = now
            item.state = BatchItem.State.SIGNED
        Signature.objects.bulk_create([signature for _item, signature in good])
        BatchItem.objects.filter(pk__in=[item.pk for item, _s in good]).update(state=BatchItem.State.SIGNED)
        Draft.objects.filter(pk__in=[item.draft_id for item, _s in good]).update(
            state=Draft.State.SIGNED, signed_at=now, last_error="", last_error_code=None, updated_at=now
        )
        for item, signature in good:
            signing_audit(
                actor=None,
                action="signing.signed",
                draft=item.draft,
                batch=batch.pk,
                format=signature.format,
                signature=signature.sha256,
                **({"comfort_activation": comfort.activation.pk} if comfort is not None else {}),
            )
            _hand_to_outbox(item.draft)
        for item, code, text in bad:
            _item_failed(batch, item, code, text)
        for item in refused:
            _item_failed(batch, item, None, lazy_stored(SIGNER_REFUSED_IN_BATCH), reason="signer_not_allowed")
        SignatureBatch.objects.filter(pk=batch.pk).update(
            signed_count=F("signed_count") + len(good), failed_count=F("failed_count") + len(bad) + len(refused)
        )
        touched = [item for item, _s in good] + [item for item, _c, _t in bad] + refused
        events.broadcast_batch_changed(batch_id=batch.pk, item_ids=[item.pk for item in touched])
        events.broadcast_drafts_changed(
            user_ids=[batch.signer_id, *(item.draft.author_id for item in touched)],
            draft_ids=[item.draft_id for item in touched],
        )


def _checked_signature(
    item: BatchItem,
    document: bytes,
    result: SignResult,
    certificates: list[bytes],
    ca: bytes | None,
    blobs: BlobBatch,
) -> Signature:
    """The verified signature as an unsaved row; its blob is on its way to the store (BlobBatch)."""
    if item.draft.is_pdf and result.signed_document:
        verified = verify_pades(
            document=document, signed_pdf=result.signed_document, card_certificates=certificates, ca_pem=ca
        )
        blob, fmt = result.signed_document, Signature.Format.PADES
    elif result.signature:
        verified = verify_cades_detached(
            document=document, cms_der=result.signature, card_certificates=certificates, ca_pem=ca
        )
        blob, fmt = result.signature, Signature.Format.CADES
    else:
        raise SignatureInvalid(_("Der Konnektor hat keine Signatur geliefert."))
    return Signature(
        draft=item.draft,
        batch_item=item,
        format=fmt,
        sha256=blobs.put(blob),
        size=len(blob),
        document_version=item.document_version,
        document_sha256=item.document_sha256,
        signer_certificate=verified.signer_certificate,
    )


def _hand_to_outbox(draft: Draft) -> None:
    """KIMPORTAL_SIGNING_AUTO_SEND: signed letters go out through the outbox by themselves, after this call's
    commit (signing.services.send); otherwise they wait as "signiert – wartet auf Versand"."""
    if settings.KIMPORTAL_SIGNING_AUTO_SEND:
        enqueue_on_commit("signing.tasks.signing_send_signed", draft.pk)


def _item_failed(batch: SignatureBatch, item: BatchItem, code: int | None, text: StoredText, **details: Any) -> None:
    # Kept untranslated (kimportal.texts): the queue and the batch page show it in the reader's language.
    BatchItem.objects.filter(pk=item.pk).update(state=BatchItem.State.FAILED, code=code, text=text.stored)
    item.state = BatchItem.State.FAILED
    Draft.objects.filter(pk=item.draft_id).update(
        state=Draft.State.FAILED, last_error=text.stored, last_error_code=code, updated_at=timezone.now()
    )
    signing_audit(
        actor=None,
        action="signing.sign_failed",
        draft=item.draft,
        batch=batch.pk,
        code=code,
        text=text.stored,
        **details,
    )


# A batch nobody started after this long has lost its task (a worker that was busy starts it well before); a
# started batch whose heartbeat is older than HEARTBEAT_MISSED beats has lost its worker.
STALE_AFTER = timedelta(seconds=3700)
HEARTBEAT_MISSED = 6


def stale_q(now: Any = None) -> Q:
    """Active batches without a worker: started and silent, or never started for STALE_AFTER."""
    now = now or timezone.now()
    silent = now - timedelta(seconds=heartbeat_seconds() * HEARTBEAT_MISSED)
    return Q(state__in=SignatureBatch.ACTIVE_STATES) & (
        Q(started_at__isnull=False, heartbeat_at__lt=silent)
        | Q(started_at__lt=silent, heartbeat_at__isnull=True)
        | Q(started_at__isnull=True, created_at__lt=now - STALE_AFTER)
    )


INTERRUPTED = gettext_lazy("Der Signaturvorgang wurde unterbrochen. Bitte starten Sie ihn erneut.")
TOO_LONG = gettext_lazy(
    "Der Signaturvorgang hat zu lange gedauert und wurde beendet. Die nicht signierten Entwürfe sind wieder in "
    "der Liste; bitte starten Sie sie erneut, bei vielen Dokumenten in mehreren kleineren Vorgängen."
)

# The task's time limits (signing.tasks): the soft one ends the batch in its worker with TOO_LONG; the hard one
# kills the worker, and the recovery names the same reason for a batch that ran that long.
SOFT_TIME_LIMIT = 3600
TIME_LIMIT = 3660


def batches_recover_stale() -> int:
    """End batches whose worker is gone: their unsigned drafts go back to the queue with the reason, and the job
    at the Konnektor is stopped (the terminal would otherwise go on asking for the PIN of an ended batch)."""
    now = timezone.now()
    ended = []
    for batch in SignatureBatch.objects.filter(stale_q(now)).select_related("workplace"):
        # Its worker was alive (beating) until the soft limit: the time limit ended it, not a crash.
        ran_out = (
            batch.started_at is not None
            and batch.heartbeat_at is not None
            and batch.heartbeat_at >= batch.started_at + timedelta(seconds=SOFT_TIME_LIMIT)
        )
        if _finish(batch, code=None, text=lazy_stored(TOO_LONG if ran_out else INTERRUPTED)):
            ended.append(batch)
    # After every batch has ended (each StopSignature may wait for the client's ordinary timeout). A batch
    # without a job number had not sent SignDocument yet: nothing at the Konnektor asks for its PIN.
    for batch in ended:
        try:
            batch_job_stop(batch, why="worker gone")
        except Exception:  # the other batches' jobs are stopped all the same
            log.exception("StopSignature for the recovered signing batch %s failed", batch.pk)
    return len(ended)


def batch_end_if_stale(batch_id: int) -> bool:
    """Cancelling a batch whose worker is gone ends it at once (the physician need not wait for the recovery)."""
    batch = SignatureBatch.objects.filter(stale_q(), pk=batch_id).first()
    if batch is None:
        return False
    _finish(batch, code=None, text=lazy_stored(INTERRUPTED))
    return True


def batch_end_if_unstarted(batch_id: int) -> bool:
    """A cancelled batch no worker has started ends at once; its task, when it comes, finds it ended (batch_run
    starts only a batch still prepared, under the same row lock)."""
    with transaction.atomic():
        batch = (
            SignatureBatch.objects.select_for_update()
            .filter(pk=batch_id, state__in=SignatureBatch.ACTIVE_STATES, started_at__isnull=True)
            .first()
        )
        if batch is None:
            return False
        _finish(batch, code=None, text=StoredText([]))
    return True


def batch_end_unqueued(batch_id: int) -> None:
    """The batch's task could not be queued (the broker is down): it ends at once, its drafts go back."""
    _finish(
        SignatureBatch.objects.get(pk=batch_id),
        code=None,
        text=N_(
            "Der Signaturdienst ist im Moment nicht erreichbar. Die Entwürfe sind unverändert in der Liste; "
            "bitte versuchen Sie es später erneut."
        ),
    )


def _finish(batch: SignatureBatch, *, code: int | None, text: StoredText) -> bool:
    """The end of a batch: what was not signed goes back to the queue untouched (with the reason, if any). False
    when it had ended already. The text is kept untranslated (kimportal.texts), shown in the reader's language."""
    with transaction.atomic():
        current = SignatureBatch.objects.select_for_update().get(pk=batch.pk)
        if not current.is_active:
            return False  # already ended (a recovered batch whose worker came back late)
        cancelled = current.cancel_requested_at is not None
        pending = list(current.items.filter(state=BatchItem.State.PENDING).select_related("draft"))
        if cancelled:
            state, code, text = (
                SignatureBatch.State.CANCELLED,
                None,
                text or N_("Der Signaturvorgang wurde abgebrochen."),
            )
        elif text:
            state = SignatureBatch.State.FAILED
        else:
            state = SignatureBatch.State.DONE
        # A reason naming one draft's document (gone from the store) names it on that draft only: the others'
        # readers (another department, their KIS) may not see that document.
        reasons: dict[str, tuple[Stored, list[BatchItem]]] = {}
        for item in pending:
            reason = scoped_stored(text.stored, drafts={item.draft_id}, filenames=set())
            reasons.setdefault(json.dumps(reason, sort_keys=True), (reason, []))[1].append(item)
        for reason, items in reasons.values():
            BatchItem.objects.filter(pk__in=[i.pk for i in items]).update(
                state=BatchItem.State.NOT_SIGNED, code=code, text=reason
            )
            Draft.objects.filter(pk__in=[i.draft_id for i in items], state=Draft.State.SIGNING).update(
                state=Draft.State.DRAFT, last_error=reason, last_error_code=code, updated_at=timezone.now()
            )
        current.state, current.error_code, current.error_text = state, code, text.stored
        current.finished_at = timezone.now()
        current.save(update_fields=["state", "error_code", "error_text", "finished_at"])
        signing_audit(
            actor=None,
            action="signing.batch_finished",
            batch=current.pk,
            state=state,
            signed=current.signed_count,
            failed=current.failed_count,
            not_signed=len(pending),
            code=code,
            text=text.stored,
        )
        events.broadcast_batch_changed(batch_id=current.pk)
        events.broadcast_drafts_changed(
            user_ids=[current.signer_id, *(i.draft.author_id for i in pending)], draft_ids=[i.draft_id for i in pending]
        )
    return True
