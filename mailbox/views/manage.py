"""The managers' pages (Leitung) under /leitung/: mailboxes and their KIM accounts, members, groups (wards),
substitutes, bulk changes and the access report. Every page answers 404 to anyone who is not a manager, so the
pages' existence is not revealed; managers administer access here but read no message without a membership."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from kimportal.spreadsheet import Echo, safe_cell
from mailbox import manage_forms
from mailbox.models import Absence, KimAccount, Mailbox, Membership
from mailbox.permissions import is_manager
from mailbox.selectors import access
from mailbox.selectors.mailboxes import display_name
from mailbox.services import manage as manage_services
from mailbox.services.accounts import ConnectionCheck, account_test_connection
from mailbox.services.audit import audit_record
from mailbox.services.members import membership_remove, membership_set

View = Callable[..., HttpResponseBase]


def manager_required(view: View) -> View:
    """404 for everyone but managers (not 403: a non-manager does not learn that the page exists). Outermost
    decorator, so that not even a 405 for the wrong method tells a non-manager the page is there."""

    @wraps(view)
    def wrapped(request: AuthenticatedHttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not is_manager(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapped


@manager_required
@require_GET
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "manage/home.html")


# --- mailboxes ------------------------------------------------------------------------------------------------------


@manager_required
@require_GET
def mailboxes(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "manage/mailboxes.html", {"mailboxes": access.mailbox_list_for_manager()})


def _connection_test(account: KimAccount) -> list[ConnectionCheck]:
    return account_test_connection(account=account)


def _form_errors(*forms_: forms.BaseForm) -> list[str]:
    """The errors of forms the page does not redraw (an htmx connection test answers with its result only)."""
    found: list[str] = []
    for form in forms_:
        for name, errors in form.errors.items():
            label = form.fields[name].label if name in form.fields else ""
            found.extend(f"{label}: {e}" if label else str(e) for e in errors)
    return found


@manager_required
@require_http_methods(["GET", "POST"])
def mailbox_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The wizard: mailbox and owners, KIM account, "Verbindung testen" (nothing saved), then create."""
    data = request.POST if request.method == "POST" else None
    mailbox_form = manage_forms.MailboxCreateForm(data)
    account_form = manage_forms.AccountForm(data)
    checks: list[ConnectionCheck] = []
    errors: list[str] = []
    if request.method == "POST":
        valid = mailbox_form.is_valid() & account_form.is_valid()  # both, so that both show their errors
        if request.POST.get("action") == "test":
            if account_form.is_valid():
                account = account_form.save(commit=False)
                # The account's user names are built from the address; the mailbox is not saved for a test.
                account.mailbox = Mailbox(address=mailbox_form.data.get("address", ""))
                checks = _connection_test(account)
            else:
                errors = _form_errors(account_form)
            if request.htmx:
                return render(
                    request, "manage/mailbox_create.html#connection-result", {"checks": checks, "errors": errors}
                )
        elif valid:
            try:
                mailbox = manage_services.mailbox_create(
                    user=request.user,
                    address=mailbox_form.cleaned_data["address"],
                    display_name=mailbox_form.cleaned_data["display_name"],
                    kind=mailbox_form.cleaned_data["kind"],
                    account=account_form.save(commit=False),
                    owners=list(mailbox_form.cleaned_data["owners"]),
                )
            except PortalError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, _("Postfach angelegt. Der Abruf beginnt in Kürze."))
                return redirect("manage:mailbox", pk=mailbox.pk)
    invalid = request.method == "POST" and request.POST.get("action") != "test"
    return render(
        request,
        "manage/mailbox_create.html",
        {"mailbox_form": mailbox_form, "account_form": account_form, "checks": checks, "errors": errors},
        status=422 if invalid else 200,
    )


def _mailbox_or_404(pk: int) -> Mailbox:
    # Managers administer every mailbox, active or not; this page shows access, never messages.
    return get_object_or_404(Mailbox.objects.select_related("account"), pk=pk)


