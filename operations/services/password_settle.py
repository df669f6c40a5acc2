"""Open KIM password changes settled in the background (beat, every few minutes).

An open change (operations.models.PasswordChange, "pending" or "uncertain") means the portal does not know which
password the provider holds; until it is settled a second change cannot start and, if the provider took the new
one, the fetch fails with the stored old one. The visit of the mailbox's KIM pages settles it, but nobody may
visit for days: the beat task asks the Clientmodul (password_change_settle, the same login test) every few
minutes until the answer is clear.

A change younger than SETTLE_AFTER is left alone: its request to the Account Manager (or the settle that follows
it) may still be running, and a login test then could close as "rejected" a change the provider is about to
take. Two settles of the same change at once (the task and a page visit) ask the same Clientmodul and come to
the same answer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from operations.models import PasswordChange
from operations.services.kimadmin import SETTLE_AFTER, password_change_settle

log = logging.getLogger(__name__)


@dataclass
class SettleReport:
    applied: int = 0
    rejected: int = 0
    uncertain: int = 0
    failed: int = 0


def password_changes_settle_due(*, now: datetime | None = None) -> SettleReport:
    """Settle every open change older than SETTLE_AFTER (the system is the actor in the audit trail)."""
    now = now or timezone.now()
    report = SettleReport()
    due = PasswordChange.objects.filter(state__in=PasswordChange.OPEN, requested_at__lte=now - SETTLE_AFTER)
    for pk in list(due.order_by("requested_at").values_list("pk", flat=True)):
        change = PasswordChange.objects.filter(pk=pk, state__in=PasswordChange.OPEN).first()
        if change is None:  # a page visit settled it meanwhile
            continue
        try:
            change = password_change_settle(change=change, user=None)
        except Exception:
            # One account's trouble (e.g. a key no longer at hand) must not keep the others open.
            log.exception("password change %s: settling failed", pk)
            report.failed += 1
            continue
        if change.state == PasswordChange.State.APPLIED:
            report.applied += 1
        elif change.state == PasswordChange.State.REJECTED:
            report.rejected += 1
        else:
            report.uncertain += 1
    return report
