"""Starting a batch, its live page (job number, PIN hint, progress, summary), cancelling, the list of batches,
and the workstation choice the browser remembers."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kimportal.errors import NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from signing import selectors
from signing.forms import SignForm, WorkplaceChoiceForm
from signing.services.batch import BatchRunning, batch_cancel, batch_create
from signing.views.common import WORKPLACE_COOKIE, WORKPLACE_COOKIE_AGE, batch_or_404


def _back(request: AuthenticatedHttpRequest) -> HttpResponse:
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or ""
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = ""
    return redirect(target or "signing:queue")


@require_POST
def batch_start(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = SignForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errs in form.errors.values() for e in errs))
        return _back(request)
    workplace = selectors.workplace_choices().filter(pk=form.cleaned_data["workplace"]).first()
    if workplace is None:
        messages.error(
            request, _("Bitte wählen Sie Ihren Arbeitsplatz (das Kartenterminal, an dem Sie die PIN eingeben).")
        )
        return _back(request)
    try:
        batch = batch_create(signer=request.user, workplace=workplace, selected=form.selected)
    except BatchRunning as exc:
        if exc.same_selection:
            messages.info(request, exc.message)
            return redirect("signing:batch", pk=exc.fresh.pk)
        messages.error(request, exc.message)
        return _back(request)
    except NotAllowed as exc:
        messages.error(request, exc.message)
        return _back(request)
    except PortalError as exc:
        messages.error(request, exc.message)
        return _back(request)
    response = redirect("signing:batch", pk=batch.pk)
    # The choice is remembered for this browser (the physician's own workstation).
    response.set_cookie(
        WORKPLACE_COOKIE,
        str(workplace.pk),
        max_age=WORKPLACE_COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )
    return response


@require_GET
def batch_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    batch = batch_or_404(request.user, pk)
    template = "signing/batch.html"
    if request.htmx and request.htmx.target == "batch-status":
        template += "#batch-status"
    return render(request, template, selectors.batch_context(batch, request.user))


@require_POST
def batch_cancel_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    batch = batch_or_404(request.user, pk)
    try:
        batch_cancel(user=request.user, batch=batch)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    if request.htmx:
        fresh = batch_or_404(request.user, pk)
        return render(request, "signing/batch.html#batch-status", selectors.batch_context(fresh, request.user))
    messages.info(request, _("Abbruch angefordert."))
    return redirect("signing:batch", pk=batch.pk)


@require_GET
def batch_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    batches = selectors.batch_rows_for_user(request.user)
    return render(request, "signing/batches.html", {"batches": batches})


@require_POST
def workplace_choose(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = WorkplaceChoiceForm(request.POST)
    response = _back(request)
    if form.is_valid() and selectors.workplace_choices().filter(pk=form.cleaned_data["workplace"]).exists():
        response.set_cookie(
            WORKPLACE_COOKIE,
            str(form.cleaned_data["workplace"]),
            max_age=WORKPLACE_COOKIE_AGE,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure(),
        )
    else:
        messages.error(request, _("Unbekannter Arbeitsplatz."))
    return response
