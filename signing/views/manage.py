"""The managers' signing pages: who has which eHBA, and the workstations (404 for everyone else)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox.permissions import is_manager
from signing.forms import SignerCardForm, WorkplaceForm
from signing.models import SignerCard, Workplace
from signing.services.cards import signer_card_remove, signer_card_set, workplace_save

View = Callable[..., HttpResponseBase]


def manager_required(view: View) -> View:
    """404 for everyone but managers; outermost, so not even a 405 tells that the page exists."""

    @wraps(view)
    def wrapped(request: AuthenticatedHttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_manager(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapped


@manager_required
@require_http_methods(["GET", "POST"])
def cards(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = SignerCardForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                signer_card_set(
                    manager=request.user,
                    user=form.cleaned_data["username"],
                    telematik_id=form.cleaned_data["telematik_id"],
                    iccsn=form.cleaned_data["iccsn"],
                )
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, _("eHBA zugeordnet."))
                return redirect("signing:manage-cards")
        status = 422
    rows = SignerCard.objects.select_related("user", "set_by").order_by("user__last_name", "user__username")
    return render(request, "signing/manage_cards.html", {"form": form, "cards": rows}, status=status)


@manager_required
@require_POST
def card_remove(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    card = get_object_or_404(SignerCard, pk=pk)
    signer_card_remove(manager=request.user, card=card)
    messages.success(request, _("Zuordnung entfernt."))
    return redirect("signing:manage-cards")


@manager_required
@require_http_methods(["GET", "POST"])
def workplaces(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _workplace_page(request, None)


@manager_required
@require_http_methods(["GET", "POST"])
def workplace_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _workplace_page(request, get_object_or_404(Workplace, pk=pk))


def _workplace_page(request: AuthenticatedHttpRequest, workplace: Workplace | None) -> HttpResponse:
    initial = (
        {
            "workplace_id": workplace.workplace_id,
            "label": workplace.label,
            "ct_id": workplace.ct_id,
            "is_active": workplace.is_active,
        }
        if workplace is not None
        else {"is_active": True}
    )
    form = WorkplaceForm(request.POST or None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                workplace_save(manager=request.user, workplace=workplace, **form.cleaned_data)
            except PortalError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, _("Arbeitsplatz gespeichert."))
                return redirect("signing:manage-workplaces")
        status = 422
    rows = Workplace.objects.order_by("label")
    context = {"form": form, "workplaces": rows, "editing": workplace}
    return render(request, "signing/manage_workplaces.html", context, status=status)
