"""Komfortsignatur: activating it (one PIN entry at the card terminal, run by a Celery task like a batch),
reading what is left of it, ending it, and a batch's use of it (signing.services.run).

Rules (gemSpec_Kon 4.1.8.1.5, gemILF_PS 4.4.2; docs/signing.md):
- only with a secured connection to the Konnektor ("Login" or "Zertifikat"), never "plain";
- every activation has its own fresh UUID as Context.UserId, stored and never reused;
- one live activation per physician, bound to their eHBA (the card handle the PIN unlocked) and a workstation;
- it ends when the physician ends it, logs out, signs at another workstation, pulls or changes the card, or when
  the Konnektor's count or time runs out; each end also closes the session at the Konnektor where it can;
- every activation, end and use is in the audit trail (gemILF_PS A_21231: each comfort job with user and time).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.jobs import enqueue_on_commit
from kimportal.texts import N_, StoredText, join
from konnektor import CallContext, Card, KonnektorClient, KonnektorError, SignatureMode
from signing.models import ComfortActivation, ComfortUse, SignatureBatch, SignerCard, Workplace
from signing.services.audit import signing_audit
from signing.services.hba import BatchStopped, find_signer_card, pin_fault_text
from signing.services.konnektor import call_context, konnektor_client
from signing.texts import code_stored, konnektor_stored, lazy_stored

log = logging.getLogger(__name__)

End = ComfortActivation.End
State = ComfortActivation.State

ACTIVATE_TASK = "signing.tasks.signing_comfort_activate"
DEACTIVATE_TASK = "signing.tasks.signing_comfort_deactivate"

# The connection modes with which the Konnektor offers the Komfortsignatur (SAK_COMFORT_SIGNATURE: SOAP1/SOAP2).
COMFORT_MODES = ("basic", "cert")

PLAIN_REFUSED = gettext_lazy(
    "Die Komfortsignatur ist nur mit einer gesicherten Verbindung zum Konnektor möglich (Login oder Zertifikat). "
    "Das Portal ist ungesichert mit dem Konnektor verbunden; bitte wenden Sie sich an Ihre Administration. "
    "Signieren mit PIN-Eingabe je Signaturvorgang ist weiterhin möglich."
)

# Faults that say the card the activation unlocked is gone (pulled, reset, another handle).
CARD_GONE = (4008, 4101, 4131, 4146)
# SignDocument under an activation's UserId whose session the Konnektor has ended: count or time exhausted
# (4271), or no session any more (4278: deactivated, card reset).
COMFORT_ENDED = (4271, 4278)

END_TEXTS = {
    End.DEACTIVATED: gettext_lazy("Die Komfortsignatur wurde beendet."),
    End.LOGOUT: gettext_lazy("Die Komfortsignatur wurde bei der Abmeldung beendet."),
    End.WORKPLACE: gettext_lazy(
        "Sie signieren an einem anderen Arbeitsplatz als dem, an dem Sie die Komfortsignatur aktiviert haben; "
        "sie wurde deshalb beendet."
    ),
    End.CARD: gettext_lazy("Ihr eHBA wurde gezogen oder gewechselt; die Komfortsignatur ist damit beendet."),
    End.EXPIRED: gettext_lazy("Die Komfortsignatur ist abgelaufen (Zeit ausgeschöpft)."),
    End.EXHAUSTED: gettext_lazy("Die Komfortsignatur ist aufgebraucht (keine Signaturen mehr übrig)."),
    End.CANCELLED: gettext_lazy("Die Aktivierung der Komfortsignatur wurde abgebrochen."),
    End.INTERRUPTED: gettext_lazy("Die Aktivierung der Komfortsignatur wurde unterbrochen."),
    End.ACCOUNT: gettext_lazy("Ihr Konto oder Ihre eHBA-Zuordnung hat sich geändert; die Komfortsignatur ist beendet."),
    End.KONNEKTOR: gettext_lazy("Der Konnektor hat die Komfortsignatur beendet."),
}

FALLBACK_HINT = gettext_lazy("Für die übrigen Dokumente geben Sie bitte die PIN am Kartenterminal ein.")


def comfort_available() -> bool:
    """The Komfortsignatur is offered only with a secured connection to the Konnektor."""
    return settings.KIMPORTAL_KONNEKTOR_MODE in COMFORT_MODES


def end_stored(activation: ComfortActivation) -> StoredText:
    """Why an activation is no longer live, kept untranslated (kimportal.texts)."""
    if activation.state == State.FAILED:
        return StoredText.of(activation.error_text) or N_("Die Komfortsignatur konnte nicht aktiviert werden.")
    if activation.end_reason:
        return lazy_stored(END_TEXTS[End(activation.end_reason)])
    return StoredText([])


def end_text(activation: ComfortActivation) -> str:
    """Why an activation is no longer live, for the physician (in the active language)."""
    return str(end_stored(activation))


def comfort_context(activation: ComfortActivation) -> CallContext:
    """The activation's call context: its workstation and its own UserId (never the physician's stable one)."""
    base = call_context(workplace=activation.workplace, card=None)
    return dataclasses.replace(base, user_id=str(activation.user_id))


# --- reads (always from the user) ---------------------------------------------------------------------------


def activations_for_user(user: Any) -> QuerySet[ComfortActivation]:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return ComfortActivation.objects.none()
    return ComfortActivation.objects.filter(signer_id=user.pk).select_related("workplace")


def activation_get_for_user(user: Any, pk: int) -> ComfortActivation:
    """Someone else's activation is not found (404), like a foreign draft."""
    return activations_for_user(user).get(pk=pk)


