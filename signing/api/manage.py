"""The managers' page for client systems of the KIS API: create (the first token and the callback secret shown
once), change the departments and the callback URL, issue and revoke tokens, see the callbacks' delivery.
404 for everyone but managers, like the other signing administration pages."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from signing.api.forms import KisClientForm
from signing.api.services import (
    Issued,
    kis_callback_secret_renew,
    kis_client_create,
    kis_client_update,
    kis_token_issue,
    kis_token_revoke,
)
from signing.models import Draft, KisCallback, KisClient, KisToken
from signing.views.manage import manager_required

RECENT_CALLBACKS = 20


def _draft_state_label(payload: dict[str, str]) -> str:
    """What a callback said, in the page's words ("signiert – wartet auf Versand · freigegeben")."""
    states, reviews = dict(Draft.State.choices), dict(Draft.Review.choices)
    state, review = payload.get("state", ""), payload.get("review_state", "")
    return " · ".join(str(part) for part in (states.get(state, state), reviews.get(review, review)) if part)


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
    token: str = "",
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
        "tokens": client.tokens.select_related("created_by", "revoked_by"),
        "callbacks": [
            (callback, _draft_state_label(callback.payload))
            for callback in KisCallback.objects.filter(client=client).select_related("link")[:RECENT_CALLBACKS]
        ],
        "token": token,
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
    issued = kis_token_issue(manager=request.user, client=client)
    return _client_page(request, client, token=issued.token)


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
