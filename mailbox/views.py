from __future__ import annotations

from dataclasses import replace
from io import BytesIO

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from kimportal.errors import ClaimHeld, Conflict, NotAllowed, PortalError
from mailbox import selectors
from mailbox.forms import AbsenceForm, AssignForm, MembershipForm, MessageFilterForm, NoteForm, StateForm, VersionedForm
from mailbox.models import Absence, Attachment, Mailbox, Membership, Message
from mailbox.permissions import Action, can
from mailbox.services.absences import absence_create
from mailbox.services.absences import absence_end as absence_end_service
from mailbox.services.accounts import mailbox_fetch_request
from mailbox.services.assignment import message_assign as assignment_assign
from mailbox.services.assignment import message_take as assignment_take
from mailbox.services.assignment import message_unassign as assignment_unassign
from mailbox.services.claims import (
    message_break_lock,
    message_claim,
    message_release,
    page_token_new,
    page_token_valid,
)
from mailbox.services.guard import claim_held_error
from mailbox.services.members import membership_remove, membership_set
from mailbox.services.notes import note_add
from mailbox.services.notifications import notifications_mark_read
from mailbox.services.reading import message_access_record, message_open
from mailbox.services.rendering import message_html_document
from mailbox.services.states import message_set_state
from mailbox.storage import BlobError, blob_get

# Types a browser may show inline; everything else is only ever downloaded.
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"}


def _mailbox_or_404(user, pk: int) -> Mailbox:
    try:
        return selectors.mailbox_get_for_user(user, pk)
    except Mailbox.DoesNotExist as exc:
        raise Http404 from exc


def _message_or_404(user, pk: int) -> Message:
    try:
        return selectors.message_get_for_user(user, pk)
    except Message.DoesNotExist as exc:
        raise Http404 from exc


def _list_page(request: HttpRequest, *, mailbox: Mailbox | None, view: str | None = None) -> HttpResponse:
    form = MessageFilterForm(request.GET or None)
    filters = form.to_filter() if request.GET else selectors.MessageFilter()
    if view:
        filters = replace(filters, view=view)
    page = selectors.message_list_for_user(
        request.user,
        mailbox=mailbox,
        page=request.GET.get("page", 1),
        after=request.GET.get("after", ""),
        before=request.GET.get("before", ""),
        filters=filters,
    )
    mailboxes = list(selectors.mailbox_list_for_user(request.user))
    shown = [mailbox] if mailbox else mailboxes
    query = request.GET.copy()
    for key in ("page", "after", "before"):
        query.pop(key, None)
    context = {
        "mailboxes": mailboxes,
        "current_mailbox": mailbox,
        "current_role": mailbox.user_role if mailbox else None,
        "page_obj": page,
        "filter_form": form if request.GET else MessageFilterForm(initial={"view": filters.view}),
        "filters": filters,
        "fixed_view": view,
        "querystring": query.urlencode(),
        # New mail is prepended live only to an unfiltered first page.
        "live_mailboxes": " ".join(f"mb-{m.pk}" for m in shown) if _is_plain(filters) else "",
        "labels": selectors.dienstkennung_badges().values(),
    }
    template = "mailbox/inbox.html"
    if request.htmx and request.htmx.target == "message-list" and not request.htmx.history_restore_request:
        template += "#message-list"
    return render(request, template, context)


def _is_plain(f) -> bool:
    return (
        f.view in ("all", "open", "unassigned")
        and not (f.state or f.dienstkennung or f.date_from or f.date_to or f.q)
        and f.sort == "-received"
    )


@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    return _list_page(request, mailbox=None)


@require_GET
def mine(request: HttpRequest) -> HttpResponse:
    """ "Mir zugewiesen": the personal view across all mailboxes."""
    return _list_page(request, mailbox=None, view="mine")


@require_GET
def mailbox_messages(request: HttpRequest, pk: int) -> HttpResponse:
    return _list_page(request, mailbox=_mailbox_or_404(request.user, pk))


def _detail_context(request: HttpRequest, message: Message, **extra) -> dict:
    return {
        "mailboxes": selectors.mailbox_list_for_user(request.user),
        "current_mailbox": message.mailbox,
        "message": message,
        "members": selectors.mailbox_members(message.mailbox),
        "inline_types": INLINE_TYPES,
        **extra,
    }


@require_GET
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = Message.objects.visible_to(request.user).filter(pk=pk).only("pk", "mailbox_id", "state").first()
    if message is None:
        raise Http404
    role = selectors.user_role(request.user, message.mailbox_id)
    # Names this page load: its socket and its claim button say which page holds the lock.
    page = page_token_new(user=request.user, message_id=message.pk)
    # Opening a message to work on it takes the read-lock when it is free.
    works_on_it = can(role, Action.PROCESS) and message.state != Message.State.DONE
    message_open(user=request.user, message=message, claim_page=page if works_on_it else None)
    message = selectors.message_detail_for_user(request.user, pk, role=role)
    return render(request, "mailbox/message_detail.html", _detail_context(request, message, page_token=page))


