"""KIM administration pages (/betrieb/kim/): a mailbox's account at the provider for its owners and the managers.

Every page starts from the user: a mailbox the user may not administer is 404 (its existence is not revealed), the
registration wizard is the managers' only. The Account Manager is asked on each page; when it cannot be asked the
page says so in one German sentence and shows what the portal itself knows.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox.models import Mailbox
from mailbox.permissions import is_manager
from operations import forms
from operations.clients.accountmanager import KIM_VERSION_LARGE, KIM_VERSION_LARGE_WARNING, OutOfOffice
from operations.models import KimRegistration
from operations.services import kimadmin


def _mailbox_or_404(request: AuthenticatedHttpRequest, pk: int) -> Mailbox:
    try:
        return kimadmin.kim_mailbox_get_for_user(request.user, pk)
    except Mailbox.DoesNotExist as exc:
        raise Http404 from exc


def _settle(request: AuthenticatedHttpRequest, mailbox: Mailbox) -> None:
    """An open password change of this mailbox is settled before anything else is shown or changed."""
    text = kimadmin.password_changes_settle_open(user=request.user, mailbox=mailbox)
    if text:
        messages.warning(request, text)


@require_GET
def kim_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    mailboxes = kimadmin.kim_mailbox_list_for_user(request.user)
    return render(
        request,
        "operations/kim_list.html",
        {"mailboxes": mailboxes, "can_register": is_manager(request.user)},
    )


def _account_page(
    request: AuthenticatedHttpRequest,
    mailbox: Mailbox,
    *,
    ttl_form: forms.DataTimeToLiveForm | None = None,
    status: int = 200,
) -> HttpResponse:
    overview = kimadmin.account_overview(account=mailbox.account)
    if ttl_form is None:
        ttl = overview.info.data_time_to_live if overview.info else None
        ttl = ttl if ttl is not None else (overview.limits.data_time_to_live if overview.limits else None)
        ttl_form = forms.DataTimeToLiveForm(initial={"data_time_to_live": ttl})
    limits = overview.limits
    used = None
    if limits is not None and limits.quota and limits.remaining_quota is not None:
        used = max(0, limits.quota - limits.remaining_quota)
    max_mail_size = overview.info.max_mail_size if overview.info else None
    return render(
        request,
        "operations/kim_account.html",
        {
            "mailbox": mailbox,
            "account": mailbox.account,
            "overview": overview,
            "ttl_form": ttl_form,
            "open_change": kimadmin.password_change_open(account=mailbox.account),
            "last_change": kimadmin.password_change_last(account=mailbox.account),
            "now": timezone.now(),
            "used_bytes": used,
            "used_percent": round(100 * limits.used_fraction) if limits and limits.used_fraction is not None else None,
            "max_mail_size": max_mail_size or (limits.max_mail_size if limits else None),
        },
        status=status,
    )


@require_GET
def kim_account(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    _settle(request, mailbox)
    return _account_page(request, mailbox)


@require_POST
def kim_data_time_to_live(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    form = forms.DataTimeToLiveForm(request.POST)
    if not form.is_valid():
        return _account_page(request, mailbox, ttl_form=form, status=422)
    try:
        kimadmin.data_time_to_live_set(user=request.user, mailbox=mailbox, days=form.cleaned_data["data_time_to_live"])
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Speicherdauer beim Anbieter geändert."))
    return redirect("operations:kim-account", pk=pk)


@require_http_methods(["GET", "POST"])
def kim_out_of_office(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    error = ""
    current: OutOfOffice | None = None
    if request.method == "POST":
        form = forms.OutOfOfficeForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                kimadmin.out_of_office_set(
                    user=request.user,
                    mailbox=mailbox,
                    active=data["active"],
                    start=data["starts_at"],
                    end=data["ends_at"],
                    text=data["text"],
                    seen=data["seen"],
                )
            except kimadmin.OutOfOfficeChanged as exc:
                error, current = exc.message, exc.current
                # The input stays; saving again is a deliberate choice over the note now shown.
                changed = request.POST.copy()
                changed["seen"] = kimadmin.out_of_office_fingerprint(current)
                form = forms.OutOfOfficeForm(changed)
                form.is_valid()
            except PortalError as exc:
                error = exc.message
            else:
                messages.success(
                    request,
                    _("Abwesenheitsnotiz gespeichert und eingeschaltet.")
                    if data["active"]
                    else _("Abwesenheitsnotiz gespeichert; sie ist ausgeschaltet."),
                )
                return redirect("operations:kim-out-of-office", pk=pk)
    else:
        note: OutOfOffice | None = None
        try:
            note = kimadmin.out_of_office_read(account=mailbox.account)
        except PortalError as exc:
            error = exc.message
        initial: dict[str, Any] = {"active": False}
        if note is not None:
            initial = {
                "active": note.active,
                "starts_at": timezone.localtime(note.start) if note.start else None,
                "ends_at": timezone.localtime(note.end) if note.end else None,
                "text": note.message,
                "seen": kimadmin.out_of_office_fingerprint(note),
            }
        form = forms.OutOfOfficeForm(initial=initial)
    return render(
        request,
        "operations/kim_out_of_office.html",
        {
            "mailbox": mailbox,
            "form": form,
            "error": error,
            "current": current,
            "max_length": forms.OUT_OF_OFFICE_MAX,
        },
        status=(409 if current else 422) if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
def kim_password(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    if request.method == "GET":
        _settle(request, mailbox)
    error = ""
    policy = None
    try:
        policy = kimadmin.service_information(account=mailbox.account)
    except PortalError as exc:
        error = exc.message
    form = forms.PasswordForm(
        request.POST if request.method == "POST" else None,
        policy_regex=policy.password_policy_regex if policy else "",
        policy_text=policy.password_policy_display if policy else "",
    )
    if request.method == "POST" and form.is_valid():
        try:
            kimadmin.password_change(user=request.user, mailbox=mailbox, new_password=form.cleaned_data["password"])
        except PortalError as exc:
            error = exc.message
        else:
            messages.success(
                request,
                _("Passwort geändert: beim Anbieter und im Portal (für den Abruf über das Clientmodul)."),
            )
            return redirect("operations:kim-account", pk=pk)
    return render(
        request,
        "operations/kim_password.html",
        {
            "mailbox": mailbox,
            "form": form,
            "error": error,
            "policy": policy,
            "open_change": kimadmin.password_change_open(account=mailbox.account),
        },
        status=422 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
def kim_version(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The "1.5+" opt-in: the spec's warning, a tick, then setAccount."""
    mailbox = _mailbox_or_404(request, pk)
    form = forms.KimVersionForm(request.POST if request.method == "POST" else None)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            kimadmin.kim_version_set(user=request.user, mailbox=mailbox, version=KIM_VERSION_LARGE)
        except PortalError as exc:
            error = exc.message
        else:
            messages.success(
                request, _("KIM-Version 1.5+ eingeschaltet: Das Postfach empfängt auch große Nachrichten.")
            )
            return redirect("operations:kim-account", pk=pk)
    return render(
        request,
        "operations/kim_version.html",
        {"mailbox": mailbox, "form": form, "error": error, "warning": KIM_VERSION_LARGE_WARNING},
        status=422 if request.method == "POST" else 200,
    )


