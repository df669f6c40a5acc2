"""Controlling figures for the dashboards: per mailbox, a few aggregate queries each, never a loop over messages.

Stock figures (open, unassigned, overdue, oldest unassigned) are as of now; flow figures (received, done, time
to first claim and to done, double reading, workload) cover the last `days` days. Durations are clock time;
only the SLA deadline counts working hours (KIMPORTAL_SLA_WORKDAYS / KIMPORTAL_SLA_WORKDAY_HOURS), turned into
one cutoff instant per mailbox so the database compares `received_at <= cutoff` instead of Python walking rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Min, Q, QuerySet
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import TruncDate
from django.utils import timezone

from mailbox.models import Mailbox, Message, MessageRead
from mailbox.selectors.mailboxes import display_name

DONE = Message.State.DONE
OPEN = ~Q(state=DONE)


# --- working hours -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkingHours:
    """Weekdays (ISO, 1 = Monday) and the local day window the SLA clock runs in; no weekdays: every hour."""

    weekdays: frozenset[int]
    start: time
    end: time

    @property
    def all_hours(self) -> bool:
        return not self.weekdays or self.start >= self.end


def working_hours() -> WorkingHours:
    days = frozenset(int(d) for d in getattr(settings, "KIMPORTAL_SLA_WORKDAYS", [1, 2, 3, 4, 5]))
    window = getattr(settings, "KIMPORTAL_SLA_WORKDAY_HOURS", "07:00-17:00")
    start, _dash, end = window.partition("-")
    return WorkingHours(days, time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))


def sla_cutoff(hours: int, *, now: datetime, calendar: WorkingHours | None = None) -> datetime:
    """The latest receipt time whose SLA of `hours` working hours has run out by `now`.

    Walks back over the working windows from now; a message received at or before the result is overdue if no
    one has claimed it. Counted in UTC, so a change to or from summer time is neither gained nor lost.
    """
    calendar = calendar or working_hours()
    if calendar.all_hours:
        return now - timedelta(hours=hours)
    remaining = timedelta(hours=hours)
    tz = timezone.get_current_timezone()
    # Local wall times only name the window; the arithmetic runs on UTC instants, because subtracting two
    # datetimes of one zone compares their wall clocks and would miss the hour a change of summer time adds
    # or removes.
    cursor = now.astimezone(UTC)
    day: date = timezone.localtime(now, tz).date()
    for _ in range(3660):  # ten years of days without a single working hour is a misconfiguration
        if day.isoweekday() in calendar.weekdays:
            opens = datetime.combine(day, calendar.start, tzinfo=tz).astimezone(UTC)
            closes = min(datetime.combine(day, calendar.end, tzinfo=tz).astimezone(UTC), cursor)
            if closes > opens:
                available = closes - opens
                if available >= remaining:
                    return closes - remaining
                remaining -= available
        day -= timedelta(days=1)
        cursor = datetime.combine(day, time.max, tzinfo=tz).astimezone(UTC)
    return now - timedelta(hours=hours)


def overdue_q(mailboxes: list[Mailbox], *, now: datetime) -> Q | None:
    """Open messages nobody claimed within their mailbox's SLA; None when no mailbox has an SLA."""
    calendar = working_hours()
    parts = [
        Q(mailbox_id=m.pk, received_at__lte=sla_cutoff(m.sla_first_claim_hours, now=now, calendar=calendar))
        for m in mailboxes
        if m.sla_first_claim_hours
    ]
    if not parts:
        return None
    either = parts[0]
    for part in parts[1:]:
        either |= part
    return OPEN & Q(first_claimed_at__isnull=True) & either


# --- figures ---------------------------------------------------------------------------------------------------


@dataclass
class MailboxFigures:
    mailbox: Mailbox
    open: int = 0
    unassigned: int = 0
    overdue: int | None = None  # None: the mailbox has no SLA
    oldest_unassigned_at: datetime | None = None
    received: int = 0
    done: int = 0
    avg_first_claim: timedelta | None = None
    avg_to_done: timedelta | None = None
    double_read: int = 0

    @property
    def oldest_unassigned_age(self) -> timedelta | None:
        return timezone.now() - self.oldest_unassigned_at if self.oldest_unassigned_at else None


def _since(now: datetime, days: int) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)


def _duration(later: str, earlier: str) -> ExpressionWrapper[CombinedExpression]:
    return ExpressionWrapper(F(later) - F(earlier), output_field=DurationField())


