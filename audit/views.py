"""Managers read the trail: search (newest first, page by page) and CSV export — the export itself is audited."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable
from functools import wraps
from typing import Any

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.forms import AuditSearchForm
from audit.labels import ACTION_LABELS, action_label
from audit.selectors import AuditFilter, event_export_batch, event_search
from audit.services import event_record
from kimportal.spreadsheet import Echo, safe_cell

# The house's manager role (Leitung), named by its permission string: this leaf imports no app, and the
# architecture tests pin that the string is the one mailbox.permissions.is_manager checks.
MANAGER_PERMISSION = "mailbox.manage_house"


def manager_only(view: Callable[..., Any]) -> Callable[..., Any]:
    """404 to everyone who is not a manager, whatever the method: to them the trail does not exist."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        user = request.user
        if not (user.is_authenticated and user.is_active and user.has_perm(MANAGER_PERMISSION)):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapped


def _form(request: HttpRequest) -> tuple[AuditSearchForm, AuditFilter | None]:
    form = AuditSearchForm(request.GET or None)
    if not request.GET:
        return form, AuditFilter()
    return form, (form.to_filter() if form.is_valid() else None)


@manager_only
@require_GET
def event_search_page(request: HttpRequest) -> HttpResponse:
    form, audit_filter = _form(request)
    events: list[Any] = []
    next_before = None
    if audit_filter is not None:
        before = form.cleaned_data["vor"] if form.is_bound else None
        events, next_before = event_search(audit_filter, before=before)
    query = request.GET.copy()
    query.pop("vor", None)
    context = {
        "form": form,
        "events": [(event, action_label(event.action)) for event in events],
        "next_before": next_before,
        "query": query.urlencode(),
        "known_actions": sorted(ACTION_LABELS.items(), key=lambda item: str(item[1])),
    }
    template = "audit/search_answer.html" if getattr(request, "htmx", False) else "audit/search.html"
    # 422 for a filter that was not run: htmx swaps it (base.html's responseHandling), and the results box then
    # says why instead of "no events", which a search that never happened must not claim.
    return render(request, template, context, status=422 if audit_filter is None else 200)


async def _csv_lines(audit_filter: AuditFilter) -> AsyncIterator[str]:
    """Async, so the ASGI server sends batch after batch instead of collecting a million rows first."""
    writer = csv.writer(Echo())
    yield writer.writerow(
        ["seq", "zeit", "aktion", "benutzer", "benutzer_id", "postfach", "postfach_id", "nachricht_id", "betreff",
         "details", "hash"]
    )  # fmt: skip
    after = 0
    while batch := await sync_to_async(event_export_batch)(audit_filter, after=after):
        after = batch[-1].seq or after
        for e in batch:
            yield writer.writerow(
                [
                    safe_cell(v)
                    for v in (
                        e.seq,
                        timezone.localtime(e.at).isoformat(),
                        e.action,
                        e.actor_username,
                        e.actor_id,
                        e.mailbox_address,
                        e.mailbox_id,
                        e.message_id,
                        e.message_subject,
                        json.dumps(e.details, ensure_ascii=False, sort_keys=True),
                        e.hash,
                    )
                ]
            )


@manager_only
@require_GET
def event_export_csv(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    form, audit_filter = _form(request)
    if audit_filter is None:
        return render(request, "audit/search.html", {"form": form, "events": [], "query": ""}, status=422)
    # Recorded (and committed) before the first row leaves: an export that breaks off is still on the trail.
    event_record(actor=request.user, action="audit.exported", details={"filter": audit_filter.as_details()})
    response = StreamingHttpResponse(_csv_lines(audit_filter), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{timezone.localdate():%Y-%m-%d}.csv"'
    return response
