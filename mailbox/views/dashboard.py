"""Dashboards: the house's mailboxes for managers (/leitung/dashboard/), one mailbox for its owners and managers.

Charts are inline SVG drawn by the template from the geometry computed here (no script, no chart library, no
CDN); each has a <title>/<desc> and the same figures as a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_POST

from kimportal.errors import NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox.models import Mailbox, Membership
from mailbox.permissions import is_manager, user_role
from mailbox.selectors import dashboard as figures
from mailbox.services.sla import mailbox_sla_set
from mailbox.views.manage import manager_required

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


def _period(request: AuthenticatedHttpRequest) -> int:
    try:
        days = int(request.GET.get("tage", DEFAULT_PERIOD))
    except ValueError:
        return DEFAULT_PERIOD
    return days if days in PERIODS else DEFAULT_PERIOD


# --- chart geometry ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: int


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class DailyChart:
    width: int
    height: int
    top: int
    bottom: int
    left: int
    bars: list[Bar]
    done_points: str  # the "erledigt" line as SVG polyline points
    y_ticks: list[Tick]
    x_ticks: list[Tick]


def _nice_max(value: int) -> int:
    """A round upper end for an axis (1, 2, 5 × 10^n), at least 1."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if value <= step * factor:
                return step * factor
        step *= 10


def daily_chart(days: list[figures.DayCount], *, width: int = 720, height: int = 220) -> DailyChart:
    left, top, bottom, right = 40, 10, 30, 10
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max([d.received for d in days] + [d.done for d in days] + [1]))
    slot = plot_w / max(len(days), 1)

    def y(value: int) -> float:
        return round(top + plot_h - value * plot_h / peak, 1)

    bars = [
        Bar(
            x=round(left + i * slot + slot * 0.15, 1),
            y=y(d.received),
            width=round(slot * 0.7, 1),
            height=round(top + plot_h - y(d.received), 1),
            label=formats.date_format(d.day, "SHORT_DATE_FORMAT"),
            value=d.received,
        )
        for i, d in enumerate(days)
    ]
    points = " ".join(f"{round(left + (i + 0.5) * slot, 1)},{y(d.done)}" for i, d in enumerate(days))
    label_every = max(1, len(days) // 7)
    x_ticks = [
        Tick(round(left + (i + 0.5) * slot, 1), formats.date_format(d.day, "d.m."))
        for i, d in enumerate(days)
        if i % label_every == 0
    ]
    y_ticks = [Tick(y(v), str(v)) for v in (0, peak // 2, peak)] if peak > 1 else [Tick(y(0), "0"), Tick(y(1), "1")]
    return DailyChart(width, height, top, top + plot_h, left, bars, points, y_ticks, x_ticks)


@dataclass(frozen=True)
class WorkloadChart:
    width: int
    height: int
    label_width: int
    rows: list[tuple[figures.Workload, Bar, Bar]]  # person, open bar, done bar


def workload_chart(people: list[figures.Workload], *, width: int = 720, row: int = 26) -> WorkloadChart:
    label_width = 180
    plot_w = width - label_width - 60
    peak = _nice_max(max([p.open for p in people] + [p.done for p in people] + [1]))
    rows = []
    for i, person in enumerate(people):
        y = 8 + i * row
        rows.append(
            (
                person,
                Bar(label_width, y, round(person.open * plot_w / peak, 1), 10, person.name, person.open),
                Bar(label_width, y + 11, round(person.done * plot_w / peak, 1), 10, person.name, person.done),
            )
        )
    return WorkloadChart(width, 16 + len(people) * row, label_width, rows)


# --- pages ---------------------------------------------------------------------------------------------------


def _hours(value: timedelta | None) -> float | None:
    return round(value.total_seconds() / 3600, 1) if value is not None else None


def _context(mailboxes: list[Mailbox], *, days: int) -> dict[str, object]:
    now = timezone.now()
    ids = [m.pk for m in mailboxes]
    daily = figures.daily_counts(ids, now=now, days=days)
    people = figures.workload(ids, now=now, days=days)[:30]
    rows = figures.mailbox_figures(mailboxes, now=now, days=days)
    return {
        "rows": rows,
        "daily": daily,
        "daily_chart": daily_chart(daily),
        "people": people,
        "workload_chart": workload_chart(people),
        "days": days,
        "periods": PERIODS,
        "now": now,
        "totals": {
            "received": sum(d.received for d in daily),
            "done": sum(d.done for d in daily),
        },
    }


@manager_required
@require_GET
def house_dashboard(request: AuthenticatedHttpRequest) -> HttpResponse:
    days = _period(request)
    context = _context(figures.dashboard_mailboxes_for_manager(), days=days)
    return render(request, "manage/dashboard.html", context)


def _dashboard_mailbox(request: AuthenticatedHttpRequest, pk: int) -> tuple[Mailbox, str | None]:
    """The mailbox and the viewer's role in it. Managers see every mailbox; owners their own; other members are
    refused (403: they know the mailbox); everyone else gets 404."""
    role = user_role(request.user, pk)
    if is_manager(request.user):
        mailbox = Mailbox.objects.filter(pk=pk).first()
    elif role is None:
        mailbox = None
    elif role != Membership.Role.OWNER:
        raise PermissionDenied(_("Das Dashboard sehen die Eigentümer des Postfachs und die Leitung."))
    else:
        mailbox = Mailbox.objects.filter(pk=pk, is_active=True).first()
    if mailbox is None:
        raise Http404
    return mailbox, role


class SlaForm(forms.Form):
    hours = forms.IntegerField(
        label=gettext_lazy("Erste Bearbeitung binnen (Arbeitsstunden)"), min_value=1, max_value=1000, required=False
    )


@require_GET
def mailbox_dashboard(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox, role = _dashboard_mailbox(request, pk)
    days = _period(request)
    context = _context([mailbox], days=days)
    context.update(
        mailbox=mailbox,
        figures=context["rows"][0],  # type: ignore[index]
        # Subjects only for members: a manager without membership sees that mail waits, not what it says.
        overdue=figures.overdue_messages(mailbox, now=context["now"], show_subjects=role is not None),  # type: ignore[arg-type]
        can_set_sla=is_manager(request.user),
        sla_form=SlaForm(initial={"hours": mailbox.sla_first_claim_hours}),
        working_hours=figures.working_hours(),
        user_role=role,
    )
    return render(request, "mailbox/dashboard.html", context)


@manager_required
@require_POST
def mailbox_sla(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = Mailbox.objects.filter(pk=pk).first()
    if mailbox is None:
        raise Http404
    form = SlaForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(str(e) for errs in form.errors.values() for e in errs))
    else:
        try:
            mailbox_sla_set(user=request.user, mailbox=mailbox, hours=form.cleaned_data["hours"])
        except (NotAllowed, PortalError) as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Servicezeit gespeichert."))
    return redirect("mailbox:mailbox-dashboard", pk=mailbox.pk)
