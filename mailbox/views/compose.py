"""The send path's pages: compose, reply, forward, drafts that save themselves, send, the sent message with its
delivery timeline, "Gesendet", the outbox and the eArztbrief acknowledgement.

Thin like the other views: a form parses, one service writes (the send button saves the draft's last edits
first, then sends: two services, because what is sent must be exactly what the user saw), selectors read.
Every object comes through the user's selectors, so someone else's draft or sent message is a 404.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponse, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget, trigger_client_event

from directory import selectors as directory_selectors
from directory.clients.vzd import VzdError
from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox import selectors
from mailbox.forms_compose import (
    SPLIT,
    DraftCheckForm,
    DraftForm,
    RemoveRecipientForm,
    UncertainForm,
    VersionForm,
    kim_address_error,
)
from mailbox.models import Mailbox, OutgoingMessage
from mailbox.selectors.outbox import (
    acknowledgement_for,
    drafts_for_user,
    left_drafts_for_user,
    outgoing_get_for_user,
    outgoing_list_for_user,
    outgoing_timeline,
    own_draft_out_of_reach,
    sendable_mailboxes_for_user,
    thread_for_user,
)
from mailbox.services.audit import audit_record
from mailbox.services.compose import (
    MAX_RECIPIENTS,
    OutgoingData,
    is_arztbrief,
    outgoing_attachment_add,
    outgoing_attachment_remove,
    outgoing_discard,
    outgoing_draft_save,
    outgoing_draft_take_over,
    outgoing_forward_start,
    outgoing_reply_start,
    recipient_limit_notice,
    too_many_recipients,
    too_many_recipients_text,
)
from mailbox.services.outbox import (
    AttachmentsChanged,
    outgoing_acknowledge,
    outgoing_claim,
    outgoing_release,
    outgoing_resolve_uncertain,
    outgoing_retry,
    outgoing_send,
    outgoing_withdraw,
)
from mailbox.services.preflight import PreflightFailed
from mailbox.storage import BlobError, blob_get
from mailbox.views.lookup import mailbox_or_404, message_or_404

DRAFT = OutgoingMessage.State.DRAFT


def _sendable(request: AuthenticatedHttpRequest) -> list[Mailbox]:
    return list(sendable_mailboxes_for_user(request.user))


def _outgoing_or_404(request: AuthenticatedHttpRequest, pk: int) -> OutgoingMessage:
    # The selector answers 404 for strangers and for another author's draft.
    return outgoing_get_for_user(request.user, pk)


def _draft_or_404(request: AuthenticatedHttpRequest, pk: int) -> OutgoingMessage:
    """The user's own draft; a sent message is not a draft any more (its page is the detail page)."""
    draft = _outgoing_or_404(request, pk)
    if draft.state != DRAFT:
        raise Http404
    if selectors.user_role(request.user, draft.mailbox_id) not in ("processor", "owner"):
        raise PermissionDenied(_("Aus diesem Postfach dürfen Sie nicht senden."))
    if draft.author_id != request.user.pk:
        # A colleague's draft is theirs to finish; the mailbox's members see it, only its author edits it.
        raise PermissionDenied(_("Diesen Entwurf kann nur die Person bearbeiten, die ihn begonnen hat."))
    return draft


def _nav(request: AuthenticatedHttpRequest, **extra: Any) -> dict[str, Any]:
    return {"mailboxes": selectors.mailbox_list_for_user(request.user), **extra}


def _chips(addresses: list[str]) -> list[dict[str, str]]:
    return [{"address": a, "display_name": a, "version": ""} for a in addresses]


def _pk(text: str) -> int | None:
    """A primary key as typed into a URL or a hand-made form, else None: str.isdigit() takes "²" (int() does not),
    and int() refuses numbers over 4,300 digits; both would be a server error."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _form_errors(form: DraftForm) -> list[str]:
    """The form's errors in German, each naming its field where the message alone would not (Django's "at most
    998 characters" says nothing of the subject); address errors name the address already."""
    out = []
    for name, errors in form.errors.items():
        named = name in form.fields and name not in ("to", "cc", "to_typed", "cc_typed")
        label = form[name].label if named else ""
        out += [f"{label}: {e}" if label else str(e) for e in errors]
    return out


