"""The received signatures' panel on the message page (registered in signing.apps through mailbox.extensions) and
its one action: check again. Whoever may see the message sees the panel and may ask for a new check."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.context_processors import csrf
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from kimportal.http import AuthenticatedHttpRequest
from mailbox.models import Message
from signing.models import ReceivedSignature
from signing.selectors.received import (
    received_message_for_user,
    received_signatures_for_message,
    received_signatures_for_user,
)
from signing.services.received import is_candidate, messages_with_candidates, received_signatures_redo

TEMPLATE = "signing/partials/_received_signatures.html"


def _context(message_id: int, rows: list[ReceivedSignature], **extra: Any) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "rows": rows,
        "pending": any(r.status == ReceivedSignature.Status.PENDING for r in rows),
        **extra,
    }


def panel_applies(message: Message) -> bool:
    """From the page's prefetched attachments (no query): only a message that may carry a signature. The page holds
    a message's first attachments only; for one with more, the rest are asked for when those carry none."""
    if any(is_candidate(a) for a in getattr(message, "attachment_list", ())):
        return True
    return bool(getattr(message, "attachments_more", False) and messages_with_candidates([message.pk]))


def panel_render(request: HttpRequest, message: Message) -> str:
    """The panel within the message page, whose view found the message visible to the user."""
    # Not with the request: the page's context processors would all run again for a panel that shows only its own
    # rows and the form's CSRF token (given as the csrf processor gives it, lazily).
    return render_to_string(
        TEMPLATE, {**_context(message.pk, received_signatures_for_message(message.pk)), **csrf(request)}
    )


def panel_live(user: Any, message_id: int) -> tuple[str, dict[str, Any]] | None:
    """The panel as the page's socket sends it, re-read for this user (None once the message is not theirs)."""
    rows = received_signatures_for_user(user, message_id)
    if rows is None:
        return None
    return TEMPLATE, _context(message_id, rows, oob=True)


@require_POST
def received_verify(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Check the message's signatures again (in the background); the panel shows the check running."""
    message = received_message_for_user(request.user, pk)
    if message is None:
        raise Http404
    if message.content_deleted_at is not None:
        error = _("Der Inhalt dieser Nachricht wurde gelöscht; ihre Signaturen können nicht mehr geprüft werden.")
        if not request.htmx:
            messages.error(request, error)
            return redirect("mailbox:message-detail", pk=pk)
        context = _context(pk, received_signatures_for_message(pk), error=error)
        return render(request, TEMPLATE, context, status=422)
    started = received_signatures_redo(user=request.user, message=message)
    if not request.htmx:
        if started:
            messages.success(request, _("Die Signaturen werden erneut geprüft."))
        else:
            messages.info(request, _("Die Signaturen werden gerade geprüft."))
        return redirect("mailbox:message-detail", pk=pk)
    return render(request, TEMPLATE, _context(pk, received_signatures_for_message(pk)))