def activation_history_for_user(user: Any, limit: int = 10) -> QuerySet[ComfortActivation]:
    """The latest activations with the number of documents each signed without a PIN."""
    return activations_for_user(user).annotate(signed=Coalesce(Sum("uses__signed_count"), 0))[:limit]


def activation_live_for_user(user: Any) -> ComfortActivation | None:
    """The user's activation that is being activated or active (one at most); a stuck activation ends first."""
    live = activations_for_user(user).filter(state__in=ComfortActivation.LIVE_STATES).first()
    if live is not None and _end_if_stale(live):
        return None
    return live


def _stale_before() -> Any:
    # ActivateComfortSignature waits for the PIN like SignDocument; a task silent far beyond that has died.
    return timezone.now() - timedelta(seconds=settings.KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT + 120)


def _end_if_stale(activation: ComfortActivation) -> bool:
    if activation.state != State.ACTIVATING or activation.created_at >= _stale_before():
        return False
    return _end(activation, End.INTERRUPTED, actor=None, failed=True, text=lazy_stored(END_TEXTS[End.INTERRUPTED]))


# --- activation ---------------------------------------------------------------------------------------------


def comfort_activate(*, user: Any, workplace: Workplace, session_key: str = "") -> ComfortActivation:
    """Ask for a new activation at ``workplace``; its task asks for the PIN at the card terminal after commit.

    Refused (nothing saved) in "plain" mode, without an eHBA, at an inactive workstation, while another activation
    of the physician is live or a batch of theirs runs (the terminal would be busy)."""
    if not comfort_available():
        raise NotAllowed(str(PLAIN_REFUSED))
    if not workplace.is_active:
        raise PortalError(_("Dieser Arbeitsplatz ist nicht mehr aktiv. Bitte wählen Sie Ihren Arbeitsplatz."))
    activation_live_for_user(user)  # ends a stuck activation first (its own transaction)
    with transaction.atomic():
        # The card row serialises the physician's activations and batch starts (as in batch_create).
        card = SignerCard.objects.select_for_update().filter(user_id=user.pk).first()
        if card is None:
            raise NotAllowed(_("Ihnen ist kein eHBA zugeordnet. Ohne eHBA können Sie nicht signieren."))
        live = ComfortActivation.objects.filter(signer_id=user.pk, state__in=ComfortActivation.LIVE_STATES).first()
        if live is not None:
            raise Conflict(
                _("Die Komfortsignatur ist bereits aktiv oder wird gerade aktiviert (Arbeitsplatz %(label)s).")
                % {"label": live.workplace.label},
                fresh=live,
            )
        if SignatureBatch.objects.filter(signer_id=user.pk, state__in=SignatureBatch.ACTIVE_STATES).exists():
            raise Conflict(_("Es läuft gerade ein Signaturvorgang. Bitte aktivieren Sie die Komfortsignatur danach."))
        try:
            with transaction.atomic():
                activation = ComfortActivation.objects.create(
                    signer=user,
                    workplace=workplace,
                    user_id=uuid.uuid4(),
                    task_id=str(uuid.uuid4()),
                    session_key=session_key or "",
                )
        except IntegrityError as exc:  # the partial unique index: another tab was quicker
            raise Conflict(_("Die Komfortsignatur wird bereits in einem anderen Fenster aktiviert.")) from exc
        signing_audit(
            actor=user,
            action="signing.comfort_requested",
            activation=activation.pk,
            workplace=workplace.workplace_id,
        )
        enqueue_on_commit(ACTIVATE_TASK, activation.pk)
    return activation


