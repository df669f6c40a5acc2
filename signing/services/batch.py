"""Starting and cancelling a batch. The signing itself runs in a Celery task (signing.tasks), never in a request:
SignDocument blocks while the physician types the PIN at the card terminal."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from kombu.exceptions import OperationalError

from kimportal.errors import Conflict, NotAllowed, PortalError
from signing import events
from signing.models import BatchItem, Draft, SignatureBatch, SignerCard, Workplace
from signing.permissions import signing_mailbox_ids
from signing.services.audit import signing_audit
from signing.services.konnektor import batch_job_stop

log = logging.getLogger(__name__)

TASK_NAME = "signing.tasks.signing_batch_run"


@dataclass(frozen=True)
class Selected:
    """One draft as the physician saw it when pressing "Signieren": its version and document digest."""

    draft_id: int
    version: int
    sha256: str


class BatchRunning(Conflict):
    """A batch of the signer's still runs (`fresh`); `same_selection` when it signs exactly the drafts asked for."""

    def __init__(self, message: str, *, fresh: SignatureBatch, same_selection: bool = False) -> None:
        super().__init__(message, fresh=fresh)
        self.same_selection = same_selection


def request_id_for(draft: Draft) -> str:
    # Readable in the Konnektor's log and unique within the batch (one item per draft).
    return f"D{draft.pk}-V{draft.version}"


def _enqueue(batch: SignatureBatch) -> None:
    def send() -> None:
        if current_app.conf.task_always_eager:
            # Outside a worker nothing has imported the task modules yet (autodiscovery runs at worker start).
            current_app.loader.import_default_modules()
            current_app.tasks[TASK_NAME].apply(args=(batch.pk,), task_id=batch.task_id)
            return
        try:
            current_app.send_task(TASK_NAME, args=(batch.pk,), task_id=batch.task_id)
        except OperationalError:
            # The broker is down: no worker would ever run this batch, and its drafts would wait for the stale
            # recovery (an hour). It ends now; its page says why and the drafts are back in the queue.
            log.exception("signing batch %s could not be queued", batch.pk)
            from signing.services.run import batch_end_unqueued

            batch_end_unqueued(batch.pk)

    transaction.on_commit(send)


