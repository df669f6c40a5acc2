"""The routing rules of a mailbox: list, add, edit, test, reorder, switch off, delete (owners and managers).

Everyone else gets 404 for every URL here, members of the mailbox included: that a mailbox has rules,
and which, is for the people who manage it.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox import selectors
from mailbox.models import Mailbox, RoutingRule
from mailbox.routing_forms import RoutingRuleForm
from mailbox.selectors import routing as routing_selectors
from mailbox.services import routing as routing_services


def _mailbox_or_404(request: AuthenticatedHttpRequest, pk: int) -> Mailbox:
    try:
        return routing_selectors.routing_mailbox_for_user(request.user, pk)
    except Mailbox.DoesNotExist as exc:
        raise Http404 from exc


def _form(
    request: AuthenticatedHttpRequest, mailbox: Mailbox, initial: dict[str, Any] | None = None
) -> RoutingRuleForm:
    return RoutingRuleForm(
        request.POST or None,
        initial=initial,
        members=selectors.mailbox_member_choices(mailbox),
        queues=[q.name for q in routing_selectors.queue_list(mailbox)],
    )


def _page(
    request: AuthenticatedHttpRequest,
    template: str,
    mailbox: Mailbox,
    form: RoutingRuleForm,
    *,
    rule: RoutingRule | None = None,
    preview: routing_selectors.Preview | None = None,
    status: int = 200,
    form_action: str = "",
) -> HttpResponse:
    return render(
        request,
        template,
        {
            "mailbox": mailbox,
            "form": form,
            "rule": rule,
            "rules": routing_selectors.rule_list(mailbox) if rule is None else [],
            "preview": preview,
            "preview_limit": routing_selectors.PREVIEW_LIMIT,
            "mailboxes": selectors.mailbox_list_for_user(request.user),
            "form_action": form_action,
        },
        status=status,
    )


def _save_or_test(
    request: AuthenticatedHttpRequest, mailbox: Mailbox, form: RoutingRuleForm, rule: RoutingRule | None
) -> HttpResponse | routing_selectors.Preview | None:
    """A valid POST: "Regel testen" returns the preview (nothing is saved), "Speichern" saves and redirects."""
    if "testen" in request.POST:
        return routing_selectors.rule_preview(
            request.user, mailbox, form.unsaved_rule(mailbox, rule), queue_name=form.rule_data().queue_name.strip()
        )
    try:
        if rule is None:
            routing_services.routing_rule_create(user=request.user, mailbox=mailbox, data=form.rule_data())
        else:
            routing_services.routing_rule_update(
                user=request.user, mailbox=mailbox, rule_id=rule.pk, data=form.rule_data(), seen=form.seen_at()
            )
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except Conflict as exc:
        form.add_error(None, exc.message)
        form.show_current(exc.fresh)
        return None
    except PortalError as exc:
        form.add_error(None, exc.message)
        return None
    messages.success(request, _("Regel gespeichert."))
    return redirect("mailbox:mailbox-routing", pk=mailbox.pk)


@require_http_methods(["GET", "POST"])
def routing_rules(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    form = _form(request, mailbox)
    preview = None
    if request.method == "POST" and form.is_valid():
        outcome = _save_or_test(request, mailbox, form, None)
        if isinstance(outcome, HttpResponse):
            return outcome
        preview = outcome
    refused = request.method == "POST" and preview is None
    return _page(request, "mailbox/routing_rules.html", mailbox, form, preview=preview, status=422 if refused else 200)


@require_http_methods(["GET", "POST"])
def routing_rule_edit(request: AuthenticatedHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    try:
        rule = routing_selectors.rule_get(mailbox, rule_pk)
    except RoutingRule.DoesNotExist as exc:
        if request.method == "POST":
            return _rule_gone(request, mailbox)
        raise Http404 from exc
    form = _form(request, mailbox, initial=RoutingRuleForm.initial_for(rule))
    preview = None
    if request.method == "POST" and form.is_valid():
        outcome = _save_or_test(request, mailbox, form, rule)
        if isinstance(outcome, HttpResponse):
            return outcome
        preview = outcome
    elif request.method == "GET" and "testen" in request.GET:
        preview = routing_selectors.rule_preview(request.user, mailbox, rule)
    refused = request.method == "POST" and preview is None
    return _page(
        request,
        "mailbox/routing_rule_edit.html",
        mailbox,
        form,
        rule=rule,
        preview=preview,
        status=422 if refused else 200,
    )


def _rule_gone(request: AuthenticatedHttpRequest, mailbox: Mailbox) -> HttpResponse:
    """A save from an edit page whose rule was deleted meanwhile (another tab, another owner): the rules page with
    the input kept, its form now saving a new rule."""
    form = _form(request, mailbox)
    form.is_valid()
    form.add_error(
        None,
        _(
            "Die Regel wurde inzwischen gelöscht. Ihre Eingaben stehen noch im Formular: Speichern legt sie als "
            "neue Regel an."
        ),
    )
    return _page(
        request,
        "mailbox/routing_rules.html",
        mailbox,
        form,
        status=422,
        form_action=reverse("mailbox:mailbox-routing", args=[mailbox.pk]),
    )


def _rule_action(request: AuthenticatedHttpRequest, pk: int, rule_pk: int, action: Any) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    try:
        action(mailbox)
    except RoutingRule.DoesNotExist as exc:
        raise Http404 from exc
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    return redirect("mailbox:mailbox-routing", pk=mailbox.pk)


@require_POST
def routing_rule_move(request: AuthenticatedHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    up = request.POST.get("richtung") != "runter"
    return _rule_action(
        request,
        pk,
        rule_pk,
        lambda mailbox: routing_services.routing_rule_move(user=request.user, mailbox=mailbox, rule_id=rule_pk, up=up),
    )


@require_POST
def routing_rule_active(request: AuthenticatedHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    active = request.POST.get("aktiv") == "1"

    def toggle(mailbox: Mailbox) -> None:
        rule = routing_services.routing_rule_set_active(
            user=request.user, mailbox=mailbox, rule_id=rule_pk, active=active
        )
        text = _("Regel „%(name)s“ ist aktiv.") if rule.is_active else _("Regel „%(name)s“ ist ausgeschaltet.")
        messages.success(request, text % {"name": rule.name})

    return _rule_action(request, pk, rule_pk, toggle)


@require_POST
def routing_rule_delete(request: AuthenticatedHttpRequest, pk: int, rule_pk: int) -> HttpResponse:
    def delete(mailbox: Mailbox) -> None:
        routing_services.routing_rule_delete(user=request.user, mailbox=mailbox, rule_id=rule_pk)
        messages.success(request, _("Regel gelöscht."))

    return _rule_action(request, pk, rule_pk, delete)
