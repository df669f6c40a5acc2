from __future__ import annotations

from io import BytesIO

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from mailbox import selectors
from mailbox.models import Attachment, Mailbox, Message
from mailbox.services.messages import mailbox_fetch_request, message_access_record, message_open
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


def _list_page(request: HttpRequest, *, mailbox: Mailbox | None) -> HttpResponse:
    page = selectors.message_list_for_user(request.user, mailbox=mailbox, page=request.GET.get("page", 1))
    mailboxes = list(selectors.mailbox_list_for_user(request.user))
    shown = [mailbox] if mailbox else mailboxes
    context = {
        "mailboxes": mailboxes,
        "current_mailbox": mailbox,
        "page_obj": page,
        "live_mailboxes": " ".join(f"mb-{m.pk}" for m in shown),
    }
    template = "mailbox/inbox.html"
    if request.htmx and request.htmx.target == "message-list":
        template += "#message-list"
    return render(request, template, context)


@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    return _list_page(request, mailbox=None)


@require_GET
def mailbox_messages(request: HttpRequest, pk: int) -> HttpResponse:
    return _list_page(request, mailbox=_mailbox_or_404(request.user, pk))


@require_GET
def message_detail(request: HttpRequest, pk: int) -> HttpResponse:
    message = _message_or_404(request.user, pk)
    message_open(user=request.user, message=message)
    attachments = list(message.attachments.all())
    context = {
        "mailboxes": selectors.mailbox_list_for_user(request.user),
        "current_mailbox": message.mailbox,
        "message": message,
        "attachments": attachments,
        "inline_types": INLINE_TYPES,
    }
    return render(request, "mailbox/message_detail.html", context)


@require_GET
def message_html(request: HttpRequest, pk: int) -> HttpResponse:
    """The sanitized HTML body as its own document, for a sandboxed iframe with a locked-down CSP."""
    message = _message_or_404(request.user, pk)
    body = f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{message.html_body}</body></html>'
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
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
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self' data:; object-src 'self'"
    response._csp_exempt = True
    return response


@require_POST
def mailbox_fetch_now(request: HttpRequest, pk: int) -> HttpResponse:
    mailbox = _mailbox_or_404(request.user, pk)
    if mailbox_fetch_request(user=request.user, mailbox=mailbox):
        messages.info(request, _("Abruf wurde angestoßen."))
    else:
        messages.error(request, _("Für dieses Postfach ist kein KIM-Konto eingerichtet."))
    return redirect("mailbox:mailbox-messages", pk=mailbox.pk)