@transaction.atomic
def batch_create(*, signer: Any, workplace: Workplace, selected: list[Selected]) -> SignatureBatch:
    """Take the selected drafts out of the queue into a new batch and start its task after commit.

    Refused (nothing changes) when the user has no eHBA, a batch of theirs is still running, or any draft is
    not theirs to sign, no longer open, or changed since the page showed it."""
    if not selected:
        raise PortalError(_("Bitte wählen Sie mindestens einen Entwurf aus."))
    limit = settings.KIMPORTAL_SIGNING_MAX_BATCH
    if len(selected) > limit:
        raise PortalError(_("Höchstens %(limit)s Dokumente je Signaturvorgang.") % {"limit": limit})
    # The card row serialises the physician's batch starts: one card signs one batch at a time.
    card = SignerCard.objects.select_for_update().filter(user=signer).first()
    if card is None:
        raise NotAllowed(_("Ihnen ist kein eHBA zugeordnet. Ohne eHBA können Sie nicht signieren."))
    if not workplace.is_active:
        raise PortalError(_("Dieser Arbeitsplatz ist nicht mehr aktiv. Bitte wählen Sie Ihren Arbeitsplatz."))
    running = SignatureBatch.objects.filter(signer=signer, state__in=SignatureBatch.ACTIVE_STATES).first()
    if running is not None:
        signing = set(running.items.values_list("draft_id", "document_version", "document_sha256"))
        if signing == {(s.draft_id, s.version, s.sha256) for s in selected}:
            # The same form sent twice (a double click): the browser shows this answer, so it leads to that batch.
            raise BatchRunning(_("Diese Auswahl wird bereits signiert."), fresh=running, same_selection=True)
        raise BatchRunning(
            _("Es läuft bereits ein Signaturvorgang. Bitte warten Sie, bis er beendet ist."), fresh=running
        )
    wanted = {s.draft_id: s for s in selected}
    drafts = list(Draft.objects.select_for_update().filter(pk__in=wanted, signer=signer).order_by("created_at", "pk"))
    if len(drafts) != len(wanted):
        raise NotAllowed(_("Einige der gewählten Entwürfe können Sie nicht signieren."))
    # Chosen once is not allowed now: only for the departments the signer may still send from (an open tab of
    # someone who left, or a forged selection, signs nothing).
    allowed = signing_mailbox_ids(signer, has_card=True)
    if any(d.mailbox_id not in allowed for d in drafts):
        raise NotAllowed(
            _(
                "Einige der gewählten Entwürfe können Sie nicht (mehr) signieren: Im Absender-Postfach fehlt Ihnen "
                "die Mitgliedschaft mit der Rolle „Bearbeiten“ oder „Eigentümer“."
            )
        )
    # Taken back by its author (or the KIS) since the list was loaded: said as such, not as "being signed".
    withdrawn = [d for d in drafts if d.state == Draft.State.WITHDRAWN]
    if withdrawn:
        raise Conflict(
            _("Zurückgezogen: %(names)s. Bitte laden Sie die Liste neu.")
            % {"names": ", ".join(d.subject for d in withdrawn[:5])}
        )
    changed = [d for d in drafts if d.version != wanted[d.pk].version or d.sha256 != wanted[d.pk].sha256]
    if changed:
        raise Conflict(
            _("Geändert, seit Sie die Liste geladen haben: %(names)s. Bitte prüfen Sie die neue Fassung.")
            % {"names": ", ".join(d.subject for d in changed[:5])}
        )
    # A draft under review is signed only when approved at exactly the version the form carries: what is
    # approved is what gets signed (a change after the approval needs the approval again).
    unapproved = [
        d
        for d in drafts
        if d.review_state != Draft.Review.NONE
        and (d.review_state != Draft.Review.APPROVED or d.approved_version != wanted[d.pk].version)
    ]
    if unapproved:
        raise Conflict(
            _("Noch nicht freigegeben: %(names)s.") % {"names": ", ".join(d.subject for d in unapproved[:5])}
        )
    closed = [d for d in drafts if not d.is_open]
    if closed:
        raise Conflict(
            _("Wird schon signiert oder ist signiert: %(names)s.") % {"names": ", ".join(d.subject for d in closed[:5])}
        )
    batch = SignatureBatch.objects.create(
        signer=signer, workplace=workplace, total=len(drafts), task_id=str(uuid.uuid4())
    )
    BatchItem.objects.bulk_create(
        BatchItem(
            batch=batch,
            draft=d,
            position=n,
            request_id=request_id_for(d),
            document_version=d.version,
            document_sha256=d.sha256,
        )
        for n, d in enumerate(drafts)
    )
    Draft.objects.filter(pk__in=[d.pk for d in drafts]).update(
        state=Draft.State.SIGNING, last_error="", last_error_code=None
    )
    signing_audit(
        actor=signer,
        action="signing.batch_started",
        batch=batch.pk,
        workplace=workplace.workplace_id,
        drafts=[d.pk for d in drafts],
    )
    _enqueue(batch)
    events.broadcast_drafts_changed(
        user_ids=[signer.pk, *(d.author_id for d in drafts)], draft_ids=[d.pk for d in drafts]
    )
    return batch


def batch_cancel(*, user: Any, batch: SignatureBatch) -> SignatureBatch:
    """Ask the running batch to stop: recorded at once; when the Konnektor already waits for the PIN (or signs),
    StopSignature ends that call (bounded by the client's ordinary timeout, never SignDocument's)."""
    with transaction.atomic():
        current = SignatureBatch.objects.select_for_update().get(pk=batch.pk)
        if current.signer_id != user.pk:
            raise NotAllowed(_("Nur wer den Signaturvorgang gestartet hat, kann ihn abbrechen."))
        if not current.is_active:
            return current
        if current.cancel_requested_at is None:
            current.cancel_requested_at = timezone.now()
            current.save(update_fields=["cancel_requested_at"])
            signing_audit(actor=user, action="signing.batch_cancel_requested", batch=current.pk)
            events.broadcast_batch_changed(batch_id=current.pk)
    batch_job_stop(current, why="cancel")
    from signing.services.run import batch_end_if_stale, batch_end_if_unstarted

    # A batch no worker has taken yet (queued behind another physician's PIN entry) and a batch whose worker died
    # end now: the physician can start again at once.
    if batch_end_if_unstarted(current.pk) or batch_end_if_stale(current.pk):
        current.refresh_from_db()
    return current
