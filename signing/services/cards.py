"""Managers map users to their eHBA and keep the list of workstations (WorkplaceId and card terminal)."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed, PortalError
from mailbox.permissions import is_manager
from signing.models import SignatureBatch, SignerCard, Workplace
from signing.services.audit import signing_audit
from signing.services.konnektor import batch_job_stop

log = logging.getLogger(__name__)

# ICCSN: 20 digits (ISO/IEC 7812, starting 80276 for German health cards).
ICCSN_RE = re.compile(r"^[0-9]{20}$")


def _require_manager(user: Any) -> None:
    if not is_manager(user):
        raise NotAllowed(_("Das darf nur die Leitung."))


@transaction.atomic
def signer_card_set(*, manager: Any, user: Any, telematik_id: str, iccsn: str) -> SignerCard:
    _require_manager(manager)
    telematik_id, iccsn = telematik_id.strip(), iccsn.strip().replace(" ", "")
    if not telematik_id and not iccsn:
        raise PortalError(_("Bitte Telematik-ID oder ICCSN des eHBA angeben."))
    if iccsn and not ICCSN_RE.fullmatch(iccsn):
        raise PortalError(_("Die ICCSN besteht aus 20 Ziffern."))
    # One eHBA, one person: a second mapping would run someone else's batches on this physician's card.
    same_card = Q(telematik_id=telematik_id) if telematik_id else Q(pk__in=[])
    if iccsn:
        same_card |= Q(iccsn=iccsn)
    holder = SignerCard.objects.filter(same_card).exclude(user=user).select_related("user").first()
    if holder is not None:
        raise PortalError(
            _("Dieser eHBA ist bereits %(name)s zugeordnet.")
            % {"name": holder.user.get_full_name() or holder.user.get_username()}
        )
    card, created = SignerCard.objects.select_for_update().get_or_create(
        user=user, defaults={"telematik_id": telematik_id, "iccsn": iccsn, "set_by": manager}
    )
    if not created and (card.telematik_id, card.iccsn) != (telematik_id, iccsn):
        _stop_running_jobs_on_commit(card)
    if not created:
        card.telematik_id, card.iccsn, card.set_by, card.updated_at = telematik_id, iccsn, manager, timezone.now()
        card.save()
    signing_audit(
        actor=manager,
        action="signing.card_set",
        user=user.pk,
        username=user.get_username(),
        telematik_id=telematik_id,
        iccsn=iccsn,
    )
    return card


@transaction.atomic
def signer_card_remove(*, manager: Any, card: SignerCard) -> None:
    _require_manager(manager)
    signing_audit(actor=manager, action="signing.card_removed", user=card.user_id, telematik_id=card.telematik_id)
    _stop_running_jobs_on_commit(card)
    card.delete()


def _stop_running_jobs_on_commit(card: SignerCard) -> None:
    """The physician's batch may be waiting for the PIN on the card just taken away (lost, someone who left): its
    job is stopped at the Konnektor, so the terminal asks no more; the worker then ends the batch (the mapping it
    started with is gone, signing.services.run) and uses nothing the card still answers."""
    user_id, context_card = card.user_id, SignerCard(user_id=card.user_id, konnektor_user_id=card.konnektor_user_id)

    def stop() -> None:
        running = SignatureBatch.objects.filter(signer_id=user_id, state__in=SignatureBatch.ACTIVE_STATES)
        for batch in running.select_related("workplace"):
            try:
                batch_job_stop(batch, why="eHBA mapping changed", card=context_card)
            except Exception:  # the mapping is changed (committed); the worker ends the batch all the same
                log.exception("StopSignature for signing batch %s after an eHBA mapping change failed", batch.pk)

    transaction.on_commit(stop)


@transaction.atomic
def workplace_save(
    *, manager: Any, workplace: Workplace | None, workplace_id: str, label: str, ct_id: str, is_active: bool
) -> Workplace:
    _require_manager(manager)
    clash = Workplace.objects.filter(workplace_id=workplace_id)
    if workplace is not None:
        clash = clash.exclude(pk=workplace.pk)
    if clash.exists():
        raise PortalError(_("Diese Arbeitsplatz-ID ist schon vergeben."))
    if workplace is None:
        workplace = Workplace(workplace_id=workplace_id, label=label, ct_id=ct_id, is_active=is_active)
    else:
        workplace.workplace_id, workplace.label, workplace.ct_id, workplace.is_active = (
            workplace_id,
            label,
            ct_id,
            is_active,
        )
    workplace.save()
    signing_audit(
        actor=manager, action="signing.workplace_saved", workplace=workplace.workplace_id, ct_id=ct_id, active=is_active
    )
    return workplace
