"""The mailboxes' service level: messages nobody claimed within the SLA are notified to the owners, once each."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed, PortalError
from mailbox.models import Mailbox, Message, Notification
from mailbox.permissions import is_manager
from mailbox.selectors.dashboard import overdue_q
from mailbox.selectors.mailboxes import mailbox_owners
from mailbox.services.audit import audit_record
from mailbox.services.notifications import notify


def sla_overdue_notify(*, now: datetime | None = None) -> int:
    """Tell each mailbox's owners how many messages newly broke its SLA (one notification per mailbox and run).

    Every message is counted in exactly one run: its rows are marked in the same transaction, and a second worker
    running at the same moment skips the rows this one holds. Returns the number of messages notified.
    """
    now = now or timezone.now()
    total = 0
    for mailbox in Mailbox.objects.filter(is_active=True, sla_first_claim_hours__isnull=False):
        total += _notify_mailbox(mailbox, now=now)
    return total


@transaction.atomic
def _notify_mailbox(mailbox: Mailbox, *, now: datetime) -> int:
    condition = overdue_q([mailbox], now=now)
    if condition is None:
        return 0
    ids = list(
        Message.objects.filter(condition, sla_notified_at__isnull=True)
        .select_for_update(skip_locked=True)
        .values_list("pk", flat=True)
    )
    if not ids:
        return 0
    Message.objects.filter(pk__in=ids).update(sla_notified_at=now)
    params = {
        "name": mailbox.display_name,
        "mailbox": mailbox.display_name,
        "count": len(ids),
        "hours": mailbox.sla_first_claim_hours,
        "mailbox_id": mailbox.pk,
    }
    notify(mailbox_owners(mailbox), kind=Notification.Kind.SLA_OVERDUE, message=None, actor=None, params=params)
    return len(ids)


@transaction.atomic
def mailbox_sla_set(*, user: Any, mailbox: Mailbox, hours: int | None) -> Mailbox:
    """A manager sets the mailbox's SLA: first claim within this many working hours (None: no SLA)."""
    if not is_manager(user):
        raise NotAllowed(_("Servicezeiten legt die Leitung fest."))
    if hours is not None and not 1 <= hours <= 1000:
        raise PortalError(_("Bitte eine Stundenzahl zwischen 1 und 1000 angeben."))
    old = Mailbox.objects.filter(pk=mailbox.pk).values_list("sla_first_claim_hours", flat=True).get()
    Mailbox.objects.filter(pk=mailbox.pk).update(sla_first_claim_hours=hours)
    mailbox.sla_first_claim_hours = hours
    audit_record(actor=user, action="mailbox.sla_changed", mailbox=mailbox, old=old, new=hours)
    return mailbox