@manager_required
@require_http_methods(["GET", "POST"])
def mailbox_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """One mailbox: name, members with their grant (since when, by whom), add or change a member, on/off."""
    mailbox = _mailbox_or_404(pk)
    grant_form = manage_forms.MembershipGrantForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and grant_form.is_valid():
        member, group = grant_form.cleaned_data["user"], grant_form.cleaned_data["group"]
        try:
            membership_set(
                user=request.user,
                mailbox=mailbox,
                username=member.username if member else "",
                group_name=group.name if group else "",
                role=grant_form.cleaned_data["role"],
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Mitgliedschaft gespeichert."))
            return redirect("manage:mailbox", pk=pk)
    return render(
        request,
        "manage/mailbox_detail.html",
        {
            "mailbox": mailbox,
            "account": getattr(mailbox, "account", None),
            "memberships": access.membership_list_for_manager(mailbox),
            "grant_form": grant_form,
        },
        status=422 if request.method == "POST" else 200,
    )


@manager_required
@require_POST
def mailbox_member_remove(request: AuthenticatedHttpRequest, pk: int, membership_pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(pk)
    try:
        membership_remove(user=request.user, mailbox=mailbox, membership_id=membership_pk)
    except Membership.DoesNotExist as exc:
        raise Http404 from exc
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Mitglied entfernt."))
    return redirect("manage:mailbox", pk=pk)


@manager_required
@require_POST
def mailbox_active(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(pk)
    active = request.POST.get("active") == "1"
    outgoing = manage_services.mailbox_set_active(user=request.user, mailbox=mailbox, active=active)
    if active:
        text = _("Postfach wieder aktiviert; Abruf und Versand laufen wieder.")
        if outgoing:
            text += " " + ngettext(
                "%(n)d zurückgehaltene Nachricht wird jetzt gesendet.",
                "%(n)d zurückgehaltene Nachrichten werden jetzt gesendet.",
                outgoing,
            ) % {"n": outgoing}
    else:
        text = _("Postfach deaktiviert: kein Abruf und kein Versand mehr, die Mitglieder haben keinen Zugriff mehr.")
        if outgoing:
            text += " " + ngettext(
                "%(n)d Nachricht im Postausgang wird zurückgehalten und geht hinaus, sobald das Postfach wieder "
                "aktiv ist.",
                "%(n)d Nachrichten im Postausgang werden zurückgehalten und gehen hinaus, sobald das Postfach "
                "wieder aktiv ist.",
                outgoing,
            ) % {"n": outgoing}
    messages.success(request, text)
    return redirect("manage:mailbox", pk=pk)


@manager_required
@require_http_methods(["GET", "POST"])
def mailbox_account(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The mailbox's KIM account (the admin form's fields): test the entered settings, then save."""
    mailbox = _mailbox_or_404(pk)
    instance = KimAccount.objects.filter(mailbox=mailbox).first() or KimAccount(mailbox=mailbox)
    form = manage_forms.AccountForm(request.POST if request.method == "POST" else None, instance=instance)
    checks: list[ConnectionCheck] = []
    errors: list[str] = []
    if request.method == "POST":
        if form.is_valid():
            account = form.save(commit=False)
            account.mailbox = mailbox
            if request.POST.get("action") == "test":
                checks = _connection_test(account)
            else:
                manage_services.account_save(user=request.user, account=account, changed=form.changed_data)
                messages.success(request, _("KIM-Konto gespeichert."))
                return redirect("manage:mailbox", pk=pk)
        else:
            errors = _form_errors(form)
        if request.htmx and request.POST.get("action") == "test":
            return render(request, "manage/mailbox_create.html#connection-result", {"checks": checks, "errors": errors})
    return render(
        request,
        "manage/mailbox_account.html",
        {"mailbox": mailbox, "account_form": form, "checks": checks, "errors": errors},
        status=422 if request.method == "POST" and form.errors else 200,
    )


# --- groups (wards) -------------------------------------------------------------------------------------------------


@manager_required
@require_http_methods(["GET", "POST"])
def groups(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = manage_forms.GroupCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            group = manage_services.group_create(user=request.user, name=form.cleaned_data["name"])
        except PortalError as exc:
            form.add_error("name", exc.message)
        else:
            messages.success(request, _("Gruppe angelegt."))
            return redirect("manage:group", pk=group.pk)
    return render(
        request,
        "manage/groups.html",
        {"groups": access.group_list_for_manager(), "form": form},
        status=422 if request.method == "POST" else 200,
    )


@manager_required
@require_http_methods(["GET", "POST"])
def group_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    group = get_object_or_404(access.group_list_for_manager(), pk=pk)
    form = manage_forms.GroupMemberForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            manage_services.group_member_add(user=request.user, group=group, member=form.cleaned_data["user"])
        except PortalError as exc:
            form.add_error("user", exc.message)
        else:
            messages.success(request, _("Zur Gruppe hinzugefügt."))
            return redirect("manage:group", pk=pk)
    return render(
        request,
        "manage/group_detail.html",
        {"group": group, "form": form},
        status=422 if request.method == "POST" else 200,
    )


@manager_required
@require_POST
def group_member_remove(request: AuthenticatedHttpRequest, pk: int, user_pk: int) -> HttpResponse:
    group = get_object_or_404(Group, pk=pk)
    member = get_object_or_404(group.user_set.all(), pk=user_pk)
    try:
        manage_services.group_member_remove(user=request.user, group=group, member=member)
    except PortalError as exc:  # the last owner of a mailbox the group owns
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Aus der Gruppe entfernt."))
    return redirect("manage:group", pk=pk)


# --- absences and substitutes --------------------------------------------------------------------------------------


@manager_required
@require_http_methods(["GET", "POST"])
def absences(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = manage_forms.ManagerAbsenceForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            manage_services.absence_set(
                user=request.user,
                person=data["person"],
                substitute=data["substitute"],
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Abwesenheit und Vertretung eingetragen."))
            return redirect("manage:absences")
    return render(
        request,
        "manage/absences.html",
        {"form": form, "absences": access.absence_list_for_manager()},
        status=422 if request.method == "POST" else 200,
    )


@manager_required
@require_POST
def absence_end(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        manage_services.absence_end(user=request.user, absence_id=pk)
    except Absence.DoesNotExist as exc:
        raise Http404 from exc
    messages.success(request, _("Abwesenheit beendet."))
    return redirect("manage:absences")


# --- bulk changes ---------------------------------------------------------------------------------------------------


@manager_required
@require_http_methods(["GET", "POST"])
def bulk(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Two steps over many mailboxes: grant a role to people and groups, or take someone out of every mailbox."""
    action = request.POST.get("action") if request.method == "POST" else None
    grant_form = manage_forms.BulkGrantForm(request.POST if action == "grant" else None)
    remove_form = manage_forms.RemoveEverywhereForm(request.POST if action == "remove" else None)
    if action == "grant" and grant_form.is_valid():
        data = grant_form.cleaned_data
        try:
            count = manage_services.memberships_bulk_set(
                user=request.user,
                mailboxes=list(data["mailboxes"]),
                people=list(data["people"]),
                groups=list(data["groups"]),
                role=data["role"],
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("%(count)d Mitgliedschaften gespeichert.") % {"count": count})
            return redirect("manage:bulk")
    if action == "remove" and remove_form.is_valid():
        person = remove_form.cleaned_data["person"]
        try:
            count = manage_services.user_remove_everywhere(
                user=request.user, person=person, leave_groups=remove_form.cleaned_data["leave_groups"]
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request,
                _("%(name)s: %(count)d Mitgliedschaften und Gruppen entfernt.")
                % {"name": display_name(person), "count": count},
            )
            kept = access.granting_groups_with_mailboxes(person) if remove_form.cleaned_data["leave_groups"] else []
            if kept:
                messages.warning(
                    request,
                    _(
                        "%(name)s ist weiter in Gruppen, die Berechtigungen vergeben und Postfächer öffnen: "
                        "%(groups)s. Aus diesen Gruppen nimmt die Administration Personen heraus."
                    )
                    % {"name": display_name(person), "groups": ", ".join(kept)},
                )
            return redirect("manage:bulk")
    return render(
        request,
        "manage/bulk.html",
        {"grant_form": grant_form, "remove_form": remove_form},
        status=422 if action else 200,
    )


# --- the access report ----------------------------------------------------------------------------------------------


@manager_required
@require_GET
def access_report(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Per mailbox (?postfach=) or per person (?person=), or the choice of either."""
    user_form = manage_forms.AccessUserForm(request.GET if "person" in request.GET else None)
    context: dict[str, Any] = {"user_form": user_form, "mailboxes": access.mailbox_list_for_manager()}
    if "postfach" in request.GET:
        mailbox = _mailbox_or_404(_int_or_404(request.GET["postfach"]))
        context.update(mailbox=mailbox, rows=access.access_for_mailbox(mailbox), scope="mailbox")
    elif user_form.is_bound:
        if not user_form.is_valid():
            raise Http404
        person = user_form.cleaned_data["person"]
        context.update(person=person, rows=access.access_for_user(person), scope="user")
    return render(request, "manage/access.html", context)


def _int_or_404(value: str) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise Http404 from exc


@manager_required
@require_GET
def access_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    """The access report as CSV (semicolons, UTF-8 with BOM: what German spreadsheet programs open directly),
    streamed. Audited: who took which report."""
    mailbox: Mailbox | None = None
    scope: dict[str, Any]
    if "postfach" in request.GET:
        mailbox = _mailbox_or_404(_int_or_404(request.GET["postfach"]))
        rows, scope, name = access.access_for_mailbox(mailbox), {"scope": "mailbox"}, mailbox.address
    elif "person" in request.GET:
        person = get_object_or_404(get_user_model(), pk=_int_or_404(request.GET["person"]))
        rows, scope, name = (
            access.access_for_user(person),
            {"scope": "user", "person": person.username},
            person.username,
        )
    else:
        rows, scope, name = access.access_for_house(), {"scope": "house"}, "haus"
    audit_record(actor=request.user, action="access.exported", mailbox=mailbox, rows=len(rows), **scope)
    writer = csv.writer(Echo(), delimiter=";")
    header = [
        _("Postfach"),
        _("KIM-Adresse"),
        _("Postfach aktiv"),
        _("Benutzername"),
        _("Name"),
        _("Rolle"),
        _("über Gruppe"),
        _("erteilt am"),
        _("erteilt von"),
    ]

    def lines() -> Iterator[str]:
        yield "\ufeff" + writer.writerow(header)
        for row in rows:
            # Names come from the directory and from managers' typing: none may become a formula.
            yield writer.writerow(
                safe_cell(cell)
                for cell in (
                    row.mailbox.display_name,
                    row.mailbox.address,
                    _("ja") if row.mailbox.is_active else _("nein"),
                    row.user.username if row.user is not None else "",
                    row.user_name,
                    row.role_label,
                    row.group.name if row.group is not None else "",
                    timezone.localtime(row.granted_at).strftime("%d.%m.%Y %H:%M")
                    if row.granted_at
                    else _("vor Einführung"),
                    row.granted_by,
                )
            )

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    response["Content-Disposition"] = f'attachment; filename="zugriffe-{safe}.csv"'
    return response