def _work_response(
    request: HttpRequest, pk: int, *, error: str = "", notice: str = "", status: int = 200
) -> HttpResponse:
    message = selectors.message_detail_for_user(request.user, pk)
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("mailbox:message-detail", pk=pk)
    context = _detail_context(request, message, error=error, notice=notice)
    response = render(request, "mailbox/message_detail.html#work", context, status=status)
    # The lock panel shows version and holder; refresh it too.
    lock_context = {"message": message, "oob": True, "user": request.user, "page_token": _page_token(request, pk)}
    response.content += render_to_string("mailbox/partials/_lock_panel.html", lock_context, request).encode()
    return response


def _run_action(request: HttpRequest, pk: int, form_class, action) -> HttpResponse:
    message = _message_or_404(request.user, pk)
    form = form_class(request.POST)
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        return _work_response(request, pk, error=errors, status=422)
    try:
        notice = action(message, form.cleaned_data)
    except Conflict as exc:
        return _work_response(request, pk, error=exc.message, status=409)
    except ClaimHeld as exc:
        return _work_response(request, pk, error=exc.message, status=423)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        return _work_response(request, pk, error=exc.message, status=422)
    return _work_response(request, pk, notice=notice)


@require_POST
def message_take(request: HttpRequest, pk: int) -> HttpResponse:
    def act(message, data):
        assignment_take(user=request.user, message=message, version=data["version"])
        return _("Sie sind jetzt verantwortlich.")

    return _run_action(request, pk, VersionedForm, act)


@require_POST
def message_assign(request: HttpRequest, pk: int) -> HttpResponse:
    def act(message, data):
        updated = assignment_assign(
            user=request.user, message=message, version=data["version"], assignee_id=data["assignee"], note=data["note"]
        )
        return _("Zugewiesen an %(name)s.") % {"name": selectors.display_name(updated.assignee)}

    return _run_action(request, pk, AssignForm, act)


@require_POST
def message_unassign(request: HttpRequest, pk: int) -> HttpResponse:
    def act(message, data):
        assignment_unassign(user=request.user, message=message, version=data["version"])
        return _("Zuständigkeit entfernt.")

    return _run_action(request, pk, VersionedForm, act)


@require_POST
def message_state(request: HttpRequest, pk: int) -> HttpResponse:
    def act(message, data):
        updated = message_set_state(
            user=request.user, message=message, version=data["version"], state=data["state"], due_at=data.get("due_at")
        )
        return _("Status: %(state)s.") % {"state": updated.get_state_display()}

    return _run_action(request, pk, StateForm, act)


@require_POST
def message_note(request: HttpRequest, pk: int) -> HttpResponse:
    def act(message, data):
        note_add(user=request.user, message=message, version=data["version"], body=data["body"])
        return _("Notiz gespeichert.")

    return _run_action(request, pk, NoteForm, act)


def _lock_response(request: HttpRequest, pk: int, *, error: str = "") -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("mailbox:message-detail", pk=pk)
    message = selectors.message_row_for_user(request.user, pk)
    message.role = selectors.user_role(request.user, message.mailbox_id)
    context = {"message": message, "error": error, "page_token": _page_token(request, pk)}
    html = render_to_string("mailbox/partials/_lock_panel.html", context, request)
    response = HttpResponse(html)
    # Action buttons depend on who holds the lock: tell the page (portal.js re-evaluates).
    return trigger_client_event(response, "lock-changed")


def _page_token(request: HttpRequest, pk: int) -> str:
    """The page load that sent the request, when the server handed that token out to this user."""
    token = request.POST.get("page", "")
    return token if page_token_valid(token, user=request.user, message_id=pk) else ""


