"""The user's own pages and the owners' page: notifications, absences, mailbox members."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from kimportal.errors import NotAllowed, PortalError
from kimportal.http import AuthenticatedHttpRequest
from mailbox import selectors
from mailbox.extensions import notification_link
from mailbox.forms import AbsenceForm, MembershipForm
from mailbox.models import Absence, Membership
from mailbox.permissions import Action, can, user_role
from mailbox.services.absences import absence_create
from mailbox.services.absences import absence_end as absence_end_service
from mailbox.services.members import membership_remove, membership_set
from mailbox.services.notifications import notifications_mark_read
from mailbox.views.lookup import mailbox_or_404


@require_GET
def notifications(request: AuthenticatedHttpRequest) -> HttpResponse:
    # Each with where it leads: its message, or another app's page (mailbox.extensions' notification links).
    items = [(n, notification_link(n)) for n in selectors.notification_list_for_user(request.user)]
    return render(
        request,
        "mailbox/notifications.html",
        {
            "items": items,
            "mailboxes": selectors.mailbox_list_for_user(request.user),
        },
    )


@require_POST
def notifications_read(request: AuthenticatedHttpRequest) -> HttpResponse:
    notifications_mark_read(user=request.user)
    return redirect("mailbox:notifications")


@require_http_methods(["GET", "POST"])
def absences(request: AuthenticatedHttpRequest) -> HttpResponse:
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
def absence_end(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    try:
        absence_end_service(user=request.user, absence_id=pk)
    except Absence.DoesNotExist as exc:
        raise Http404 from exc
    messages.success(request, _("Abwesenheit beendet."))
    return redirect("mailbox:absences")


@require_http_methods(["GET", "POST"])
def mailbox_members_view(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    mailbox = mailbox_or_404(request.user, pk)
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
def mailbox_member_remove(request: AuthenticatedHttpRequest, pk: int, membership_pk: int) -> HttpResponse:
    mailbox = mailbox_or_404(request.user, pk)
    try:
        membership_remove(user=request.user, mailbox=mailbox, membership_id=membership_pk)
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    except Membership.DoesNotExist as exc:
        raise Http404 from exc
    except PortalError as exc:
        messages.error(request, exc.message)
        return redirect("mailbox:mailbox-members", pk=pk)
    # An owner who removed their own membership may no longer see the members page: the inbox, not a 404.
    if not can(user_role(request.user, mailbox), Action.MANAGE):
        messages.success(request, _("Sie verwalten das Postfach %(name)s nicht mehr.") % {"name": mailbox.display_name})
        return redirect("mailbox:inbox")
    messages.success(request, _("Mitglied entfernt."))
    return redirect("mailbox:mailbox-members", pk=pk)
