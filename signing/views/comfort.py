"""The Komfortsignatur page: activate it for one's eHBA at a workstation (the PIN at the card terminal), see
what is left of it (signatures, time; read from the Konnektor), end it. One URL serves page and status fragment
(htmx polls #comfort-status while the PIN is asked for; while active each load reads the Konnektor)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from signing import selectors
from signing.forms import WorkplaceChoiceForm
from signing.models import ComfortActivation
from signing.permissions import has_signer_card
from signing.services.comfort import (
    activation_get_for_user,
    activation_history_for_user,
    activation_live_for_user,
    activations_for_user,
    comfort_activate,
    comfort_available,
    comfort_deactivate,
    comfort_refresh,
    end_text,
)
from signing.views.common import WORKPLACE_COOKIE, WORKPLACE_COOKIE_AGE, chosen_workplace

# The page asks the Konnektor for what is left when its last answer is older than this (seconds).
REFRESH_AFTER = 20


def _context(request: AuthenticatedHttpRequest, *, refresh: bool) -> dict[str, Any]:
    live = activation_live_for_user(request.user)
    warning = ""
    if live is not None and live.state == ComfortActivation.State.ACTIVE:
        stale = live.checked_at is None or (timezone.now() - live.checked_at).total_seconds() > REFRESH_AFTER
        if refresh or stale:
            warning = comfort_refresh(live)
            if not live.is_live:
                live = None
    last = None
    if live is None:
        last = activations_for_user(request.user).exclude(state__in=ComfortActivation.LIVE_STATES).first()
    workplaces = list(selectors.workplace_choices())
    return {
        "available": comfort_available(),
        "has_card": has_signer_card(request.user),
        "live": live,
        "last": last,
        "last_text": end_text(last) if last is not None else "",
        "warning": warning,
        "history": list(activation_history_for_user(request.user)),
        "workplaces": workplaces,
        "workplace": chosen_workplace(request, workplaces),
        "now": timezone.now(),
    }


@require_GET
def comfort_page(request: AuthenticatedHttpRequest) -> HttpResponse:
    context = _context(request, refresh="aktualisieren" in request.GET)
    template = "signing/comfort.html"
    if request.htmx and request.htmx.target == "comfort-status":
        template += "#comfort-status"
    return render(request, template, context)


@require_POST
def comfort_activate_view(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = WorkplaceChoiceForm(request.POST)
    workplace = None
    if form.is_valid():
        workplace = selectors.workplace_choices().filter(pk=form.cleaned_data["workplace"]).first()
    if workplace is None:
        messages.error(
            request, _("Bitte wählen Sie Ihren Arbeitsplatz (das Kartenterminal, an dem Sie die PIN eingeben).")
        )
        return redirect("signing:comfort")
    try:
        comfort_activate(user=request.user, workplace=workplace, session_key=request.session.session_key or "")
    except (NotAllowed, Conflict, PortalError) as exc:
        messages.error(request, exc.message)
        return redirect("signing:comfort")
    response = redirect("signing:comfort")
    response.set_cookie(
        WORKPLACE_COOKIE,
        str(workplace.pk),
        max_age=WORKPLACE_COOKIE_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )
    return response


@require_POST
def comfort_deactivate_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        activation = activation_get_for_user(request.user, pk)
    except ComfortActivation.DoesNotExist as exc:
        raise Http404 from exc
    try:
        warning = comfort_deactivate(user=request.user, activation=activation)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    if warning:
        messages.warning(request, warning)
    else:
        messages.success(request, end_text(activation) or _("Die Komfortsignatur wurde beendet."))
    return redirect("signing:comfort")
