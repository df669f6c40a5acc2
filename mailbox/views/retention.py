"""Retention for managers (/leitung/aufbewahrung/): each mailbox's period and the dry-run report, deletion only
after confirming that very report; and the legal hold on a message's page."""

from __future__ import annotations

import hashlib

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_POST

from kimportal.errors import NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox.models import Mailbox
from mailbox.services.retention import (
    RetentionReport,
    mailbox_retention_set,
    message_legal_hold_set,
    retention_preview,
    retention_run,
)
from mailbox.views.lookup import message_or_404
from mailbox.views.manage import manager_required


def plan_digest(report: RetentionReport) -> str:
    """Names the exact set of messages a dry run showed; the confirmation must carry it."""
    return hashlib.sha256(",".join(map(str, sorted(report.message_ids))).encode()).hexdigest()[:16]


class RetentionDaysForm(forms.Form):
    days = forms.IntegerField(
        label=gettext_lazy("Inhalte löschen nach (Tagen ab erledigt)"), min_value=1, max_value=36500, required=False
    )


class RetentionConfirmForm(forms.Form):
    plan = forms.CharField(max_length=16)


class LegalHoldForm(forms.Form):
    hold = forms.BooleanField(required=False)
    reason = forms.CharField(label=gettext_lazy("Grund (z. B. Aktenzeichen)"), max_length=200, required=False)


def _mailbox_or_404(pk: int) -> Mailbox:
    mailbox = Mailbox.objects.filter(pk=pk).first()
    if mailbox is None:
        raise Http404
    return mailbox


@manager_required
@require_GET
def retention_overview(request: AuthenticatedHttpRequest) -> HttpResponse:
    mailboxes = list(Mailbox.objects.order_by("display_name"))
    reports = retention_preview(mailboxes, now=timezone.now())
    rows = [
        (mailbox, report, plan_digest(report), RetentionDaysForm(initial={"days": mailbox.retention_days_after_done}))
        for mailbox, report in zip(mailboxes, reports, strict=True)
    ]
    return render(request, "manage/retention.html", {"rows": rows})


@manager_required
@require_POST
def retention_days(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(pk)
    form = RetentionDaysForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(str(e) for errs in form.errors.values() for e in errs))
        return redirect("manage:retention")
    try:
        mailbox_retention_set(user=request.user, mailbox=mailbox, days=form.cleaned_data["days"])
    except (NotAllowed, PortalError) as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Aufbewahrungsfrist für „%(name)s“ gespeichert.") % {"name": mailbox.display_name})
    return redirect("manage:retention")


@manager_required
@require_POST
def retention_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(pk)
    form = RetentionConfirmForm(request.POST)
    now = timezone.now()
    # Deletes only what the confirmed report showed: if the plan changed since (a hold set, a message reopened or
    # newly due), the manager sees the new report first.
    if not form.is_valid() or form.cleaned_data["plan"] != plan_digest(
        retention_run(mailbox=mailbox, dry_run=True, now=now)
    ):
        messages.error(request, _("Die Vorschau hat sich inzwischen geändert. Bitte prüfen Sie sie erneut."))
        return redirect("manage:retention")
    report = retention_run(mailbox=mailbox, dry_run=False, actor=request.user, now=now)
    messages.success(
        request,
        ngettext(
            "„%(name)s“: Inhalt von %(count)s Nachricht gelöscht.",
            "„%(name)s“: Inhalt von %(count)s Nachrichten gelöscht.",
            report.messages,
        )
        % {"name": mailbox.display_name, "count": report.messages},
    )
    return redirect("manage:retention")


@require_POST
def message_legal_hold(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    message = message_or_404(request.user, pk)
    form = LegalHoldForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(str(e) for errs in form.errors.values() for e in errs))
        return redirect("mailbox:message-detail", pk=pk)
    try:
        message_legal_hold_set(
            user=request.user, message=message, hold=form.cleaned_data["hold"], reason=form.cleaned_data["reason"]
        )
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Aufbewahrungssperre gesetzt.") if form.cleaned_data["hold"] else _("Aufbewahrungssperre aufgehoben."),
        )
    return redirect("mailbox:message-detail", pk=pk)
