"""Signing in: the login page (with the reason a session ended and the lockout message), the session clock the
page asks before warning of the idle logout, and the managers' page of lockouts (/leitung/anmeldesperren/)."""

from __future__ import annotations

import time
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.core.validators import validate_ipv46_address
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kimportal.http import AuthenticatedHttpRequest
from mailbox.selectors.signin import ADDRESS, USERNAME, lockout_list
from mailbox.services.signin import lockout_release
from mailbox.signin import DIRECTORY_UNREACHABLE_ATTR, seconds_left
from mailbox.views.manage import manager_required

# How long before the idle logout the page warns (the text says "in 1 Minute").
WARN_SECONDS = 60


class PortalLoginView(LoginView):
    """Django's login view; the page also says why the last session ended (idle or end of shift)."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        reason = self.request.GET.get("abgemeldet", "")
        if reason == "idle":
            minutes = round(float(settings.KIMPORTAL_IDLE_LOGOUT_MINUTES))
            context["ended_notice"] = _("Sie wurden nach %(minutes)s Minuten ohne Eingabe abgemeldet.") % {
                "minutes": minutes
            }
        elif reason == "shift":
            context["ended_notice"] = _("Ihre Sitzung ist abgelaufen. Bitte melden Sie sich erneut an.")
        elif reason == "abmeldung":
            # Signed out on purpose: portal.js removes what this tab kept of unsaved drafts (data-logged-out).
            context["logged_out"] = True
            context["ended_notice"] = _("Sie haben sich abgemeldet.")
        if getattr(self.request, DIRECTORY_UNREACHABLE_ATTR, False):
            # The directory could not check the password: saying it was wrong would send people retyping it.
            context["directory_notice"] = _(
                "Der Verzeichnisdienst antwortet nicht, daher konnte die Anmeldung nicht geprüft werden. Versuchen "
                "Sie es in einigen Minuten erneut; hält die Störung an, verständigen Sie die IT."
            )
        return context


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: Any = None
) -> HttpResponse:
    """What a locked account or address sees instead of a sign-in (AXES_LOCKOUT_CALLABLE): the login page with a
    German message, the name kept in the field, status 429. The same answer whether or not the password was right,
    so the page does not tell a guesser when they have found it."""
    username = request.POST.get("username", "")
    form = AuthenticationForm(request, initial={"username": username})
    cooloff = settings.AXES_COOLOFF_TIME
    if cooloff is not None:
        minutes = max(1, round(cooloff.total_seconds() / 60))
        notice = _(
            "Zu viele fehlgeschlagene Anmeldungen: Die Anmeldung ist vorübergehend gesperrt. Versuchen Sie es in "
            "%(minutes)s Minuten erneut oder bitten Sie die Leitung, die Sperre aufzuheben."
        ) % {"minutes": minutes}
    else:
        notice = _(
            "Zu viele fehlgeschlagene Anmeldungen: Die Anmeldung ist gesperrt. Bitten Sie die Leitung, die Sperre "
            "aufzuheben."
        )
    context = {"form": form, "locked_notice": notice, "next": request.POST.get("next", "")}
    return render(request, "registration/login.html", context, status=429)


@login_not_required
@require_http_methods(["GET", "POST"])
def session_status(request: HttpRequest) -> JsonResponse:
    """Seconds until this session ends (the page's idle warning asks before it warns and before it leaves).
    GET is the page asking and does not count as activity (it sends the background header); POST is the user's
    "Angemeldet bleiben", which counts. Signed out: 0 and where to sign in."""
    if not request.user.is_authenticated:
        return JsonResponse({"remaining": 0, "login": resolve_url(settings.LOGIN_URL)})
    remaining = seconds_left(request.session, time.time())
    idle_on = float(settings.KIMPORTAL_IDLE_LOGOUT_MINUTES) > 0
    return JsonResponse({"remaining": max(0, int(remaining)), "warn": WARN_SECONDS, "idle": idle_on})


class LockoutReleaseForm(forms.Form):
    kind = forms.ChoiceField(choices=[(USERNAME, USERNAME), (ADDRESS, ADDRESS)])
    value = forms.CharField(max_length=255)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        # Addresses are an IP address column: other text cannot name a lockout, and the lookup would fail.
        if data.get("kind") == ADDRESS and "value" in data:
            try:
                validate_ipv46_address(data["value"])
            except ValidationError:
                self.add_error("value", _("Diese Sperre gibt es nicht."))
        return data


@manager_required
@require_GET
def signin_lockouts(request: AuthenticatedHttpRequest) -> HttpResponse:
    context = {"lockouts": lockout_list(), "limit": settings.AXES_FAILURE_LIMIT}
    return render(request, "manage/signin_lockouts.html", context)


@manager_required
@require_POST
def signin_lockout_release(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = LockoutReleaseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Diese Sperre gibt es nicht."))
        return redirect("manage:signin-lockouts")
    kind, value = form.cleaned_data["kind"], form.cleaned_data["value"]
    if lockout_release(actor=request.user, kind=kind, value=value):
        if kind == USERNAME:
            messages.success(request, _("Das Benutzerkonto „%(value)s“ ist entsperrt.") % {"value": value})
        else:
            messages.success(request, _("Die Adresse %(value)s ist entsperrt.") % {"value": value})
    else:
        messages.info(request, _("Diese Sperre war bereits aufgehoben."))
    return redirect("manage:signin-lockouts")