def comfort_activation_run(activation_id: int) -> None:
    """The task: the physician's card at the workstation, its PIN state, ActivateComfortSignature (the PIN at the
    terminal), then GetSignatureMode for what the session allows. A failure ends the activation with the reason."""
    with transaction.atomic():
        activation = (
            ComfortActivation.objects.select_for_update().select_related("workplace").filter(pk=activation_id).first()
        )
        # A redelivered task never asks for the PIN twice: checked_at marks the start.
        if activation is None or activation.state != State.ACTIVATING or activation.checked_at is not None:
            return
        activation.checked_at = timezone.now()
        activation.save(update_fields=["checked_at"])
    client = konnektor_client()
    try:
        _activation_run(client, activation)
    finally:
        client.close()


def _activation_run(client: KonnektorClient, activation: ComfortActivation) -> None:
    ctx = comfort_context(activation)
    try:
        if not get_user_model().objects.filter(pk=activation.signer_id, is_active=True).exists():
            raise BatchStopped(None, N_("Das Konto ist deaktiviert."))
        mapping = SignerCard.objects.filter(user_id=activation.signer_id).first()
        if mapping is None:
            raise BatchStopped(None, N_("Ihnen ist kein eHBA mehr zugeordnet."))
        client.discover()
        card = find_signer_card(client, ctx, mapping)
        ComfortActivation.objects.filter(pk=activation.pk).update(
            card_handle=card.card_handle, card_iccsn=card.iccsn or ""
        )
        pin = client.get_pin_status(ctx, card.card_handle, pin_ref="PIN.QES")
        if pin.status == "TRANSPORT_PIN":
            raise BatchStopped(4065, code_stored(4065))
        if pin.status == "BLOCKED":
            raise BatchStopped(4063, code_stored(4063))
        try:
            client.activate_comfort_signature(ctx, card.card_handle)
        except KonnektorError as exc:
            raise BatchStopped(exc.code, pin_fault_text(client, ctx, card.card_handle, exc)) from exc
        mode = _signature_mode(client, ctx, card.card_handle)
    except BatchStopped as stop:
        _failed(activation, stop.code, stop.text)
        return
    except KonnektorError as exc:
        _failed(activation, exc.code, konnektor_stored(exc.code, exc.text))
        return
    except Exception:
        log.exception("Komfortsignatur activation %s failed", activation.pk)
        _failed(activation, None, N_("Interner Fehler beim Aktivieren der Komfortsignatur."))
        return
    with transaction.atomic():
        current = ComfortActivation.objects.select_for_update().get(pk=activation.pk)
        still_wanted = current.state == State.ACTIVATING
        if still_wanted:
            current.state = State.ACTIVE
            current.activated_at = timezone.now()
            current.card_handle, current.card_iccsn = card.card_handle, card.iccsn or ""
            _apply_mode(current, mode)
            current.save()
            signing_audit(
                actor=current.signer,
                action="signing.comfort_activated",
                activation=current.pk,
                workplace=activation.workplace.workplace_id,
                card=current.card_iccsn,
                remaining=current.remaining_count,
                valid_until=current.valid_until.isoformat() if current.valid_until else None,
            )
    if not still_wanted:
        # Ended (cancelled, logged out) while the PIN was asked for: the fresh session closes at once.
        _konnektor_deactivate(client, ctx, card.card_handle, activation.pk)


def _failed(activation: ComfortActivation, code: int | None, text: StoredText) -> None:
    with transaction.atomic():
        current = ComfortActivation.objects.select_for_update().get(pk=activation.pk)
        if current.state != State.ACTIVATING:
            return
        # Kept untranslated (kimportal.texts): the comfort page shows it in the reader's language.
        current.state, current.error_code, current.error_text = State.FAILED, code, text.stored
        current.ended_at = timezone.now()
        current.save(update_fields=["state", "error_code", "error_text", "ended_at"])
        signing_audit(
            actor=current.signer, action="signing.comfort_failed", activation=current.pk, code=code, text=text.stored
        )


