"""Message lists: the inbox over all mailboxes, "Mir zugewiesen", one mailbox; one URL serves page and fragment."""

from __future__ import annotations

import time
from dataclasses import replace

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kimportal.http import AuthenticatedHttpRequest
from mailbox import selectors
from mailbox.forms import MessageFilterForm
from mailbox.models import Mailbox, Message
from mailbox.selectors.fetching import fetch_failures_for_user
from mailbox.selectors.messages import list_badges
from mailbox.services.accounts import mailbox_fetch_request
from mailbox.views.lookup import mailbox_or_404


def _list_page(request: AuthenticatedHttpRequest, *, mailbox: Mailbox | None, view: str | None = None) -> HttpResponse:
    form = MessageFilterForm(request.GET) if request.GET else None
    filters = form.to_filter() if form is not None else selectors.MessageFilter()
    if view:
        filters = replace(filters, view=view)
    # A refused filter (a pasted text over 200 characters, NUL, an impossible date) is reported and lists nothing:
    # dropping it silently would show every message as if it matched.
    # A page with a view of its own ("Mir zugewiesen") ignores the view parameter, whatever it says.
    filter_errors = form.error_texts(ignore=("view",) if view else ()) if form is not None else []
    if form is not None and "q" in form.errors:
        # The search box keeps what was typed, so it can be shortened rather than typed again.
        filters = replace(filters, q=form.data.get("q", "").replace("\x00", ""))
    # The filter bar is rendered once per process for its values ({% samefor %}): a form for its choices is
    # built only when it is rendered.
    choices = form if form is not None else SimpleLazyObject(lambda: MessageFilterForm(initial={"view": filters.view}))
    # Taken before the list is read: whatever the list's socket is told of after this, the page may not show yet.
    rendered_at = time.time()
    if filter_errors:
        page: selectors.KeysetPage[Message] = selectors.KeysetPage(
            [], 1, selectors.PAGE_SIZE, has_next=False, has_previous=False
        )
    else:
        page = selectors.message_list_for_user(
            request.user,
            mailbox=mailbox,
            page=request.GET.get("page", 1),
            after=request.GET.get("after", ""),
            before=request.GET.get("before", ""),
            filters=filters,
        )
    live = _is_plain(filters) and not filter_errors
    mailboxes = list(selectors.mailbox_list_for_user(request.user))
    shown = [mailbox] if mailbox else mailboxes
    query = request.GET.copy()
    for key in ("page", "after", "before"):
        query.pop(key, None)
    context = {
        "mailboxes": mailboxes,
        "current_mailbox": mailbox,
        "current_role": mailbox.user_role if mailbox else None,
        "fetch_failures": fetch_failures_for_user(request.user, mailbox.pk, role=mailbox.user_role) if mailbox else [],
        "page_obj": page,
        "filter_form": choices,
        "filters": filters,
        "filter_errors": filter_errors,
        "fixed_view": view,
        "querystring": query.urlencode(),
        # New mail is prepended live only to an unfiltered first page.
        "live_mailboxes": " ".join(f"mb-{m.pk}" for m in shown) if live else "",
        # The newest message the list knew (no query: its first page is the newest of its view): what its view
        # gets after that, before the page's socket listens, the socket sends once it does (mailbox.consumers.inbox).
        "live_since": max((m.pk for m in page.object_list), default=0) if live and page.number == 1 else None,
        # When the list was read: its socket replays the row events sent since (mailbox.consumers.inbox).
        "live_at": f"{rendered_at:.3f}",
        "labels": tuple((label.application, label.label) for label in list_badges().values()),
        "queues": selectors.mailbox_queue_choices(mailbox) if mailbox else [],
    }
    template = "mailbox/inbox.html"
    if request.htmx and request.htmx.target == "message-list" and not request.htmx.history_restore_request:
        template += "#message-list"
    return render(request, template, context)


def _is_plain(f: selectors.MessageFilter) -> bool:
    return (
        f.view in ("all", "open", "unassigned")
        and not (f.state or f.dienstkennung or f.date_from or f.date_to or f.q or f.queue)
        and f.sort == "-received"
    )


@require_GET
def inbox(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _list_page(request, mailbox=None)


@require_GET
def mine(request: AuthenticatedHttpRequest) -> HttpResponse:
    """ "Mir zugewiesen": the personal view across all mailboxes."""
    return _list_page(request, mailbox=None, view="mine")


@require_GET
def mailbox_messages(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _list_page(request, mailbox=mailbox_or_404(request.user, pk))


@require_POST
def mailbox_fetch_now(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = mailbox_or_404(request.user, pk)
    if mailbox_fetch_request(user=request.user, mailbox=mailbox):
        messages.info(request, _("Abruf wurde angestoßen."))
    else:
        messages.error(request, _("Für dieses Postfach ist kein aktives KIM-Konto eingerichtet."))
    return redirect("mailbox:mailbox-messages", pk=mailbox.pk)