@require_http_methods(["GET", "POST"])
def kim_deregister(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _confirmed_step(request, pk, revoke=False)


@require_http_methods(["GET", "POST"])
def kim_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _confirmed_step(request, pk, revoke=True)


def _confirmed_step(request: AuthenticatedHttpRequest, pk: int, *, revoke: bool) -> HttpResponse:
    mailbox = _mailbox_or_404(request, pk)
    form = forms.ConfirmForm(request.POST if request.method == "POST" else None)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            if revoke:
                kimadmin.account_deregistration_revoke(user=request.user, mailbox=mailbox)
            else:
                kimadmin.account_deregister(user=request.user, mailbox=mailbox)
        except PortalError as exc:
            error = exc.message
        else:
            messages.success(
                request,
                _("Abmeldung widerrufen: Das KIM-Konto bleibt bestehen.")
                if revoke
                else _("KIM-Konto beim Anbieter abgemeldet. Bis zum Abmeldedatum können Nachrichten abgerufen werden."),
            )
            return redirect("operations:kim-account", pk=pk)
    return render(
        request,
        "operations/kim_confirm.html",
        {"mailbox": mailbox, "form": form, "error": error, "revoke": revoke},
        status=422 if request.method == "POST" else 200,
    )


# --- registration wizard (managers) ------------------------------------------------------------------------------


def _manager_or_404(request: AuthenticatedHttpRequest) -> None:
    if not is_manager(request.user):
        raise Http404


def _registration_or_404(request: AuthenticatedHttpRequest, pk: int) -> KimRegistration:
    try:
        return kimadmin.kim_registration_get_for_user(request.user, pk)
    except KimRegistration.DoesNotExist as exc:
        raise Http404 from exc


@require_http_methods(["GET", "POST"])
def kim_register_start(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Step 1: address, owners, whose connection settings, the provider's registration code."""
    _manager_or_404(request)
    data = request.POST if request.method == "POST" else None
    error = ""
    rules = None
    template = None
    template_pk = (data or request.GET).get("template_account")
    accounts = kimadmin.registration_templates()
    # isdecimal, not isdigit: "²" is a digit that int() refuses (the filter would raise, a 500).
    template = accounts.filter(pk=template_pk).first() if template_pk and template_pk.isdecimal() else accounts.first()
    if template is not None:
        try:
            rules = kimadmin.registration_service_information(template=template)
        except PortalError as exc:
            error = exc.message
    form = forms.RegistrationAddressForm(
        data,
        initial={"template_account": template},
        reference_required=rules.reference_id_required is not False if rules else True,
        initial_password_required=rules.initial_password_required is not False if rules else True,
    )
    if data is not None and form.is_valid():
        cleaned = form.cleaned_data
        registration = kimadmin.registration_start(
            user=request.user,
            address=cleaned["address"],
            display_name=cleaned["display_name"],
            kind=cleaned["kind"],
            owners=list(cleaned["owners"]),
            template=cleaned["template_account"],
            reference_id=cleaned["reference_id"],
            initial_password=cleaned["initial_password"],
        )
        return redirect("operations:kim-register", pk=registration.pk)
    return render(
        request,
        "operations/kim_register.html",
        {
            "form": form,
            "step": KimRegistration.Step.ADDRESS,
            "error": error,
            "steps": KimRegistration.Step,
            "no_templates": template is None,
        },
        status=422 if data is not None else 200,
    )


@require_http_methods(["GET", "POST"])
def kim_register(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Steps 2–4 of one registration; "back" and "abbrechen" on every step."""
    _manager_or_404(request)
    registration = _registration_or_404(request, pk)
    action = request.POST.get("action", "") if request.method == "POST" else ""
    if action == "cancel":
        try:
            kimadmin.registration_abandon(user=request.user, registration=registration)
        except PortalError as exc:
            messages.error(request, exc.message)
            return redirect("operations:kim-register", pk=pk)
        messages.info(request, _("Registrierung abgebrochen; die eingegebenen Codes und Passwörter sind gelöscht."))
        return redirect("operations:kim-list")
    if action == "back" and registration.state == KimRegistration.State.DRAFT and registration.step > 2:
        registration.step -= 1
        registration.save(update_fields=["step"])
        return redirect("operations:kim-register", pk=pk)
    step = registration.step if registration.state == KimRegistration.State.DRAFT else KimRegistration.Step.CONFIRM
    data = request.POST if action == "next" else None
    error = ""
    context: dict[str, Any] = {"registration": registration, "steps": KimRegistration.Step, "step": step}
    if step == KimRegistration.Step.PASSWORD:
        policy = None
        if registration.template_account is not None:
            try:
                policy = kimadmin.registration_service_information(template=registration.template_account)
            except PortalError as exc:
                error = exc.message
        form: Any = forms.PasswordForm(
            data,
            policy_regex=policy.password_policy_regex if policy else "",
            policy_text=policy.password_policy_display if policy else "",
        )
        if data is not None and form.is_valid():
            kimadmin.registration_set_password(
                user=request.user, registration=registration, password=form.cleaned_data["password"]
            )
            return redirect("operations:kim-register", pk=pk)
        context.update(form=form, policy=policy)
    elif step == KimRegistration.Step.VERSION:
        form = forms.RegistrationVersionForm(
            data, initial={"kim_version": registration.kim_version or forms.KIM_VERSION_STANDARD}
        )
        if data is not None and form.is_valid():
            kimadmin.registration_set_version(
                user=request.user, registration=registration, kim_version=form.cleaned_data["kim_version"]
            )
            return redirect("operations:kim-register", pk=pk)
        context.update(form=form, warning=KIM_VERSION_LARGE_WARNING)
    else:
        if action == "register":
            try:
                result = kimadmin.registration_complete(user=request.user, registration=registration)
            except PortalError as exc:
                error = exc.message
                registration.refresh_from_db()
            else:
                return render(
                    request,
                    "operations/kim_register_done.html",
                    {"mailbox": result.mailbox, "checks": result.checks},
                )
        context.update(
            template=registration.template_account,
            owners=kimadmin.registration_owners(registration),
        )
    context["error"] = error
    context["registration"] = registration
    return render(request, "operations/kim_register.html", context, status=422 if request.method == "POST" else 200)
