"""What a message carries, served safely: sanitized HTML in a sandbox, the raw source, attachments."""

from __future__ import annotations

from io import BytesIO

from django.http import FileResponse, Http404, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

from kimportal.http import AuthenticatedHttpRequest
from mailbox import selectors
from mailbox.models import Attachment
from mailbox.services.reading import message_access_record
from mailbox.services.rendering import message_html_document
from mailbox.storage import BlobError, blob_get
from mailbox.views.lookup import message_or_404

# Types a browser may show inline; everything else is only ever downloaded.
INLINE_TYPES = {"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"}
# The file name endings each inline type is served under; a name ending otherwise ("befund.pdf.exe"
# sent as application/pdf) is not what its type says and is served as a plain download.
_EXTENSIONS = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "image/gif": (".gif",),
    "text/plain": (".txt", ".text", ".log", ".csv", ".asc"),
}


# Every attachment, PDFs too: an opaque origin, nothing loaded but the file itself (an image document's own <img>),
# never framed. Chromium's PDF viewer shows and saves a PDF under it (Debian's Chromium 156, tests/e2e/
# test_attachments.py); versions before the out-of-process viewer showed a blank page, the download link stays.
ATTACHMENT_CSP = "sandbox; default-src 'none'; img-src 'self' data:; frame-ancestors 'none'"


# Names Windows runs when opened; a sender may dress one up as a document ("befund.pdf.exe").
_EXECUTABLE = (
    ".exe", ".com", ".scr", ".pif", ".bat", ".cmd", ".msi", ".msp", ".vbs", ".vbe", ".js", ".jse", ".wsf",
    ".wsh", ".hta", ".cpl", ".jar", ".ps1", ".lnk", ".reg", ".dll", ".msc", ".application", ".appref-ms",
)  # fmt: skip


def is_executable_name(filename: str) -> bool:
    return filename.lower().endswith(_EXECUTABLE)


def served_type(attachment: Attachment) -> str:
    """The Content-Type an attachment is served with: its own when a browser may show it and its name agrees."""
    declared = attachment.content_type
    if declared in INLINE_TYPES and attachment.filename.lower().endswith(_EXTENSIONS[declared]):
        return declared
    return "application/octet-stream"


@require_GET
def message_html(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The sanitized HTML body as its own document, for a sandboxed iframe with a locked-down CSP."""
    message = message_or_404(request.user, pk)
    message_access_record(user=request.user, message=message, action="message.html_viewed")
    response = HttpResponse(message_html_document(message), content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = (
        "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
    )
    response._csp_exempt = True  # type: ignore[attr-defined]  # django-csp's opt-out flag, unknown to the stubs
    return response


@require_GET
def message_raw(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    message = message_or_404(request.user, pk)
    if message.content_deleted_at is not None:
        return HttpResponse(
            _("Der Inhalt dieser Nachricht wurde nach Ablauf der Aufbewahrungsfrist gelöscht."),
            status=410,
            content_type="text/plain; charset=utf-8",
        )
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
def attachment_download(request: AuthenticatedHttpRequest, pk: int, position: int) -> HttpResponseBase:
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
    content_type = served_type(attachment)
    inline = request.GET.get("inline") == "1" and content_type in INLINE_TYPES
    message_access_record(
        user=request.user,
        message=attachment.message,
        action="attachment.downloaded",
        attachment=attachment.filename,
        # The name alone does not say which file: a message may carry several of one name.
        position=attachment.position,
        inline=inline,
    )
    if content_type == "text/plain":
        content_type = "text/plain; charset=utf-8"
    # FileResponse writes an RFC 6266 Content-Disposition with a filename* for umlauts.
    response = FileResponse(
        BytesIO(data), as_attachment=not inline, filename=attachment.filename, content_type=content_type
    )
    response["Content-Security-Policy"] = ATTACHMENT_CSP
    # Also set by SecurityMiddleware; here too, because a sniffed type would undo served_type().
    response["X-Content-Type-Options"] = "nosniff"
    response._csp_exempt = True  # type: ignore[attr-defined]  # django-csp's opt-out flag, unknown to the stubs
    return response