@require_POST
def message_claim_view(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message_or_404(request.user, pk)
    try:
        result = message_claim(user=request.user, message=message, page=_page_token(request, pk))
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    error = "" if result.won else claim_held_error(result.message).message
    return _lock_response(request, pk, error=error)


@require_POST
def message_release_view(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message_or_404(request.user, pk)
    message_release(user=request.user, message=message, reason="button")
    return _lock_response(request, pk)


@require_POST
def message_break_lock_view(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message_or_404(request.user, pk)
    try:
        message_break_lock(user=request.user, message=message)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    return _lock_response(request, pk)


@require_GET
def message_html(request: HttpRequest, pk: int) -> HttpResponse:
    """The sanitized HTML body as its own document, for a sandboxed iframe with a locked-down CSP."""
    message = _message_or_404(request.user, pk)
    message_access_record(user=request.user, message=message, action="message.html_viewed")
    response = HttpResponse(message_html_document(message), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
    )
    response._csp_exempt = True
    return response


@require_GET
def message_raw(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message_or_404(request.user, pk)
    try:
        raw = blob_get(message.raw_sha256)
    except BlobError:
        return HttpResponse(
            _("Der Rohtext dieser Nachricht ist beschädigt oder fehlt. Bitte die Administration informieren."),
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    message_access_record(user=request.user, message=message, action="message.raw_viewed")
    response = HttpResponse(raw, content_type="text/plain; charset=utf-8")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="nachricht-{message.pk}.eml"'
    return response


@require_GET
def attachment_download(request: HttpRequest, pk: int, position: int) -> HttpResponse:
    try:
        attachment = selectors.attachment_get_for_user(request.user, message_pk=pk, position=position)
    except Attachment.DoesNotExist as exc:
        raise Http404 from exc
    try:
        data = blob_get(attachment.sha256)
    except BlobError:
        return HttpResponse(
            _("Der Anhang ist beschädigt oder fehlt (Prüfsumme stimmt nicht)."),
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    inline = request.GET.get("inline") == "1" and attachment.content_type in INLINE_TYPES
    message_access_record(
        user=request.user,
        message=attachment.message,
        action="attachment.downloaded",
        attachment=attachment.filename,
        inline=inline,
    )
    content_type = attachment.content_type if attachment.content_type in INLINE_TYPES else "application/octet-stream"
    if content_type == "text/plain":
        content_type = "text/plain; charset=utf-8"
    # FileResponse writes an RFC 6266 Content-Disposition with a filename* for umlauts.
    response = FileResponse(
        BytesIO(data), as_attachment=not inline, filename=attachment.filename, content_type=content_type
    )
    if content_type == "application/pdf":
        # Chrome's PDF viewer does not run in a CSP sandbox; it isolates the document itself.
        response["Content-Security-Policy"] = "frame-ancestors 'self'"
    else:
        response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self' data:"
    response._csp_exempt = True
    return response


@require_POST
def mailbox_fetch_now(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request.user, pk)
    if mailbox_fetch_request(user=request.user, mailbox=mailbox):
        messages.info(request, _("Abruf wurde angestoßen."))
    else:
        messages.error(request, _("Für dieses Postfach ist kein aktives KIM-Konto eingerichtet."))
    return redirect("mailbox:mailbox-messages", pk=mailbox.pk)


@require_GET
def notifications(request: HttpRequest) -> HttpResponse:
    items = selectors.notification_list_for_user(request.user)
    return render(
        request,
        "mailbox/notifications.html",
        {
            "items": items,
            "mailboxes": selectors.mailbox_list_for_user(request.user),
        },
    )


@require_POST
def notifications_read(request: HttpRequest) -> HttpResponse:
    notifications_mark_read(user=request.user)
    return redirect("mailbox:notifications")


@require_http_methods(["GET", "POST"])
def absences(request: HttpRequest) -> HttpResponse:
    substitutes = selectors.substitute_candidates(request.user)
    form = AbsenceForm(request.POST or None, substitutes=substitutes)
    if request.method == "POST" and form.is_valid():
        try:
            absence_create(
                user=request.user,
                substitute=form.cleaned_data["substitute"],
                starts_at=form.cleaned_data["starts_at"],
                ends_at=form.cleaned_data["ends_at"],
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(
                request, _("Abwesenheit gespeichert. Neue Zuweisungen gehen in dieser Zeit an Ihre Vertretung.")
            )
            return redirect("mailbox:absences")
    return render(
        request,
        "mailbox/absences.html",
        {
            "form": form,
            "absences": selectors.absence_list_for_user(request.user),
            "mailboxes": selectors.mailbox_list_for_user(request.user),
        },
        status=422 if request.method == "POST" else 200,
    )


@require_POST
def absence_end(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        absence_end_service(user=request.user, absence_id=pk)
    except Absence.DoesNotExist as exc:
        raise Http404 from exc
    messages.success(request, _("Abwesenheit beendet."))
    return redirect("mailbox:absences")


@require_http_methods(["GET", "POST"])
def mailbox_members_view(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request.user, pk)
    if not can(mailbox.user_role, Action.MANAGE):
        raise PermissionDenied
    form = MembershipForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            membership_set(
                user=request.user,
                mailbox=mailbox,
                username=form.cleaned_data["user"],
                group_name=form.cleaned_data["group"],
                role=form.cleaned_data["role"],
            )
        except PortalError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Mitgliedschaft gespeichert."))
            return redirect("mailbox:mailbox-members", pk=pk)
    return render(
        request,
        "mailbox/members.html",
        {
            "mailbox": mailbox,
            "current_mailbox": mailbox,
            "form": form,
            "memberships": selectors.membership_list(mailbox),
            "mailboxes": selectors.mailbox_list_for_user(request.user),
        },
    )


@require_POST
def mailbox_member_remove(request: HttpRequest, pk: int, membership_pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request.user, pk)
    try:
        membership_remove(user=request.user, mailbox=mailbox, membership_id=membership_pk)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except Membership.DoesNotExist as exc:
        raise Http404 from exc
    except PortalError as exc:
        messages.error(request, exc.message)
    return redirect("mailbox:mailbox-members", pk=pk)
