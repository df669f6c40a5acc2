"""One message: the detail page, and the work on it (take, assign, state, note, read-lock) with the conflict guard."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import get_script_prefix, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import trigger_client_event

from audit.selectors import trail_for_message
from kimportal.errors import ClaimHeld, Conflict, NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox import selectors
from mailbox.forms import AssignForm, AttachmentFilterForm, NoteForm, StateForm, VersionedForm
from mailbox.models import Attachment, Membership, Message
from mailbox.permissions import Action, can, is_manager
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
from mailbox.services.notes import mention_names, note_add
from mailbox.services.reading import message_access_record, message_open
from mailbox.services.states import message_set_state
from mailbox.views.files import INLINE_TYPES, is_executable_name, served_type
from mailbox.views.lookup import message_or_404

# The page's links and forms: a dozen URLs of the same message, reversed once per process (and script prefix) with
# a stand-in id that each page replaces — forty {% url %} tags were a tenth of the page's rendering.
_MESSAGE_URL_NAMES = {
    name.replace("-", "_"): f"mailbox:message-{name}"
    for name in (
        *("assign", "attachments", "conversation", "detail", "forward", "html", "legal-hold", "note"),
        *("raw", "reply", "reply-all", "state", "take", "unassign"),
    )
}
_STAND_IN = 987654321


@functools.lru_cache(maxsize=8)
def _url_patterns(script_prefix: str) -> tuple[dict[str, str], str, str]:
    # reverse() prepends the script prefix of the current request.
    message = {key: reverse(name, args=[_STAND_IN]) for key, name in _MESSAGE_URL_NAMES.items()}
    mailbox = reverse("mailbox:mailbox-messages", args=[_STAND_IN])
    attachment = reverse("mailbox:attachment-download", args=[_STAND_IN, _STAND_IN + 1])
    return message, mailbox, attachment


def _message_urls(message: Message) -> dict[str, str]:
    message_urls, mailbox_url, _attachment = _url_patterns(get_script_prefix())
    pk = str(message.pk)
    urls = {key: url.replace(str(_STAND_IN), pk) for key, url in message_urls.items()}
    urls["mailbox"] = mailbox_url.replace(str(_STAND_IN), str(message.mailbox_id))
    return urls


def _attachment_links(message: Message, attachments: Iterable[Attachment]) -> list[tuple[Attachment, str, bool, bool]]:
    """Listed attachments (not inline images): each with its download URL, whether it can be shown and whether its
    name is one Windows would run."""
    attachment_url = _url_patterns(get_script_prefix())[2].replace(str(_STAND_IN), str(message.pk))
    position = str(_STAND_IN + 1)
    return [
        (
            a,
            attachment_url.replace(position, str(a.position)),
            served_type(a) in INLINE_TYPES,
            is_executable_name(a.filename),
        )
        for a in attachments
        if not a.is_inline
    ]


def _detail_context(request: AuthenticatedHttpRequest, message: Message, **extra: Any) -> dict[str, Any]:
    """The page's context for a message from message_detail_lists() (which gave it the user's role)."""
    # The message's own audit trail: for its mailbox's owners and for managers, not for every reader.
    owner = message.role == Membership.Role.OWNER
    return {
        "audit_trail": trail_for_message(message.pk) if owner or is_manager(request.user) else None,
        "mailboxes": selectors.mailbox_list_for_user(request.user),
        "current_mailbox": message.mailbox,
        "message": message,
        # The assign form is shown only to those who may process (a ward's hundreds of members are not read
        # for an observer).
        "member_choices": selectors.mailbox_member_choices(message.mailbox_id)
        if can(message.role, Action.PROCESS)
        else [],
        "urls": _message_urls(message),
        "attachment_links": _attachment_links(message, message.attachment_list),
        **extra,
    }


@require_GET
def message_attachments(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """All attachments of a message, page by page: its own page lists the first ATTACHMENTS_SHOWN of them."""
    message = message_or_404(request.user, pk)
    form = AttachmentFilterForm(request.GET)
    name = form.cleaned_data["name"] if form.is_valid() else ""
    page = selectors.attachment_page_for_user(
        request.user, message_pk=message.pk, page=request.GET.get("seite", 1), name=name
    )
    # Their names are the message's content: read like the page, recorded like it (which page of the list, and the
    # name searched for, which says what the reader was looking for).
    details: dict[str, Any] = {"page": page.number, **({"name": name} if name else {})}
    message_access_record(user=request.user, message=message, action="message.attachments_viewed", **details)
    context = {
        "form": form,
        "name": name,
        "mailboxes": selectors.mailbox_list_for_user(request.user),
        "current_mailbox": message.mailbox,
        "message": message,
        "page_obj": page,
        "attachment_links": _attachment_links(message, page.object_list),
        "urls": _message_urls(message),
    }
    return render(request, "mailbox/message_attachments.html", context)


@require_GET
def message_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _detail_page(request, pk)


def _detail_page(request: AuthenticatedHttpRequest, pk: int, *, status: int = 200, **extra: Any) -> HttpResponse:
    # The whole row at once, with the audit's snapshots (subject, address): opening it reads nothing more.
    try:
        message, lists = selectors.message_detail_row_for_user(request.user, pk)
    except Message.DoesNotExist as exc:
        raise Http404 from exc
    role = selectors.user_role(request.user, message.mailbox_id)
    # Names this page load: its socket and its claim button say which page holds the lock.
    page = page_token_new(user=request.user, message_id=message.pk)
    # Opening a message to work on it takes the read-lock when it is free (the row then shows the lock).
    works_on_it = can(role, Action.PROCESS) and message.state != Message.State.DONE
    readers = message_open(user=request.user, message=message, claim_page=page if works_on_it else None)
    # After opening: the readers include this user (opening returns them on PostgreSQL).
    selectors.message_detail_lists(request.user, message, lists, role=role, readers=readers)
    context = _detail_context(request, message, page_token=page, **extra)
    return render(request, "mailbox/message_detail.html", context, status=status)


def _work_response(
    request: AuthenticatedHttpRequest,
    pk: int,
    *,
    error: str = "",
    notice: str = "",
    status: int = 200,
    note_draft: str = "",
    assign_draft: dict[str, Any] | None = None,
) -> HttpResponse:
    if not request.htmx and error and (note_draft or assign_draft):
        # Without htmx a redirect would drop what the refused form held: the page comes back with it in its fields.
        return _detail_page(request, pk, status=status, error=error, note_draft=note_draft, assign_draft=assign_draft)
    message = selectors.message_detail_for_user(request.user, pk)
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("mailbox:message-detail", pk=pk)
    context = _detail_context(
        request, message, error=error, notice=notice, note_draft=note_draft, assign_draft=assign_draft
    )
    response = render(request, "mailbox/message_detail.html#work", context, status=status)
    # The lock panel shows version and holder; refresh it too.
    lock_context = {"message": message, "oob": True, "user": request.user, "page_token": _page_token(request, pk)}
    response.content += render_to_string("mailbox/partials/_lock_panel.html", lock_context, request).encode()
    return response


def _message_or_refusal(request: AuthenticatedHttpRequest, pk: int) -> Message | HttpResponse:
    """The message of a work or lock action; for a page still open on a message the user may no longer see (removed
    from the mailbox or its ward meanwhile) the refusal with the reason (423), swapped into the panel: htmx swaps
    neither 404 nor 403, and the page-wide notice for those could only say "abgelehnt". Anyone else gets the 404."""
    try:
        return message_or_404(request.user, pk)
    except Http404:
        if not selectors.message_out_of_reach(request.user, pk):
            raise
    error = _(
        "Sie haben keinen Zugriff mehr auf diese Nachricht (z. B. aus dem Postfach oder der Station entfernt). "
        "Ihre Aktion wurde nicht ausgeführt; diese Seite kann nichts mehr ändern."
    )
    if not request.htmx:
        messages.error(request, error)
        return redirect("mailbox:inbox")
    # The panel the action targets is replaced; the other one follows out of band (both lose their buttons).
    target = "lock-panel" if request.htmx.target == "lock-panel" else "work"
    return render(request, "mailbox/partials/_out_of_reach.html", {"error": error, "target": target}, status=423)


def _run_action(
    request: AuthenticatedHttpRequest,
    pk: int,
    form_class: type[forms.Form],
    action: Callable[[Message, dict[str, Any]], str],
    *,
    keeps_note: bool = False,
    keeps_assignment: bool = False,
) -> HttpResponse:
    message = _message_or_refusal(request, pk)
    if isinstance(message, HttpResponse):
        return message
    form = form_class(request.POST)
    # A refused note or assignment comes back in its fields: a colleague's change meanwhile must not cost the text
    # typed (nor whom it was for).
    kept: dict[str, Any] = {"note_draft": request.POST.get("body", "") if keeps_note else ""}
    if keeps_assignment:
        assignee = request.POST.get("assignee", "")
        kept["assign_draft"] = {
            "assignee": int(assignee) if assignee.isascii() and assignee.isdigit() and len(assignee) <= 18 else None,
            "note": request.POST.get("note", "")[:500],
        }
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        return _work_response(request, pk, error=errors, status=422, **kept)
    try:
        notice = action(message, form.cleaned_data)
    except Conflict as exc:
        return _work_response(request, pk, error=exc.message, status=409, **kept)
    except ClaimHeld as exc:
        return _work_response(request, pk, error=exc.message, status=423, **kept)
    except NotAllowed as exc:
        if not request.htmx:
            raise PermissionDenied(exc.message) from exc
        # A page still showing the buttons of a role lowered meanwhile: htmx swaps no 403 (the page-wide notice could
        # only say "abgelehnt"). The panel comes back as the role now held draws it, with the reason.
        return _work_response(request, pk, error=exc.message, status=423, **kept)
    except PortalError as exc:
        return _work_response(request, pk, error=exc.message, status=422, **kept)
    return _work_response(request, pk, notice=notice)


@require_POST
def message_take(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def act(message: Message, data: dict[str, Any]) -> str:
        assignment_take(user=request.user, message=message, version=data["version"])
        return _("Sie sind jetzt verantwortlich.")

    return _run_action(request, pk, VersionedForm, act)


@require_POST
def message_assign(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def act(message: Message, data: dict[str, Any]) -> str:
        updated = assignment_assign(
            user=request.user, message=message, version=data["version"], assignee_id=data["assignee"], note=data["note"]
        )
        assert updated.assignee is not None  # message_assign() always leaves someone responsible
        return _("Zugewiesen an %(name)s.") % {"name": selectors.display_name(updated.assignee)}

    return _run_action(request, pk, AssignForm, act, keeps_assignment=True)


@require_POST
def message_unassign(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def act(message: Message, data: dict[str, Any]) -> str:
        assignment_unassign(user=request.user, message=message, version=data["version"])
        return _("Zuständigkeit entfernt.")

    return _run_action(request, pk, VersionedForm, act)


@require_POST
def message_state(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def act(message: Message, data: dict[str, Any]) -> str:
        updated = message_set_state(
            user=request.user, message=message, version=data["version"], state=data["state"], due_at=data.get("due_at")
        )
        return _("Status: %(state)s.") % {"state": updated.get_state_display()}

    return _run_action(request, pk, StateForm, act)


@require_POST
def message_note(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def act(message: Message, data: dict[str, Any]) -> str:
        note = note_add(user=request.user, message=message, body=data["body"])
        # A name that is no member of the mailbox reaches no one: the writer must know, not assume they were told.
        unreached = sorted(mention_names(note.body) - {u.username.lower() for u in note.mentions.all()})
        if unreached:
            return _("Notiz gespeichert. Nicht benachrichtigt, weil nicht Mitglied dieses Postfachs: %(names)s.") % {
                "names": ", ".join(f"@{name}" for name in unreached)
            }
        return _("Notiz gespeichert.")

    return _run_action(request, pk, NoteForm, act, keeps_note=True)


def _lock_response(request: AuthenticatedHttpRequest, pk: int, *, error: str = "", status: int = 200) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("mailbox:message-detail", pk=pk)
    message = message_or_404(request.user, pk)
    message.role = selectors.user_role(request.user, message.mailbox_id)
    context = {"message": message, "error": error, "page_token": _page_token(request, pk)}
    html = render_to_string("mailbox/partials/_lock_panel.html", context, request)
    response = HttpResponse(html, status=status)
    # Action buttons depend on who holds the lock: tell the page (portal.js re-evaluates).
    return trigger_client_event(response, "lock-changed")


def _page_token(request: AuthenticatedHttpRequest, pk: int) -> str:
    """The page load that sent the request, when the server handed that token out to this user."""
    token = request.POST.get("page", "")
    return token if page_token_valid(token, user=request.user, message_id=pk) else ""


@require_POST
def message_claim_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    message = _message_or_refusal(request, pk)
    if isinstance(message, HttpResponse):
        return message
    try:
        result = message_claim(user=request.user, message=message, page=_page_token(request, pk))
    except NotAllowed as exc:
        return _lock_refusal(request, pk, exc)
    error = "" if result.won else claim_held_error(result.message).message
    return _lock_response(request, pk, error=error)


@require_POST
def message_release_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    message = _message_or_refusal(request, pk)
    if isinstance(message, HttpResponse):
        return message
    message_release(user=request.user, message=message, reason="button")
    return _lock_response(request, pk)


@require_POST
def message_break_lock_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    message = _message_or_refusal(request, pk)
    if isinstance(message, HttpResponse):
        return message
    try:
        message_break_lock(user=request.user, message=message)
    except NotAllowed as exc:
        return _lock_refusal(request, pk, exc)
    return _lock_response(request, pk)


def _lock_refusal(request: AuthenticatedHttpRequest, pk: int, exc: NotAllowed) -> HttpResponse:
    """A lock action the user's role does not allow: 403 without htmx; with htmx (a page still showing the buttons
    of a role lowered meanwhile; htmx swaps no 403) the panel as the role now held draws it, with the reason."""
    if not request.htmx:
        raise PermissionDenied(exc.message) from exc
    return _lock_response(request, pk, error=exc.message, status=423)
