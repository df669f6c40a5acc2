"""The queue (drafts the user is to sign) and the central list (everything the user may see); one URL serves
page and fragment (htmx swaps #draft-list when a filter changes)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from kimportal.http import AuthenticatedHttpRequest
from signing import selectors
from signing.forms import DraftFilterForm
from signing.permissions import NOT_SIGNER_OF_MAILBOX, SIGNER_GONE, has_signer_card, signing_mailbox_ids
from signing.selectors.drafts import LIST_LIMIT
from signing.services.review import review_refusal
from signing.views.common import chosen_workplace


def _list_page(request: AuthenticatedHttpRequest, *, own_queue: bool) -> HttpResponse:
    form = DraftFilterForm(request.GET or None)
    filters = form.to_filter() if request.GET else selectors.DraftFilter()
    rows = list(selectors.draft_list_for_user(request.user, filters, own_queue=own_queue)[: LIST_LIMIT + 1])
    has_card = has_signer_card(request.user)
    # Only the signer's own open drafts can be selected for signing: they are the checkboxes of the list. One
    # under review is selectable only when approved at its current version; the row says why it is not.
    # The signer may sign only for the departments they may send from now (read once for the page).
    allowed = signing_mailbox_ids(request.user, has_card=has_card)
    # Someone else's open drafts whose signer left the department: the author is to choose another (one query).
    gone = selectors.drafts_signer_gone([d for d in rows if d.is_open and d.signer_id != request.user.pk])
    signable: set[int] = set()
    for d in rows:
        d.sign_block = ""  # type: ignore[attr-defined]  # read by the template
        d.signer_gone = ""  # type: ignore[attr-defined]
        if d.pk in gone:
            name = d.signer.get_full_name() or d.signer.get_username()
            d.signer_gone = SIGNER_GONE % {"name": name}  # type: ignore[attr-defined]
            continue
        if not (has_card and d.signer_id == request.user.pk and d.is_open):
            continue
        if d.mailbox_id not in allowed:
            d.sign_block = str(NOT_SIGNER_OF_MAILBOX)  # type: ignore[attr-defined]
        elif d.needs_approval:
            d.sign_block = review_refusal(d)  # type: ignore[attr-defined]
        else:
            signable.add(d.pk)
    workplaces = list(selectors.workplace_choices())
    context: dict[str, Any] = {
        "own_queue": own_queue,
        "drafts": rows[:LIST_LIMIT],
        "truncated": len(rows) > LIST_LIMIT,
        "signable": signable,
        "has_card": has_card,
        "filter_form": form if request.GET else DraftFilterForm(),
        "people": selectors.user_filter_choices(request.user) if not own_queue else [],
        "workplaces": workplaces,
        "workplace": chosen_workplace(request, workplaces),
        "max_batch": settings.KIMPORTAL_SIGNING_MAX_BATCH,
        "review_count": selectors.review_count_for_user(request.user),
        "running": selectors.batch_list_for_user(request.user)
        .filter(signer_id=request.user.pk, state__in=("prepared", "pin", "signing"))
        .first(),
    }
    template = "signing/queue.html"
    if request.htmx and request.htmx.target == "draft-list" and not request.htmx.history_restore_request:
        template += "#draft-list"
    return render(request, template, context)


@require_GET
def queue(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _list_page(request, own_queue=True)


@require_GET
def draft_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    return _list_page(request, own_queue=False)