def _signature_mode(client: KonnektorClient, ctx: CallContext, card_handle: str) -> SignatureMode | None:
    try:
        return client.get_signature_mode(ctx, card_handle)
    except KonnektorError as exc:
        log.info("GetSignatureMode: %s", exc)
        return None


def _apply_mode(activation: ComfortActivation, mode: SignatureMode | None) -> None:
    if mode is None:
        return
    activation.remaining_count = mode.remaining_count
    activation.valid_until = mode.valid_until
    activation.checked_at = timezone.now()


# --- reading what is left, ending ---------------------------------------------------------------------------


def _reason_for_lost_session(activation: ComfortActivation, mode: SignatureMode | None) -> str:
    """Why the Konnektor no longer has the session: count, time, or something else."""
    now = timezone.now()
    if mode is not None and mode.remaining_count == 0:
        return End.EXHAUSTED
    if mode is not None and mode.valid_until is not None and mode.valid_until <= now:
        return End.EXPIRED
    if activation.valid_until is not None and activation.valid_until <= now + timedelta(seconds=1):
        return End.EXPIRED
    if activation.remaining_count == 0:
        return End.EXHAUSTED
    return End.KONNEKTOR


def comfort_refresh(activation: ComfortActivation) -> str:
    """GetSignatureMode for an active activation: what is left, or its end (count, time, card pulled, mapping
    changed). Returns a German warning when the Konnektor could not be asked (the activation stays as it was)."""
    if activation.state != State.ACTIVE:
        return ""
    mapping = SignerCard.objects.filter(user_id=activation.signer_id).first()
    if mapping is None or (mapping.iccsn and activation.card_iccsn and mapping.iccsn != activation.card_iccsn):
        comfort_end(activation, End.ACCOUNT, actor=None)
        return ""
    client = konnektor_client()
    ctx = comfort_context(activation)
    try:
        mode = client.get_signature_mode(ctx, activation.card_handle)
    except KonnektorError as exc:
        if exc.code in CARD_GONE:
            _end(activation, End.CARD, actor=None, text=konnektor_stored(exc.code, exc.text))
            return ""
        return _("Der Stand der Komfortsignatur konnte nicht abgefragt werden: %(text)s") % {"text": exc.text}
    finally:
        client.close()
    if not mode.comfort_active or mode.remaining_count == 0:
        _end(activation, _reason_for_lost_session(activation, mode), actor=None)
        return ""
    ComfortActivation.objects.filter(pk=activation.pk, state=State.ACTIVE).update(
        remaining_count=mode.remaining_count, valid_until=mode.valid_until, checked_at=timezone.now()
    )
    activation.refresh_from_db()
    return ""


def _end(
    activation: ComfortActivation, reason: str, *, actor: Any, failed: bool = False, text: StoredText | None = None
) -> bool:
    """Mark a live activation ended (once; audited). True when this call ended it."""
    with transaction.atomic():
        current = ComfortActivation.objects.select_for_update().get(pk=activation.pk)
        if not current.is_live:
            activation.refresh_from_db()
            return False
        was = current.state
        current.state = State.FAILED if failed else State.ENDED
        current.end_reason = reason
        current.ended_at = timezone.now()
        if text:
            current.error_text = text.stored
        current.save(update_fields=["state", "end_reason", "ended_at", "error_text"])
        signing_audit(
            actor=actor,
            action="signing.comfort_ended",
            activation=current.pk,
            signer=current.signer_id,
            reason=reason,
            was=was,
            remaining=current.remaining_count,
        )
    activation.refresh_from_db()
    return True


def comfort_end(activation: ComfortActivation, reason: str, *, actor: Any, at_konnektor: bool = True) -> str:
    """End the activation in the portal (at once, so it is never used again), then at the Konnektor. Returns a
    German warning when the Konnektor could not be told (its own timer still ends the session)."""
    if not _end(activation, reason, actor=actor):
        return ""
    if not at_konnektor or not activation.card_handle or activation.activated_at is None:
        return ""  # still waiting for the PIN: the task closes the session when ActivateComfortSignature returns
    client = konnektor_client()
    try:
        return _konnektor_deactivate(client, comfort_context(activation), activation.card_handle, activation.pk)
    finally:
        client.close()


