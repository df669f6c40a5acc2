"""The managers' page for client systems of the KIS API: create (the first token and the callback secret shown
once), change the departments and the callback URL, issue and revoke tokens, see the callbacks' delivery.
404 for everyone but managers, like the other signing administration pages."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from signing.api.forms import KisClientForm, KisTokenForm
from signing.api.services import (
    Issued,
    kis_callback_secret_renew,
    kis_client_create,
    kis_client_update,
    kis_token_issue,
    kis_token_revoke,
)
from signing.api.tokens import days_left_if_soon
from signing.models import Draft, KisCallback, KisClient, KisToken
from signing.views.manage import manager_required

RECENT_CALLBACKS = 20


def _draft_state_label(payload: dict[str, str]) -> str:
    """What a callback said, in the page's words ("signiert – wartet auf Versand · freigegeben")."""
    states, reviews = dict(Draft.State.choices), dict(Draft.Review.choices)
    state, review = payload.get("state", ""), payload.get("review_state", "")
    return " · ".join(str(part) for part in (states.get(state, state), reviews.get(review, review)) if part)


@dataclass(frozen=True)
class TokenRow:
    """A token as the connection's page lists it: its state in words, and whether it needs attention."""

    token: KisToken
    state: str
    attention: bool


def _token_rows(client: KisClient) -> list[TokenRow]:
    now = timezone.now()
    rows = []
    for token in client.tokens.select_related("created_by", "revoked_by"):
        if token.revoked_at is not None:
            state = _("widerrufen am %(at)s %(by)s") % {
                "at": date_format(timezone.localtime(token.revoked_at), "d.m.Y H:i"),
                "by": token.revoked_by.username if token.revoked_by else "",
            }
            rows.append(TokenRow(token, state.strip(), attention=False))
        elif token.is_expired(now):
            rows.append(TokenRow(token, _("abgelaufen"), attention=True))
        else:
            left = days_left_if_soon(token.expires_at, now)
            if left is None:
                state = _("gültig")
            elif left < 1:
                state = _("gültig, läuft in weniger als einem Tag ab")
            else:
                state = ngettext("gültig, läuft in %(days)d Tag ab", "gültig, läuft in %(days)d Tagen ab", left) % {
                    "days": left
                }
            rows.append(TokenRow(token, state, attention=left is not None))
    return rows


def _shown_once(response: HttpResponse) -> HttpResponse:
    # The page shows a secret: never kept by a browser cache or a proxy.
    response["Cache-Control"] = "no-store"
    return response


@manager_required
@require_http_methods(["GET", "POST"])
def clients(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = KisClientForm(request.POST or None)
    status = 200
    issued: Issued | None = None
    if request.method == "POST":
        if form.is_valid():
            try:
                issued = kis_client_create(
                    manager=request.user,
                    name=form.cleaned_data["name"],
                    mailboxes=list(form.cleaned_data["mailboxes"]),
                    callback_url=form.cleaned_data["callback_url"],
                    token_days=form.cleaned_data["token_days"],
                )
            except PortalError as exc:
                form.add_error("name", exc.message)
                status = 422
            else:
                form = KisClientForm()
        else:
            status = 422
    rows = KisClient.objects.prefetch_related("mailboxes", "tokens").order_by("name")
    context = {"form": form, "clients": rows, "issued": issued}
    return _shown_once(render(request, "signing/kis_clients.html", context, status=status))


def _client_page(
    request: AuthenticatedHttpRequest,
    client: KisClient,
    form: KisClientForm | None = None,
    *,
    token_form: KisTokenForm | None = None,
    issued: Issued | None = None,
    secret: str = "",
    status: int = 200,
) -> HttpResponse:
    if form is None:
        form = KisClientForm(
            editing=True,
            initial={
                "mailboxes": list(client.mailboxes.all()),
                "callback_url": client.callback_url,
                "is_active": client.is_active,
            },
        )
    context = {
        "client": client,
        "form": form,
        "tokens": _token_rows(client),
        "token_form": token_form or KisTokenForm(),
        "callbacks": [
            (callback, _draft_state_label(callback.payload))
            for callback in KisCallback.objects.filter(client=client).select_related("link")[:RECENT_CALLBACKS]
        ],
        "token": issued.token if issued else "",
        "token_expires": issued.expires_at if issued else None,
        "secret": secret,
    }
    return _shown_once(render(request, "signing/kis_client.html", context, status=status))


@manager_required
@require_http_methods(["GET", "POST"])
def client_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(KisClient, pk=pk)
    if request.method == "GET":
        return _client_page(request, client)
    form = KisClientForm(request.POST, editing=True)
    if not form.is_valid():
        return _client_page(request, client, form, status=422)
    kis_client_update(
        manager=request.user,
        client=client,
        mailboxes=list(form.cleaned_data["mailboxes"]),
        callback_url=form.cleaned_data["callback_url"],
        is_active=form.cleaned_data["is_active"],
    )
    messages.success(request, _("KIS-Anbindung gespeichert."))
    return redirect("kis:client", pk=client.pk)


@manager_required
@require_POST
def token_issue(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(KisClient, pk=pk)
    token_form = KisTokenForm(request.POST)
    if not token_form.is_valid():
        return _client_page(request, client, token_form=token_form, status=422)
    issued = kis_token_issue(manager=request.user, client=client, days=token_form.cleaned_data["token_days"])
    return _client_page(request, client, issued=issued)


@manager_required
@require_POST
def token_revoke(request: AuthenticatedHttpRequest, pk: int, token_pk: int) -> HttpResponse:
    token = get_object_or_404(KisToken, pk=token_pk, client_id=pk)
    kis_token_revoke(manager=request.user, token=token)
    messages.success(request, _("Token widerrufen: Es wird ab sofort abgewiesen."))
    return redirect("kis:client", pk=pk)


@manager_required
@require_POST
def secret_renew(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(KisClient, pk=pk)
    secret = kis_callback_secret_renew(manager=request.user, client=client)
    client.refresh_from_db()
    return _client_page(request, client, secret=secret)
