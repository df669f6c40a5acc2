"""The operations page (IT only), /health/ for monitors and load balancers, /metrics for Prometheus."""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe
from django_htmx.http import HttpResponseClientRedirect
from prometheus_client import CONTENT_TYPE_LATEST

from kimportal.http import HtmxHttpRequest
from operations.metrics import render as render_metrics
from operations.metrics import scrape_refusal
from operations.services.access import can_view_operations
from operations.services.health import health_report
from operations.services.results import ERROR, OK, Report

# "Jetzt prüfen" checks anew only if the last round is older than this: a held-down key is no load test.
REFRESH_MIN_AGE = 5.0
# The page asks for a fresh view this often (htmx polling); the report itself is cached server-side.
POLL_SECONDS = 15


def _refusal(request: HtmxHttpRequest) -> HttpResponse | None:
    """None for IT; a way to the login for the signed-out (also a polling fragment: the whole page goes, htmx would
    swap the login form into the fragment otherwise); 403 for everyone else (a polling fragment: reloaded whole)."""
    if not request.user.is_authenticated:
        login = redirect_to_login(reverse("operations:status"))
        if request.htmx:
            return HttpResponseClientRedirect(login["Location"])
        return login
    if not can_view_operations(request.user):
        if request.htmx:
            # A tab opened while the user could see the page keeps polling: htmx swaps no 403, so the last report
            # would stay on screen without a word. Reloading the whole page shows the 403 page instead.
            response = HttpResponseForbidden()
            response["HX-Refresh"] = "true"
            return response
        raise PermissionDenied
    return None


def _context(report: Report) -> dict[str, object]:
    return {
        "report": report,
        "checked_at": dt.datetime.fromtimestamp(report.checked_at, tz=dt.UTC),
        "poll_seconds": POLL_SECONDS,
        "cache_seconds": round(float(settings.KIMPORTAL_HEALTH_CACHE_SECONDS)),
        "problems": [c for c in report.components if c.state != OK],
    }


# Signed-out requests are answered here, not by LoginRequiredMiddleware: the page polls (see _refusal).
@login_not_required
@require_safe
def status_page(request: HtmxHttpRequest) -> HttpResponse:
    if (refusal := _refusal(request)) is not None:
        return refusal
    report = health_report()
    template = "operations/status.html#status-body" if request.htmx else "operations/status.html"
    return render(request, template, _context(report))


@login_not_required
@require_POST
def status_refresh(request: HtmxHttpRequest) -> HttpResponse:
    if (refusal := _refusal(request)) is not None:
        return refusal
    report = health_report(max_age=REFRESH_MIN_AGE)
    if not request.htmx:
        return redirect("operations:status")
    return render(request, "operations/status.html#status-body", _context(report))


@login_not_required
@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Component names and states only: no texts (they name hosts and addresses), no patient data."""
    report = health_report()
    body = {
        "status": report.state,
        "checked_at": dt.datetime.fromtimestamp(report.checked_at, tz=dt.UTC).isoformat(timespec="seconds"),
        "age_seconds": round(max(0.0, time.time() - report.checked_at), 1),
        "components": {c.key: c.state for c in report.components},
        "failing": report.failing(),
        "warnings": report.warnings(),
    }
    return JsonResponse(body, status=503 if report.state == ERROR else 200)


@login_not_required
@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = scrape_refusal(request)
    if refusal is not None:
        response = HttpResponse(
            "Authorization required.\n" if refusal == 401 else "Forbidden.\n",
            status=refusal,
            content_type="text/plain; charset=utf-8",
        )
        if refusal == 401:
            response["WWW-Authenticate"] = 'Bearer realm="kimportal-metrics"'
        return response
    return HttpResponse(render_metrics(health_report()), content_type=CONTENT_TYPE_LATEST)