def _konnektor_deactivate(client: KonnektorClient, ctx: CallContext, card_handle: str, activation_id: int) -> str:
    try:
        client.deactivate_comfort_signature(ctx, [card_handle])
    except KonnektorError as exc:
        if exc.code in CARD_GONE:
            return ""  # the card is gone: so is its session
        log.warning("DeactivateComfortSignature for activation %s: %s", activation_id, exc)
        signing_audit(
            actor=None,
            action="signing.comfort_konnektor_failed",
            activation=activation_id,
            code=exc.code,
            text=konnektor_stored(exc.code, exc.text).stored,
        )
        return _(
            "Der Konnektor konnte die Komfortsignatur nicht beenden (%(text)s). Im Portal wird sie nicht mehr "
            "verwendet; am Konnektor endet sie spätestens mit ihrer Zeit, sofort durch Ziehen des eHBA."
        ) % {"text": exc.text}
    return ""


def comfort_deactivate(*, user: Any, activation: ComfortActivation) -> str:
    """The physician's "Beenden" (also while the PIN is asked for: then it is a cancel). Only their own."""
    if activation.signer_id != user.pk:
        raise NotAllowed(_("Nur wer die Komfortsignatur aktiviert hat, kann sie beenden."))
    reason = End.CANCELLED if activation.state == State.ACTIVATING else End.DEACTIVATED
    return comfort_end(activation, reason, actor=user)


