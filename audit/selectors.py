"""Reading the trail: search for managers (newest first, keyset pages), a message's own trail, the export."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet, Value
from django.db.models.fields.json import KT
from django.db.models.functions import Upper

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


def _filtered(f: AuditFilter) -> list[QuerySet[AuditEvent]]:
    """The events the filter matches, as one or two querysets whose union they are.

    A name matches who acted, or, for a failed sign-in (no actor), the name that was tried. Two querysets rather
    than one OR: each is answered in seq order straight from its own index (name, seq), so a page of a rare name
    costs what a page of a frequent one does; an OR made PostgreSQL walk the whole trail backwards to find it.
    """
    events = _conditions(f)
    if not f.user:
        return [events]
    name = Upper(Value(f.user))  # the database's case folding on both sides, as iexact did
    return [
        events.annotate(actor_upper=Upper("actor_username")).filter(actor_upper=name),
        events.annotate(tried_upper=Upper(KT("details__username"))).filter(actor_id__isnull=True, tried_upper=name),
    ]


def _conditions(f: AuditFilter) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if f.mailbox:
        by_address = Q(mailbox_address__icontains=f.mailbox)
        # isascii: "²" and its kin are digits to isdigit() but not to int(); they can only be part of an address.
        number = f.mailbox.isascii() and f.mailbox.isdigit()
        events = events.filter(by_address | Q(mailbox_id=int(f.mailbox)) if number else by_address)
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
    parts = [events.filter(seq__isnull=False) for events in _filtered(f)]
    if before is not None:
        parts = [events.filter(seq__lt=before) for events in parts]
    page = _merged([events.order_by("-seq")[: PAGE_SIZE + 1] for events in parts], newest_first=True)
    page = page[: PAGE_SIZE + 1]
    more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    return page, (page[-1].seq if more and page else None)


def event_export_batch(f: AuditFilter, *, after: int = 0, size: int = 2000) -> list[AuditEvent]:
    """The next matching events after seq `after`, oldest first: an export reads the trail batch by batch (keyset),
    holding no cursor open between them."""
    batches = [events.filter(seq__gt=after).order_by("seq")[:size] for events in _filtered(f)]
    return _merged(batches, newest_first=False)[:size]


def _merged(parts: list[QuerySet[AuditEvent]], *, newest_first: bool) -> list[AuditEvent]:
    # Each part is already limited and ordered by seq; an event in both parts is one event.
    events = {event.pk: event for part in parts for event in part}
    return sorted(events.values(), key=lambda e: e.seq or 0, reverse=newest_first)


def trail_for_message(message_id: int) -> list[AuditEvent]:
    """The message's own trail, oldest first (the newest TRAIL_LIMIT events)."""
    newest = list(AuditEvent.objects.filter(message_id=message_id).order_by("-at", "-id")[:TRAIL_LIMIT])
    return newest[::-1]


def last_event_for_message(message_id: int, actions: list[str]) -> AuditEvent | None:
    """The latest of these actions on the message, including one its own transaction has not committed yet."""
    return AuditEvent.objects.filter(message_id=message_id, action__in=actions).order_by("-at", "-id").first()