def mailbox_figures(mailboxes: list[Mailbox], *, now: datetime, days: int) -> list[MailboxFigures]:
    """One row per mailbox (in the given order): two queries whatever the number of mailboxes or messages."""
    since = _since(now, days)
    by_id = {m.pk: MailboxFigures(mailbox=m) for m in mailboxes}
    overdue = overdue_q(mailboxes, now=now)
    unassigned = OPEN & Q(assignee__isnull=True)
    done_recently = Q(state=DONE, done_at__gte=since)
    aggregates: dict[str, Any] = {
        "open": Count("pk", filter=OPEN),
        "unassigned": Count("pk", filter=unassigned),
        "oldest_unassigned_at": Min("received_at", filter=unassigned),
        "received": Count("pk", filter=Q(received_at__gte=since)),
        "done": Count("pk", filter=done_recently),
        "avg_first_claim": Avg(
            _duration("first_claimed_at", "received_at"),
            filter=Q(received_at__gte=since, first_claimed_at__isnull=False),
        ),
        "avg_to_done": Avg(_duration("done_at", "received_at"), filter=done_recently),
    }
    if overdue is not None:
        aggregates["overdue"] = Count("pk", filter=overdue)
    # Every figure is about open messages or the window: only those rows are read (three indexes), not the
    # mailboxes' whole history.
    relevant = OPEN | Q(received_at__gte=since) | done_recently
    rows = (
        Message.objects.filter(relevant, mailbox_id__in=list(by_id))
        .order_by()
        .values("mailbox_id")
        .annotate(**aggregates)
    )
    for row in rows:
        figures = by_id[row["mailbox_id"]]
        for name, value in row.items():
            if name != "mailbox_id":
                setattr(figures, name, value)
    for figures in by_id.values():
        if figures.mailbox.sla_first_claim_hours and figures.overdue is None:
            figures.overdue = 0
        elif not figures.mailbox.sla_first_claim_hours:
            figures.overdue = None
    for mailbox_id, count in _double_read_counts(list(by_id), since=since).items():
        by_id[mailbox_id].double_read = count
    return list(by_id.values())


def _double_read_counts(mailbox_ids: list[int], *, since: datetime) -> dict[int, int]:
    """Messages received since `since` that more than one person opened before anyone claimed them (one query).

    A read at the claim's own moment is the claimer's (opening a message reads it, then claims it): it counts as
    one of the readers, so "more than one" means someone else looked first. Never-claimed messages count all
    their readers.
    """
    early_reads = MessageRead.objects.filter(
        message__mailbox_id__in=mailbox_ids, message__received_at__gte=since
    ).filter(Q(message__first_claimed_at__isnull=True) | Q(read_at__lte=F("message__first_claimed_at")))
    doubled = early_reads.order_by().values("message_id").annotate(readers=Count("user_id")).filter(readers__gt=1)
    rows = (
        Message.objects.filter(pk__in=doubled.values("message_id"))
        .order_by()
        .values("mailbox_id")
        .annotate(n=Count("pk"))
    )
    return {row["mailbox_id"]: row["n"] for row in rows}


@dataclass(frozen=True)
class DayCount:
    day: date
    received: int
    done: int


def daily_counts(mailbox_ids: list[int], *, now: datetime, days: int) -> list[DayCount]:
    """Received and done per local calendar day, every day of the window (days without mail as zeros)."""
    since = _since(now, days)
    base = Message.objects.filter(mailbox_id__in=mailbox_ids).order_by()
    received = dict(
        base.filter(received_at__gte=since)
        .annotate(day=TruncDate("received_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    done = dict(
        base.filter(state=DONE, done_at__gte=since)
        .annotate(day=TruncDate("done_at"))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    first = timezone.localtime(since).date()
    return [
        DayCount(day, received.get(day, 0), done.get(day, 0))
        for day in (first + timedelta(days=i) for i in range(days))
    ]


@dataclass(frozen=True)
class Workload:
    name: str
    username: str
    open: int
    done: int


def workload(mailbox_ids: list[int], *, now: datetime, days: int) -> list[Workload]:
    """Per responsible person: open messages now and messages done in the window (one query), busiest first."""
    since = _since(now, days)
    rows = (
        Message.objects.filter(mailbox_id__in=mailbox_ids, assignee__isnull=False)
        .filter(OPEN | Q(state=DONE, done_at__gte=since))  # as the counts below, and the done index can serve it
        .order_by()
        .values("assignee_id")
        .annotate(open=Count("pk", filter=OPEN), done=Count("pk", filter=Q(state=DONE, done_at__gte=since)))
    )
    counts = {row["assignee_id"]: row for row in rows}
    users = get_user_model().objects.filter(pk__in=list(counts)).only("first_name", "last_name", "username")
    people = [Workload(display_name(u), u.username, counts[u.pk]["open"], counts[u.pk]["done"]) for u in users]
    return sorted(people, key=lambda w: (-w.open, -w.done, w.name))


@dataclass
class OverdueMessage:
    pk: int
    received_at: datetime
    from_address: str
    dienstkennung: str
    subject: str | None  # None: the viewer may not read the mailbox's messages
    assignee: str = field(default="")


def overdue_messages(mailbox: Mailbox, *, now: datetime, show_subjects: bool, limit: int = 20) -> list[OverdueMessage]:
    """The oldest overdue messages of one mailbox (one query). Subjects only for viewers who may read them:
    a manager without membership sees that mail waits, not what it is about."""
    condition = overdue_q([mailbox], now=now)
    if condition is None:
        return []
    rows: QuerySet[Message] = (
        Message.objects.filter(condition)
        .select_related("assignee")
        .order_by("received_at", "pk")
        .only("pk", "received_at", "from_address", "dienstkennung", "subject", "assignee")[:limit]
    )
    return [
        OverdueMessage(
            pk=m.pk,
            received_at=m.received_at,
            from_address=m.from_address,
            dienstkennung=m.dienstkennung,
            subject=m.subject if show_subjects else None,
            assignee=display_name(m.assignee) if m.assignee else "",
        )
        for m in rows
    ]


def dashboard_mailboxes_for_manager() -> list[Mailbox]:
    return list(Mailbox.objects.filter(is_active=True).order_by("display_name"))