def comfort_end_on_logout(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """user_logged_out (also the idle sign-out): the physician's live activation ends in the portal now; the
    Konnektor is told by a task (logging out never waits for the Konnektor)."""
    if user is None or getattr(user, "pk", None) is None:
        return
    for activation in ComfortActivation.objects.filter(signer_id=user.pk, state__in=ComfortActivation.LIVE_STATES):
        if _end(activation, End.LOGOUT, actor=user) and activation.activated_at is not None:
            with transaction.atomic():
                enqueue_on_commit(DEACTIVATE_TASK, activation.pk)


# The sweep asks the Konnektor about an active activation at most this often (seconds).
SWEEP_REFRESH_AFTER = 50


def _signer_still_signed_in(activation: ComfortActivation) -> bool:
    """Is the physician still an active user, and does the sign-in session that asked for the activation (when
    it is still there) still authenticate them? A password change ends the other sessions at their next request
    (Django's session hash), a deactivation every session — but their rows live on until they expire, and with
    them the activation: not so."""
    from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.models import Session

    signer = get_user_model().objects.filter(pk=activation.signer_id).first()
    if signer is None or not signer.is_active:
        return False
    if not activation.session_key:
        return True
    session = Session.objects.filter(session_key=activation.session_key).first()
    if session is None:
        return True  # gone: ended as a logout (the next check)
    data = session.get_decoded()
    if str(data.get(SESSION_KEY, "")) != str(signer.pk):
        return False
    stored = str(data.get(HASH_SESSION_KEY, ""))
    # As django.contrib.auth.get_user: the hash under the current secret key or one of its fallbacks.
    hash_with: Any = getattr(signer, "_get_session_auth_hash")  # noqa: B009  # Django's own, not in its stubs
    current = [signer.get_session_auth_hash()] + [hash_with(secret=key) for key in settings.SECRET_KEY_FALLBACKS]
    return any(constant_time_compare(stored, value) for value in current)


def comfort_sweep() -> int:
    """With the beat's stale-batch recovery (every minute): end what nobody ended — activations whose sign-in
    session is gone without a logout (browser closed, idle beyond the limit: the session row expires), whose time
    is up, whose card was pulled (GetSignatureMode), or whose activation task died. Returns how many ended."""
    from django.contrib.sessions.models import Session

    now = timezone.now()
    ended = 0
    konnektor_reachable = True
    for activation in ComfortActivation.objects.filter(state__in=ComfortActivation.LIVE_STATES).select_related(
        "workplace"
    ):
        if _end_if_stale(activation):
            ended += 1
        elif not _signer_still_signed_in(activation):
            # Deactivated, or the password changed (elsewhere: the session no longer authenticates them).
            if _end(activation, End.ACCOUNT, actor=None):
                ended += 1
                if activation.activated_at is not None:
                    enqueue_on_commit(DEACTIVATE_TASK, activation.pk)
        elif (
            activation.session_key
            and not Session.objects.filter(session_key=activation.session_key, expire_date__gt=now).exists()
        ):
            if _end(activation, End.LOGOUT, actor=None):
                ended += 1
                if activation.activated_at is not None:
                    enqueue_on_commit(DEACTIVATE_TASK, activation.pk)
        elif activation.state == State.ACTIVE and activation.valid_until is not None and activation.valid_until <= now:
            ended += int(_end(activation, End.EXPIRED, actor=None))
        elif activation.state == State.ACTIVE and konnektor_reachable:
            # A pulled card (no CETP events here): noticed within a minute, not only at the next batch.
            if activation.checked_at is None or (now - activation.checked_at).total_seconds() >= SWEEP_REFRESH_AFTER:
                try:
                    warning = comfort_refresh(activation)
                except Exception:  # the batch recovery after this sweep must run all the same
                    log.exception("Komfortsignatur sweep: activation %s", activation.pk)
                    warning = "error"
                if warning:
                    konnektor_reachable = False  # not asked again in this sweep (timeouts would pile up)
                ended += int(not activation.is_live)
    return ended


def comfort_konnektor_deactivate(activation_id: int) -> None:
    """The task after a logout: DeactivateComfortSignature for an ended activation's card."""
    activation = ComfortActivation.objects.select_related("workplace").filter(pk=activation_id).first()
    if activation is None or activation.is_live or not activation.card_handle:
        return
    client = konnektor_client()
    try:
        _konnektor_deactivate(client, comfort_context(activation), activation.card_handle, activation.pk)
    finally:
        client.close()


# --- a batch's use ------------------------------------------------------------------------------------------


@dataclass
class ComfortSession:
    """A batch signing with an activation: its context (the activation's UserId) and the ComfortUse row."""

    activation: ComfortActivation
    use: ComfortUse
    ctx: CallContext
    card_handle: str


def comfort_for_batch(client: KonnektorClient, batch: SignatureBatch, card: Card) -> ComfortSession | None:
    """The signer's active activation if this batch may use it: same workstation, same card (handle), still open
    at the Konnektor with signatures left. Otherwise it ends here with the reason, and the batch page says why
    the PIN is asked for after all (a ComfortUse with its fallback text)."""
    activation = (
        ComfortActivation.objects.select_related("workplace")
        .filter(signer_id=batch.signer_id, state=State.ACTIVE)
        .first()
    )
    if activation is None:
        return None
    use = ComfortUse.objects.create(batch=batch, activation=activation)
    session = ComfortSession(activation, use, comfort_context(activation), card.card_handle)
    if not comfort_available():
        comfort_end(activation, End.KONNEKTOR, actor=None)
        comfort_fallback(session, lazy_stored(PLAIN_REFUSED))
        return None
    if activation.workplace_id != batch.workplace_id:
        _end_at_konnektor_from_worker(client, activation, End.WORKPLACE)
        comfort_fallback(session, lazy_stored(END_TEXTS[End.WORKPLACE]))
        return None
    if activation.card_handle != card.card_handle or (
        activation.card_iccsn and card.iccsn and activation.card_iccsn != card.iccsn
    ):
        # Another card (or the same one pulled and inserted again): the old card's session closes too, if any.
        _end_at_konnektor_from_worker(client, activation, End.CARD)
        comfort_fallback(session, lazy_stored(END_TEXTS[End.CARD]))
        return None
    signing_audit(
        actor=None,
        action="signing.comfort_batch",
        activation=activation.pk,
        batch=batch.pk,
        signer=batch.signer_id,
        documents=batch.total,
    )
    return session


def _end_at_konnektor_from_worker(client: KonnektorClient, activation: ComfortActivation, reason: str) -> None:
    if _end(activation, reason, actor=None) and activation.card_handle:
        _konnektor_deactivate(client, comfort_context(activation), activation.card_handle, activation.pk)


def comfort_before_call(client: KonnektorClient, session: ComfortSession) -> int | None:
    """How many signatures the session still allows now (GetSignatureMode; gemILF_PS A_21529: check before
    signing), or None when it is over — then it has ended and the batch falls back to the PIN."""
    activation = session.activation
    activation.refresh_from_db()
    if activation.state != State.ACTIVE:  # ended meanwhile (Beenden, logout in another tab)
        comfort_fallback(session, end_stored(activation) or lazy_stored(END_TEXTS[End.DEACTIVATED]))
        return None
    try:
        mode = client.get_signature_mode(session.ctx, session.card_handle)
    except KonnektorError as exc:
        if exc.code in CARD_GONE:
            _end(activation, End.CARD, actor=None, text=konnektor_stored(exc.code, exc.text))
            comfort_fallback(session, lazy_stored(END_TEXTS[End.CARD]))
            return None
        raise
    now = timezone.now()
    if not mode.comfort_active or mode.remaining_count == 0:
        reason = _reason_for_lost_session(activation, mode)
        _end(activation, reason, actor=None)
        comfort_fallback(session, lazy_stored(END_TEXTS[End(reason)]))
        return None
    ComfortActivation.objects.filter(pk=activation.pk, state=State.ACTIVE).update(
        remaining_count=mode.remaining_count, valid_until=mode.valid_until, checked_at=now
    )
    activation.remaining_count, activation.valid_until = mode.remaining_count, mode.valid_until
    return mode.remaining_count if mode.remaining_count is not None else 250


def comfort_after_call(session: ComfortSession, *, job_number: str, documents: int, signed: int) -> None:
    """One SignDocument with the session: counted on the batch's use and the activation, and audited."""
    activation = session.activation
    left = None if activation.remaining_count is None else max(0, activation.remaining_count - documents)
    ComfortActivation.objects.filter(pk=activation.pk, state=State.ACTIVE).update(remaining_count=left)
    activation.remaining_count = left
    ComfortUse.objects.filter(pk=session.use.pk).update(signed_count=session.use.signed_count + signed)
    session.use.signed_count += signed
    signing_audit(
        actor=None,
        action="signing.comfort_used",
        activation=activation.pk,
        batch=session.use.batch_id,
        signer=activation.signer_id,
        job_number=job_number,
        documents=documents,
        signed=signed,
        remaining=left,
    )


def comfort_call_ended(session: ComfortSession, exc: KonnektorError | None) -> None:
    """SignDocument said the comfort mode ended during the call (4271) or the card is gone: the activation ends,
    the documents of that call are asked for again with the PIN."""
    activation = session.activation
    activation.refresh_from_db()
    reason: str
    if exc is not None and exc.code in CARD_GONE:
        reason = End.CARD
    else:
        reason = _reason_for_lost_session(activation, None)
        if reason == End.KONNEKTOR and (exc is None or exc.code == 4271):
            reason = End.EXHAUSTED  # 4271: count or time; the time is not up, so the count is
    _end(activation, reason, actor=None, text=konnektor_stored(exc.code, exc.text) if exc is not None else None)
    comfort_fallback(session, lazy_stored(END_TEXTS[End(reason)]))


def comfort_fallback(session: ComfortSession, reason: StoredText) -> None:
    """From now on the batch asks for the PIN; its page says why (role=alert) above the PIN prompt (kept
    untranslated, kimportal.texts: shown in the reader's language)."""
    text = join(reason, lazy_stored(FALLBACK_HINT)).stored
    now = timezone.now()
    ComfortUse.objects.filter(pk=session.use.pk, fallback_at__isnull=True).update(fallback_text=text, fallback_at=now)
    session.use.fallback_text, session.use.fallback_at = text, now
    signing_audit(
        actor=None,
        action="signing.comfort_fallback",
        activation=session.activation.pk,
        batch=session.use.batch_id,
        signer=session.activation.signer_id,
        text=reason.stored,
    )


def comfort_after_batch(client: KonnektorClient, session: ComfortSession) -> None:
    """What is left after the batch, as the Konnektor says (the page shows it)."""
    activation = session.activation
    activation.refresh_from_db()
    if activation.state != State.ACTIVE:
        return
    mode = _signature_mode(client, session.ctx, session.card_handle)
    if mode is None:
        return
    if not mode.comfort_active or mode.remaining_count == 0:
        _end(activation, _reason_for_lost_session(activation, mode), actor=None)
        return
    ComfortActivation.objects.filter(pk=activation.pk, state=State.ACTIVE).update(
        remaining_count=mode.remaining_count, valid_until=mode.valid_until, checked_at=timezone.now()
    )
