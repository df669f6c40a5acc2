"""Orphaned drafts for the owners of a mailbox: a list with what is needed to decide (never the document) and the
two hand-overs, take over as author or withdraw (signing.services.orphans)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from kimportal.errors import PortalError
from kimportal.http import AuthenticatedHttpRequest
from signing.forms import WithdrawForm
from signing.models import Draft
from signing.services.orphans import orphan_take_over, orphan_withdraw, orphaned_for_owner, owned_mailbox_ids

# More than this many orphans at once is a department closed without hand-over: the list shows the oldest.
ORPHAN_LIST_LIMIT = 200


def _person(user: Any) -> str:
    return str(user.get_full_name() or user.get_username())


@require_GET
def orphan_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    if not owned_mailbox_ids(request.user):
        raise Http404
    rows = list(orphaned_for_owner(request.user)[: ORPHAN_LIST_LIMIT + 1])
    for d in rows:
        d.left_people = [  # type: ignore[attr-defined]  # read by the template
            (label, _person(person))
            for label, person in (
                (_("Verfasser"), d.author),
                (_("Unterzeichner"), d.signer),
                (_("Prüfer"), d.reviewer),
            )
            if person is not None
        ]
    context = {
        "drafts": rows[:ORPHAN_LIST_LIMIT],
        "truncated": len(rows) > ORPHAN_LIST_LIMIT,
        "withdraw_form": WithdrawForm(),
    }
    return render(request, "signing/orphans.html", context)


@require_POST
def orphan_take_over_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        draft = orphan_take_over(user=request.user, pk=pk)
    except Draft.DoesNotExist as exc:
        raise Http404 from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("signing:orphans")
    messages.success(
        request,
        _(
            "Sie sind jetzt Verfasser dieses Entwurfs. Bitte wählen Sie unter „Bearbeiten“ eine Unterzeichnerin oder "
            "einen Unterzeichner."
        ),
    )
    return redirect("signing:draft-detail", pk=draft.pk)


@require_POST
def orphan_withdraw_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    form = WithdrawForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        orphan_withdraw(user=request.user, pk=pk, reason=reason)
    except Draft.DoesNotExist as exc:
        raise Http404 from exc
    except PortalError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Entwurf zurückgezogen. Er wird nicht signiert."))
    return redirect("signing:orphans")
