"""Absences and substitutes: during an absence new assignments go to the substitute, locks are freed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from kimportal.errors import PortalError
from kimportal.jobs import enqueue_on_commit
from mailbox.models import Absence
from mailbox.services.audit import audit_record
from mailbox.services.claims import claims_release_all


@transaction.atomic
def absence_create(*, user: Any, substitute: Any, starts_at: datetime, ends_at: datetime, actor: Any = None) -> Absence:
    """The user's absence; `actor` is a manager entering it on the user's behalf (the audit names who did it)."""
    if substitute.pk == user.pk:
        raise PortalError(_("Sie können sich nicht selbst vertreten."))
    if ends_at <= starts_at:
        raise PortalError(_("Das Ende der Abwesenheit muss nach dem Beginn liegen."))
    # An absence already over changes nothing and would show nowhere (the pages list what is still to come).
    if ends_at <= timezone.now():
        raise PortalError(_("Das Ende der Abwesenheit liegt in der Vergangenheit."))
    # The person's row is the lock for their absences: two saves at once (two tabs, or the person and a manager)
    # each check for an overlap and then insert; the second waits here until the first has committed, so it sees
    # the first's absence. NO KEY: rows that merely refer to the person (audit, claims) need not wait for it.
    get_user_model().objects.select_for_update(no_key=True).get(pk=user.pk)
    overlapping = (
        Absence.objects.filter(user=user, starts_at__lt=ends_at, ends_at__gt=starts_at).order_by("starts_at").first()
    )
    if overlapping is not None:
        raise PortalError(
            _("Für diese Zeit ist bereits eine Abwesenheit eingetragen (%(start)s bis %(end)s).")
            % {"start": _when(overlapping.starts_at), "end": _when(overlapping.ends_at)}
        )
    absence = Absence.objects.create(user=user, substitute=substitute, starts_at=starts_at, ends_at=ends_at)
    audit_record(
        actor=actor or user,
        action="absence.created",
        user=user.pk,
        substitute=substitute.pk,
        starts_at=starts_at.isoformat(),
        ends_at=ends_at.isoformat(),
    )
    if starts_at <= timezone.now():
        transaction.on_commit(lambda: absence_begin(absence_id=absence.pk))
    else:
        enqueue_on_commit("mailbox.tasks.mailbox_absence_begin", absence.pk, eta=starts_at)
    return absence


def _when(moment: datetime) -> str:
    return date_format(timezone.localtime(moment), "d.m.Y H:i")


def absence_begin(*, absence_id: int) -> int:
    """Release every lock the absent user still holds."""
    absence = Absence.objects.select_related("user").filter(pk=absence_id).first()
    if absence is None or not (absence.starts_at <= timezone.now() < absence.ends_at):
        return 0
    return claims_release_all(user=absence.user, reason="absence")


@transaction.atomic
def absence_end(*, user: Any, absence_id: int, actor: Any = None) -> None:
    absence = Absence.objects.get(pk=absence_id, user=user)
    now = timezone.now()
    if absence.ends_at <= now:
        # Already over (a page opened during it, pressed later): ending it "now" would stretch it instead.
        return
    if absence.starts_at >= now:
        absence.delete()
    else:
        Absence.objects.filter(pk=absence.pk).update(ends_at=now)
    audit_record(actor=actor or user, action="absence.ended", absence=absence_id, user=user.pk)