def _shown(draft: OutgoingMessage, form: DraftForm) -> dict[str, Any]:
    """What the page's fields hold: the stored draft, or after a refused save (without JavaScript) what was sent,
    so that a too long subject or a mistyped address costs nothing of the text typed since the last save."""
    if not form.is_bound:
        return {
            "mailbox_id": draft.mailbox_id,
            "subject": draft.subject,
            "body": draft.body,
            "dienstkennung": draft.dienstkennung,
            "to": list(draft.to),
            "cc": list(draft.cc),
            "to_typed": "",
            "cc_typed": "",
        }
    data = form.data
    listed = data.getlist if isinstance(data, QueryDict) else lambda name: list(data.get(name) or [])
    mailbox = str(data.get("mailbox", ""))
    return {
        "mailbox_id": _pk(mailbox) or draft.mailbox_id,
        "subject": data.get("subject", ""),
        "body": data.get("body", ""),
        "dienstkennung": data.get("dienstkennung") or draft.dienstkennung,
        "to": [a for a in listed("to") if a.strip()],
        "cc": [a for a in listed("cc") if a.strip()],
        "to_typed": data.get("to_typed", ""),
        "cc_typed": data.get("cc_typed", ""),
    }


def _draft_context(
    request: AuthenticatedHttpRequest, draft: OutgoingMessage, form: DraftForm | None = None, **extra: Any
) -> dict[str, Any]:
    mailboxes = _sendable(request)
    if form is None:
        form = DraftForm(
            initial={
                "mailbox": draft.mailbox_id,
                "subject": draft.subject,
                "body": draft.body,
                "dienstkennung": draft.dienstkennung,
                "version": draft.version,
            },
            mailboxes=mailboxes,
        )
    shown = _shown(draft, form)
    return _nav(
        request,
        draft=draft,
        form=form,
        shown=shown,
        form_errors=_form_errors(form) if form.is_bound else [],
        to_chips=_chips(shown["to"]),
        cc_chips=_chips(shown["cc"]),
        attachments=getattr(draft, "attachment_list", None) or list(draft.attachments.all()),
        current_mailbox=draft.mailbox,
        max_recipients=MAX_RECIPIENTS,
        recipient_limit=_recipient_limit(shown),
        **extra,
    )


def _recipient_limit(shown: dict[str, Any]) -> dict[str, Any]:
    """The recipient limit as the compose page applies it while chips are added and removed (compose.js): the number
    and the sentences from here, what the page shows now (a draft saved with more keeps them all and says so)."""
    chosen = len({a.strip().lower() for a in [*shown["to"], *shown["cc"]]})
    return {
        "max": MAX_RECIPIENTS,
        "notice": recipient_limit_notice(chosen),
        "full": recipient_limit_notice(MAX_RECIPIENTS),
        "over": too_many_recipients_text("{count}", "{over}"),
    }


# --- starting a message ------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def compose(request: AuthenticatedHttpRequest) -> HttpResponse:
    """ "Neue Nachricht": choose the sending mailbox; the draft exists from the first click, so that nothing typed
    afterwards can be lost (autosave needs a draft to save into)."""
    mailboxes = _sendable(request)
    if not mailboxes:
        raise PermissionDenied(_("Sie dürfen aus keinem Postfach senden."))
    chosen = request.POST.get("mailbox") or request.GET.get("postfach") or ""
    if request.method == "POST":
        if _pk(chosen) is None:
            context = _nav(request, sendable=mailboxes, selected=mailboxes[0].pk)
            context["error"] = _("Bitte ein Postfach wählen.")
            return render(request, "mailbox/compose_start.html", context, status=422)
        if int(chosen) not in {m.pk for m in mailboxes}:
            raise Http404
        draft = outgoing_draft_save(user=request.user, mailbox_id=int(chosen), data=OutgoingData())
        return redirect("mailbox:draft-edit", pk=draft.pk)
    selected = _pk(chosen) or mailboxes[0].pk
    return render(request, "mailbox/compose_start.html", _nav(request, sendable=mailboxes, selected=selected))


def _start(request: AuthenticatedHttpRequest, pk: int, how: str) -> HttpResponse:
    message = message_or_404(request.user, pk)
    try:
        if how == "forward":
            draft = outgoing_forward_start(user=request.user, message=message)
        else:
            draft = outgoing_reply_start(user=request.user, message=message, reply_all=how == "reply_all")
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("mailbox:message-detail", pk=pk)
    return redirect("mailbox:draft-edit", pk=draft.pk)


