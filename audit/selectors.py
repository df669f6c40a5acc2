"""Reading the trail: search for managers (newest first, keyset pages), a message's own trail, the export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet

from audit.models import AuditEvent

PAGE_SIZE = 50
TRAIL_LIMIT = 200  # a message opened every day for years keeps its page short: the newest, the rest in search


@dataclass(frozen=True)
class AuditFilter:
    user: str = ""
    mailbox: str = ""
    message: int | None = None
    patient: str = ""
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_details(self) -> dict[str, str]:
        """The filter as it is recorded with an export (only what was set)."""
        return {key: str(value) for key, value in self.__dict__.items() if value not in ("", None)}


def _filtered(f: AuditFilter) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if f.user:
        # A failed sign-in has no actor, only the name that was tried.
        events = events.filter(Q(actor_username__iexact=f.user) | Q(details__username__iexact=f.user))
    if f.mailbox:
        by_address = Q(mailbox_address__icontains=f.mailbox)
        events = events.filter(by_address | Q(mailbox_id=int(f.mailbox)) if f.mailbox.isdigit() else by_address)
    if f.message is not None:
        events = events.filter(message_id=f.message)
    if f.patient:
        events = events.filter(Q(message_subject__icontains=f.patient) | Q(details__icontains=f.patient))
    if f.action:
        events = events.filter(action=f.action)
    if f.since is not None:
        events = events.filter(at__gte=f.since)
    if f.until is not None:
        events = events.filter(at__lt=f.until)
    return events


def event_search(f: AuditFilter, *, before: int | None = None) -> tuple[list[AuditEvent], int | None]:
    """One page, newest first, and the seq to continue before (None on the last page).

    Keyset on seq, not OFFSET: page 2,000 of a million events costs what page 1 costs.
    """
    events = _filtered(f).filter(seq__isnull=False)
    if before is not None:
        events = events.filter(seq__lt=before)
    page = list(events.order_by("-seq")[: PAGE_SIZE + 1])
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return page, (page[-1].seq if more and page else None)


def event_export_batch(f: AuditFilter, *, after: int = 0, size: int = 2000) -> list[AuditEvent]:
    """The next matching events after seq `after`, oldest first: an export reads the trail batch by batch (keyset),
    holding no cursor open between them."""
    return list(_filtered(f).filter(seq__gt=after).order_by("seq")[:size])


def trail_for_message(message_id: int) -> list[AuditEvent]:
    """The message's own trail, oldest first (the newest TRAIL_LIMIT events)."""
    newest = list(AuditEvent.objects.filter(message_id=message_id).order_by("-at", "-id")[:TRAIL_LIMIT])
    return newest[::-1]


def last_event_for_message(message_id: int, actions: list[str]) -> AuditEvent | None:
    """The latest of these actions on the message, including one its own transaction has not committed yet."""
    return AuditEvent.objects.filter(message_id=message_id, action__in=actions).order_by("-at", "-id").first()