@require_POST
def message_reply(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _start(request, pk, "reply")


@require_POST
def message_reply_all(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _start(request, pk, "reply_all")


@require_POST
def message_forward(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _start(request, pk, "forward")


@require_POST
def message_acknowledge(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The eArztbrief's Eingangsbestätigung, sent at once (it has no text of the user's to write)."""
    message = message_or_404(request.user, pk)
    try:
        outgoing = outgoing_acknowledge(user=request.user, message=message)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("mailbox:message-detail", pk=pk)
    messages.success(request, _("Die Eingangsbestätigung wird gesendet."))
    return redirect("mailbox:outgoing-detail", pk=outgoing.pk)


@require_GET
def message_conversation(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """A received message's conversation and, for an eArztbrief, the acknowledgement offer (loaded by its page,
    and re-read when one of the mailbox's sent messages changes)."""
    message = message_or_404(request.user, pk)
    role = selectors.user_role(request.user, message.mailbox_id)
    arztbrief = is_arztbrief(message.dienstkennung)
    context = {
        "message": message,
        "thread": _thread(request, message, current=message),
        "arztbrief": arztbrief,
        "acknowledgement": acknowledgement_for(message) if arztbrief else None,
        "may_send": role in ("processor", "owner"),
    }
    return render(request, "mailbox/partials/_conversation.html", context)


def _thread(request: AuthenticatedHttpRequest, anchor: Any, *, current: Any) -> list[dict[str, Any]]:
    """The conversation as rows for the template (received and sent alike)."""
    rows = []
    for item in thread_for_user(request.user, anchor):
        if item.outgoing is not None:
            o = item.outgoing
            rows.append(
                {
                    "is_outgoing": True,
                    "is_current": isinstance(current, OutgoingMessage) and o.pk == current.pk,
                    "url": reverse("mailbox:outgoing-detail", args=[o.pk]),
                    "subject": o.subject,
                    "party": ", ".join(o.to),
                    "at": item.at,
                    "state": o.state,
                    "state_label": o.get_state_display(),
                }
            )
        elif item.message is not None:
            m = item.message
            rows.append(
                {
                    "is_outgoing": False,
                    "is_current": not isinstance(current, OutgoingMessage) and m.pk == current.pk,
                    "url": reverse("mailbox:message-detail", args=[m.pk]),
                    "subject": m.subject,
                    "party": m.from_name or m.from_address,
                    "at": item.at,
                }
            )
    return rows


# --- the draft ---------------------------------------------------------------------------------------------------


def _status(
    request: AuthenticatedHttpRequest,
    draft: OutgoingMessage,
    *,
    error: str = "",
    status: int = 200,
    out_of_reach: bool = False,
    conflict: bool | None = None,
    warning: str = "",
) -> HttpResponse:
    # After a refusal the page keeps its version: the next autosave is refused too, until the user reloads or
    # keeps this page's text on purpose ("Diese Fassung speichern", a save without the guard).
    context = {
        "draft": draft,
        "error": error,
        "conflict": (status == 409 if conflict is None else conflict) and draft.state == DRAFT,
        "out_of_reach": out_of_reach,
        "saved_at": None if error else timezone.localtime(draft.updated_at),
        "warning": warning,
    }
    response = render(request, "mailbox/compose.html#draft-status", context, status=status)
    if not error:
        # The tab's local copy of unsaved edits may go once the server has them (compose.js).
        trigger_client_event(response, "draft-saved", {"version": draft.version})
    return response


def _stale_error() -> str:
    return _(
        "Der Entwurf wurde inzwischen an anderer Stelle geändert (in einem anderen Fenster oder von einer anderen "
        "Person). Ihr Text auf dieser Seite bleibt erhalten."
    )


def _stale_page(
    request: AuthenticatedHttpRequest, draft: OutgoingMessage, form: DraftForm, *, sending: bool
) -> HttpResponse:
    """Without JavaScript a stale save or send shows the page again with what was typed, the newer version beside
    it, and that version in the hidden field: saving or sending again keeps this page's text on purpose."""
    context = _draft_context(request, draft, form=form, stale=True, stale_sending=sending)
    return render(request, "mailbox/compose.html", context, status=409)


def _draft_check(request: AuthenticatedHttpRequest, draft: OutgoingMessage) -> HttpResponse:
    """Asked by the page when its socket says the draft changed, or when the tab is shown again: a save from another
    tab or by another person is said at once, not only when this page's next autosave is refused. The request waits
    for the page's own saves (hx-sync), so its version is the one the page's last save returned."""
    form = DraftCheckForm(request.GET)
    if not form.is_valid():
        return HttpResponse(status=204)
    content_hash, version = form.cleaned_data["content_hash"], form.cleaned_data["version"]
    if content_hash:
        # Only the text fields make a conflict; files added or removed elsewhere are shown here at once (the list
        # and the page's record of it follow), so that a send from this page sends what it shows.
        if content_hash != draft.content_hash:
            return _status(request, draft, error=_stale_error(), conflict=True)
        shown = form.cleaned_data["shown_attachments"]
        attachments = list(draft.attachments.all())
        if shown is not None and sorted(shown) != sorted(a.pk for a in attachments):
            context = {"draft": draft, "attachments": attachments, "attachment_error": "", "oob": True}
            response = render(request, "mailbox/compose.html#attachments", context)
            return reswap(retarget(response, "#attachments"), "outerHTML")
        return HttpResponse(status=204)
    if version is None or version == draft.version:
        return HttpResponse(status=204)
    return _status(request, draft, error=_stale_error(), conflict=True)


def _sent_meanwhile_error() -> str:
    return _(
        "Die Nachricht wurde inzwischen gesendet (in einem anderen Fenster?). Änderungen auf dieser Seite werden "
        "nicht mehr gespeichert."
    )


def _out_of_reach_error() -> str:
    return _(
        "Sie dürfen aus diesem Postfach nicht mehr senden. Änderungen auf dieser Seite werden nicht mehr "
        "gespeichert; kopieren Sie Text, den Sie noch brauchen."
    )


@require_http_methods(["GET", "POST"])
def draft_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The compose page of one draft. POST saves it: autosave (htmx, answers the status line) or the plain
    "Entwurf speichern" button (without JavaScript, the typed addresses come along here)."""
    # The page's own requests answer its status line: an autosave (POST) and the check whether the draft changed
    # elsewhere (GET, target draft-status).
    checking = request.method == "GET" and bool(request.htmx) and request.htmx.target == "draft-status"
    checking = checking and not request.htmx.history_restore_request
    in_page = bool(request.htmx) and (request.method == "POST" or checking)
    if in_page and (gone := own_draft_out_of_reach(request.user, pk)):
        # The author lost the right to send while the page was open: a 404 or 403 would not be shown (htmx swaps
        # neither) and the page would go on looking saved. 423 is swapped (base.html's responseHandling).
        return _status(request, gone, error=_out_of_reach_error(), status=423, out_of_reach=True)
    outgoing = _outgoing_or_404(request, pk)
    if outgoing.state != DRAFT:
        if in_page:
            # Sent from another tab meanwhile: a redirect would be followed by htmx and the sent message's page
            # swapped into the status line; say instead that this page's edits are no longer saved.
            return _status(request, outgoing, error=_sent_meanwhile_error(), status=409)
        return redirect("mailbox:outgoing-detail", pk=pk)
    draft = _draft_or_404(request, pk)
    if checking:
        return _draft_check(request, draft)
    if request.method == "GET":
        return render(request, "mailbox/compose.html", _draft_context(request, draft))
    form = DraftForm(request.POST, mailboxes=_sendable(request))
    if not form.is_valid():
        if request.htmx:
            return _status(request, draft, error=" ".join(_form_errors(form)), status=422)
        return render(request, "mailbox/compose.html", _draft_context(request, draft, form=form), status=422)
    try:
        draft = outgoing_draft_save(
            user=request.user,
            mailbox_id=form.cleaned_data["mailbox"],
            data=OutgoingData(**form.outgoing_data()),
            draft=draft,
            version=form.cleaned_data.get("version"),
            content_hash=form.cleaned_data.get("content_hash") or None,
        )
    except Conflict:
        fresh = _outgoing_or_404(request, pk)
        if fresh.state != DRAFT:  # sent by another tab between the check above and the save
            if request.htmx:
                return _status(request, fresh, error=_sent_meanwhile_error(), status=409)
            return redirect("mailbox:outgoing-detail", pk=pk)
        if request.htmx:
            return _status(request, fresh, error=_stale_error(), status=409)
        return _stale_page(request, fresh, form, sending=False)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    # Saved, but not sendable so: said now, not only when "Senden" is pressed.
    warning = too_many_recipients(len(draft.recipients))
    if request.htmx:
        return _status(request, draft, warning=warning)
    messages.success(request, _("Entwurf gespeichert."))
    if warning:
        messages.warning(request, warning)
    return redirect("mailbox:draft-edit", pk=pk)


@require_GET
def compose_address(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Typed addresses as recipient chips: the KIM address rules first, then the directory when it answers."""
    field = request.GET.get("field", "to")
    if field not in ("to", "cc"):
        raise Http404
    if not _sendable(request):
        raise PermissionDenied
    typed = request.GET.get(f"{field}_typed", "") or request.GET.get("address", "")
    addresses = list(dict.fromkeys(a.strip().strip("<>").lower() for a in SPLIT.split(typed) if a.strip().strip("<>")))
    if len(addresses) > MAX_RECIPIENTS:
        # A pasted distribution list: refused whole, before the directory is asked for each address; the box keeps
        # its text (compose.js empties it only after a 200).
        error = _("Höchstens %(n)d Empfänger je Nachricht; hier stehen %(count)d Adressen. Bitte kürzen.") % {
            "n": MAX_RECIPIENTS,
            "count": len(addresses),
        }
        context = {"field_name": field, "chips": [{"address": "", "error": error}]}
        return render(request, "mailbox/compose.html#typed-chip", context, status=422)
    chips = _typed_chips(addresses)
    if not chips:
        chips = [{"address": "", "error": _("Bitte eine KIM-Adresse eingeben.")}]
    # Errors are chips too (role="alert"): the answer is always swapped in.
    return render(request, "mailbox/compose.html#typed-chip", {"field_name": field, "chips": chips})


def _typed_chips(addresses: list[str]) -> list[dict[str, Any]]:
    """A chip per typed address: the KIM address rules first, then the directory, asked once for all of them (in
    batches), not once per address: a slow or silent directory costs one timeout, not one per address."""
    errors = {a: kim_address_error(a) for a in addresses}
    valid = [a for a in addresses if not errors[a]]
    entries: dict[str, Any] | None = {}
    if valid:
        try:
            entries = directory_selectors.directory_entries_for_addresses(valid)
        except VzdError:
            # The directory is away: the addresses are kept, and the pre-flight checks them before anything is sent.
            entries = None
    chips: list[dict[str, Any]] = []
    for address in addresses:
        entry = entries.get(address) if entries is not None else None
        if errors[address]:
            chips.append({"address": address, "error": errors[address]})
        elif entries is None:
            chips.append({"address": address, "unchecked": True})
        elif entry is None:
            chips.append({"address": address, "error": _("Diese KIM-Adresse steht nicht im Verzeichnis.")})
        else:
            chips.append({"address": address, "entry": entry, "version": entry.kim_version(address)})
    return chips


@require_POST
def draft_attachment_add(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = _draft_or_404(request, pk)
    files = request.FILES.getlist("files")
    errors = [] if files else [_("Bitte eine Datei auswählen.")]
    for upload in files:
        # One refused file (too large) does not cost the others chosen with it: each is added or named.
        try:
            outgoing_attachment_add(user=request.user, draft=draft, filename=upload.name or "", content=upload)
        except PortalError as exc:
            errors.append(exc.message)
    return _attachments_response(request, draft, error=" ".join(errors))


@require_POST
def draft_attachment_remove(request: AuthenticatedHttpRequest, pk: int, attachment_pk: int) -> HttpResponse:
    draft = _draft_or_404(request, pk)
    attachment = draft.attachments.filter(pk=attachment_pk).first()
    if attachment is None:
        raise Http404
    error = ""
    try:
        outgoing_attachment_remove(user=request.user, draft=draft, attachment_id=attachment.pk)
    except PortalError as exc:
        error = exc.message
    return _attachments_response(request, draft, error=error)


def _attachments_response(request: AuthenticatedHttpRequest, draft: OutgoingMessage, *, error: str) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect("mailbox:draft-edit", pk=draft.pk)
    draft = _outgoing_or_404(request, draft.pk)
    context = {"draft": draft, "attachments": draft.attachment_list, "attachment_error": error, "oob": True}
    return render(request, "mailbox/compose.html#attachments", context, status=422 if error else 200)


@require_POST
def draft_remove_recipient(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """ "Empfänger entfernen" from a pre-flight problem: the draft without that address, checked again on send."""
    draft = _draft_or_404(request, pk)
    form = RemoveRecipientForm(request.POST)
    if not form.is_valid():
        raise Http404
    address = form.cleaned_data["address"].lower()
    data = OutgoingData(
        subject=draft.subject,
        body=draft.body,
        to=[a for a in draft.to if a.lower() != address],
        cc=[a for a in draft.cc if a.lower() != address],
        dienstkennung=draft.dienstkennung,
    )
    try:
        draft = outgoing_draft_save(
            user=request.user,
            mailbox_id=draft.mailbox_id,
            data=data,
            draft=draft,
            version=form.cleaned_data.get("version"),
            content_hash=form.cleaned_data.get("content_hash") or None,
        )
    except Conflict as exc:
        # Like a stale send: the page keeps its record of the text, its next save is refused too.
        return _send_problems(request, draft, error=exc.message, status=409, stale=True)
    if not request.htmx:
        return redirect("mailbox:draft-edit", pk=pk)
    notice = _("%(address)s wurde aus den Empfängern entfernt.") % {"address": address}
    return render(request, "mailbox/compose.html#recipients-changed", _draft_context(request, draft, notice=notice))


def _send_problems(
    request: AuthenticatedHttpRequest,
    draft: OutgoingMessage,
    *,
    problems: list[Any] | None = None,
    error: str = "",
    status: int = 422,
    stale: bool = False,
    saved: bool = True,
    attachments: list[Any] | None = None,
) -> HttpResponse:
    if not request.htmx:
        messages.error(request, error or _("Die Nachricht wurde nicht gesendet."))
        return redirect("mailbox:draft-edit", pk=draft.pk)
    # The save before the send changed the version: the page's hidden fields follow (oob). Not after a refusal for
    # a stale page, nor when nothing was saved: the page keeps its record, so that its next autosave cannot
    # overwrite newer text either. *attachments*: the draft's files, shown again (they changed elsewhere).
    context = {
        "draft": draft,
        "problems": problems or [],
        "send_error": error,
        "oob": saved and not stale,
        "stale": stale,
        "attachments": attachments,
        "attachments_changed": attachments is not None,
    }
    return render(request, "mailbox/compose.html#send-problems", context, status=status)


@require_POST
def draft_send(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """Save what the page shows, then send it: pre-flight against the directory, queue, deliver in the background."""
    if request.htmx and (gone := own_draft_out_of_reach(request.user, pk)):
        # As in draft_edit: say it where the page shows send errors, instead of a button that does nothing.
        return _send_problems(request, gone, error=_out_of_reach_error(), status=423)
    if _outgoing_or_404(request, pk).state != DRAFT:
        return _already_sent(request, pk)
    draft = _draft_or_404(request, pk)
    form = DraftForm(request.POST, mailboxes=_sendable(request))
    if not form.is_valid():
        if not request.htmx:
            # Without JavaScript the page is the form: shown again with what was typed and why it was refused.
            return render(request, "mailbox/compose.html", _draft_context(request, draft, form=form), status=422)
        return _send_problems(request, draft, error=" ".join(_form_errors(form)), saved=False)
    saved: OutgoingMessage | None = None
    try:
        # What this page shows is saved and sent, if the page still shows the stored draft: a send from a tab that
        # loaded an older version (another tab or person saved since) would overwrite the newer text. The one
        # save the page may not know of, a reload's own beacon, makes compose.js leave the version out.
        # A page that names its text is compared on that (a file added elsewhere is no text conflict); the files are
        # compared with those the page shows when the message is queued.
        saved = outgoing_draft_save(
            user=request.user,
            mailbox_id=form.cleaned_data["mailbox"],
            data=OutgoingData(**form.outgoing_data()),
            draft=draft,
            version=form.cleaned_data.get("version"),
            content_hash=form.cleaned_data.get("content_hash") or None,
        )
        sent = outgoing_send(
            user=request.user,
            draft=saved,
            version=saved.version,
            attachments=form.cleaned_data.get("shown_attachments"),
        )
    except PreflightFailed as exc:
        # The page's record follows this save (its text), whatever happened to the draft since.
        return _send_problems(request, saved or draft, problems=list(exc.problems), error=exc.message)
    except AttachmentsChanged as exc:
        # The text was saved; the files are shown as they are now, and "Senden" again sends them.
        fresh = _outgoing_or_404(request, pk)
        if saved is None or not request.htmx:
            messages.error(request, exc.message)
            return redirect("mailbox:draft-edit", pk=pk)
        return _send_problems(request, saved, error=exc.message, status=409, attachments=fresh.attachment_list)
    except Conflict:
        # Changed elsewhere before the save or, during the directory check, after it: either way the stored draft
        # is no longer what this page shows.
        fresh = _outgoing_or_404(request, pk)
        if fresh.state != DRAFT:
            return _already_sent(request, pk)
        if not request.htmx:
            return _stale_page(request, fresh, form, sending=True)
        return _send_problems(request, fresh, error=_stale_error(), status=409, stale=True)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        return _send_problems(
            request, saved or _outgoing_or_404(request, pk), error=exc.message, saved=saved is not None
        )
    url = reverse("mailbox:outgoing-detail", args=[sent.pk])
    if request.htmx:
        return trigger_client_event(HttpResponseClientRedirect(url), "draft-saved", {"version": sent.version})
    return redirect(url)


def _already_sent(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """A second "Senden" (a double click, a second tab): the first one sent it; show the sent message, once."""
    messages.info(request, _("Die Nachricht wurde bereits gesendet."))
    url = reverse("mailbox:outgoing-detail", args=[pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_POST
def draft_discard(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    draft = _draft_or_404(request, pk)
    try:
        outgoing_discard(user=request.user, outgoing=draft, version=None)
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("mailbox:draft-edit", pk=pk)
    messages.success(request, _("Entwurf verworfen."))
    return redirect("mailbox:drafts")


# --- lists -------------------------------------------------------------------------------------------------------


@require_GET
def drafts(request: AuthenticatedHttpRequest) -> HttpResponse:
    items = list(drafts_for_user(request.user))
    left = list(left_drafts_for_user(request.user))
    return render(request, "mailbox/outbox_drafts.html", _nav(request, items=items, left_items=left))


def _left_draft_or_404(request: AuthenticatedHttpRequest, pk: int) -> OutgoingMessage:
    """A former member's draft in a mailbox the user owns (the selector answers 404 to everyone else)."""
    draft = _outgoing_or_404(request, pk)
    if draft.state != DRAFT or draft.author_left_at is None or draft.author_id == request.user.pk:
        raise Http404
    return draft


@require_POST
def draft_take_over(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """An owner makes a former member's draft their own, to finish, send or delete it."""
    draft = _left_draft_or_404(request, pk)
    try:
        outgoing_draft_take_over(user=request.user, draft=draft)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("mailbox:drafts")
    messages.success(request, _("Der Entwurf ist jetzt Ihrer."))
    return redirect("mailbox:draft-edit", pk=pk)


@require_POST
def draft_left_discard(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """An owner deletes a former member's draft."""
    draft = _left_draft_or_404(request, pk)
    try:
        outgoing_discard(user=request.user, outgoing=draft, version=None)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("mailbox:drafts")
    messages.success(request, _("Entwurf gelöscht."))
    return redirect("mailbox:drafts")


SENT_STATES = [s for s in OutgoingMessage.State.values if s != DRAFT]
OUTBOX_STATES = [
    OutgoingMessage.State.QUEUED,
    OutgoingMessage.State.HELD,
    OutgoingMessage.State.SENDING,
    OutgoingMessage.State.FAILED,
    OutgoingMessage.State.UNCERTAIN,
    OutgoingMessage.State.PARTIALLY_DELIVERED,
]


def _list(request: AuthenticatedHttpRequest, *, mailbox: Mailbox | None, outbox: bool) -> HttpResponse:
    items = list(
        outgoing_list_for_user(request.user, mailbox=mailbox, states=OUTBOX_STATES if outbox else SENT_STATES)[:200]
    )
    context = _nav(
        request, items=items, current_mailbox=mailbox, outbox=outbox, live_mailbox=mailbox.pk if mailbox else ""
    )
    template = "mailbox/outbox_list.html"
    if request.htmx and request.htmx.target == "outgoing-list" and not request.htmx.history_restore_request:
        template += "#outgoing-list"
    return render(request, template, context)


@require_GET
def sent(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _list(request, mailbox=None, outbox=False)


@require_GET
def mailbox_sent(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _list(request, mailbox=mailbox_or_404(request.user, pk), outbox=False)


@require_GET
def outbox(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _list(request, mailbox=None, outbox=True)


# --- the sent message --------------------------------------------------------------------------------------------


def _outgoing_context(request: AuthenticatedHttpRequest, outgoing: OutgoingMessage, **extra: Any) -> dict[str, Any]:
    role = selectors.user_role(request.user, outgoing.mailbox_id)
    return _nav(
        request,
        outgoing=outgoing,
        timeline=outgoing_timeline(outgoing),
        may_act=role in ("processor", "owner"),
        current_mailbox=outgoing.mailbox,
        **extra,
    )


@require_GET
def outgoing_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The sent message, its delivery per recipient (live) and its conversation. One URL serves the page and the
    timeline fragment the page re-reads when the socket says the message changed."""
    outgoing = _outgoing_or_404(request, pk)
    if outgoing.state == DRAFT and outgoing.author_id == request.user.pk:
        return redirect("mailbox:draft-edit", pk=pk)
    context = _outgoing_context(request, outgoing)
    if request.htmx and request.htmx.target == f"timeline-{pk}" and not request.htmx.history_restore_request:
        return render(request, "mailbox/partials/_timeline.html", context)
    context["thread"] = _thread(request, outgoing, current=outgoing)
    # Reading a sent letter is an access to patient data like reading a received one (the timeline refresh is
    # not). The audit is a leaf every layer writes to; the outbox services have no read-side hook for it.
    audit_record(actor=request.user, action="outgoing.viewed", mailbox=outgoing.mailbox, outgoing_id=outgoing.pk)
    return render(request, "mailbox/outgoing_detail.html", context)


def _act_response(
    request: AuthenticatedHttpRequest, pk: int, *, error: str = "", notice: str = "", status: int = 200
) -> HttpResponse:
    if not request.htmx:
        if error:
            messages.error(request, error)
        elif notice:
            messages.success(request, notice)
        return redirect("mailbox:outgoing-detail", pk=pk)
    outgoing = _outgoing_or_404(request, pk)
    context = _outgoing_context(request, outgoing, error=error, notice=notice)
    return render(request, "mailbox/partials/_timeline.html", context, status=status)


@require_POST
def outgoing_retry_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    outgoing = _outgoing_or_404(request, pk)
    form = VersionForm(request.POST)
    if not form.is_valid():
        return _act_response(request, pk, error=_("Die Seite ist veraltet. Bitte neu laden."), status=422)
    try:
        outgoing_retry(user=request.user, outgoing=outgoing, version=form.cleaned_data["version"])
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except Conflict as exc:
        return _act_response(request, pk, error=exc.message, status=409)
    except PortalError as exc:
        return _act_response(request, pk, error=exc.message, status=422)
    return _act_response(request, pk, notice=_("Der Versand wird erneut versucht."))


@require_POST
def outgoing_withdraw_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """A message held for a switched-off account back to a draft (nothing of it went out)."""
    outgoing = _outgoing_or_404(request, pk)
    form = VersionForm(request.POST)
    if not form.is_valid():
        return _act_response(request, pk, error=_("Die Seite ist veraltet. Bitte neu laden."), status=422)
    try:
        draft = outgoing_withdraw(user=request.user, outgoing=outgoing, version=form.cleaned_data["version"])
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except Conflict as exc:
        return _act_response(request, pk, error=exc.message, status=409)
    except PortalError as exc:
        return _act_response(request, pk, error=exc.message, status=422)
    messages.success(request, _("Die Nachricht ist wieder ein Entwurf und wird nicht gesendet."))
    # The author continues in the draft; a colleague who withdrew it goes back to the outbox.
    url = reverse("mailbox:draft-edit", args=[pk]) if draft.author_id == request.user.pk else reverse("mailbox:outbox")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_POST
def outgoing_uncertain(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """ "Zustellung ungewiss": a person decides whether the message arrived (then nothing is sent again) or not
    (then it is queued again)."""
    outgoing = _outgoing_or_404(request, pk)
    form = UncertainForm(request.POST)
    if not form.is_valid():
        return _act_response(request, pk, error=_("Bitte eine Entscheidung wählen."), status=422)
    delivered = form.cleaned_data["delivered"]
    try:
        outgoing_resolve_uncertain(
            user=request.user, outgoing=outgoing, delivered=delivered, version=form.cleaned_data.get("version")
        )
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except Conflict as exc:
        return _act_response(request, pk, error=exc.message, status=409)
    except PortalError as exc:
        return _act_response(request, pk, error=exc.message, status=422)
    notice = _("Als zugestellt vermerkt.") if delivered else _("Die Nachricht wird erneut gesendet.")
    return _act_response(request, pk, notice=notice)


@require_POST
def outgoing_claim_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """ "Ich kümmere mich": a failed or uncertain send becomes someone's job, as a received message does."""
    outgoing = _outgoing_or_404(request, pk)
    try:
        outgoing_claim(user=request.user, outgoing=outgoing)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        return _act_response(request, pk, error=exc.message, status=409)
    return _act_response(request, pk, notice=_("Sie kümmern sich um diese Nachricht."))


@require_POST
def outgoing_release_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    outgoing = _outgoing_or_404(request, pk)
    try:
        outgoing_release(user=request.user, outgoing=outgoing)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except PortalError as exc:
        return _act_response(request, pk, error=exc.message, status=409)
    return _act_response(request, pk, notice=_("Zuständigkeit abgegeben."))


@require_GET
def outgoing_attachment_download(request: AuthenticatedHttpRequest, pk: int, attachment_pk: int) -> HttpResponseBase:
    """A file of a sent message or of one's own draft, always as a download (never shown in the portal's origin)."""
    outgoing = _outgoing_or_404(request, pk)
    attachment = next((a for a in outgoing.attachment_list if a.pk == attachment_pk), None)
    if attachment is None:
        raise Http404
    try:
        data = blob_get(attachment.sha256)
    except BlobError:
        return HttpResponse(
            _("Der Anhang ist beschädigt oder fehlt (Prüfsumme stimmt nicht)."),
            status=500,
            content_type="text/plain; charset=utf-8",
        )
    audit_record(
        actor=request.user,
        action="outgoing.attachment_downloaded",
        mailbox=outgoing.mailbox,
        outgoing_id=outgoing.pk,
        attachment=attachment.filename,
        attachment_id=attachment.pk,  # two files of one name are told apart
    )
    response = FileResponse(
        BytesIO(data), as_attachment=True, filename=attachment.filename, content_type="application/octet-stream"
    )
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response._csp_exempt = True  # type: ignore[attr-defined]  # django-csp's opt-out flag, unknown to the stubs
    return response
