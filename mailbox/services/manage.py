"""What managers (Leitung) change from their pages: mailboxes and their KIM accounts, groups (wards), absences on a
colleague's behalf, and bulk membership changes.

Memberships still go through the members service (audit per change, an owner kept, work handed back, live pages
follow), absences through the absences service; this module adds the manager check, the mailbox's life cycle and
the steps that span several mailboxes, each bulk step in one transaction: all of it happens, or none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed, PortalError
from mailbox import events
from mailbox.models import Absence, KimAccount, Mailbox, Membership, Message
from mailbox.permissions import is_manager
from mailbox.services import absences, members
from mailbox.services.audit import audit_record
from mailbox.services.claims import claims_release_all
from mailbox.services.outbox import outgoing_hold_mailbox, outgoing_release_held


def require_manager(user: Any) -> None:
    if not is_manager(user):
        raise NotAllowed(_("Nur die Leitung darf das."))


# --- mailboxes and their KIM accounts ------------------------------------------------------------------------------


@transaction.atomic
def mailbox_create(
    *, user: Any, address: str, display_name: str, kind: str, account: KimAccount, owners: Sequence[Any]
) -> Mailbox:
    """A new mailbox with its KIM account (from the account form, not yet saved) and its first owners."""
    require_manager(user)
    if not owners:
        raise PortalError(_("Ein Postfach braucht mindestens einen Eigentümer."))
    if Mailbox.objects.filter(address__iexact=address).exists():
        raise PortalError(_("Ein Postfach mit der Adresse %(address)s gibt es schon.") % {"address": address})
    try:
        # A double click on "Anlegen", or two managers: the other request may have inserted it after the check.
        with transaction.atomic():
            mailbox = Mailbox.objects.create(address=address, display_name=display_name, kind=kind)
    except IntegrityError as exc:
        raise PortalError(_("Ein Postfach mit der Adresse %(address)s gibt es schon.") % {"address": address}) from exc
    account.mailbox = mailbox
    account.save()
    audit_record(actor=user, action="mailbox.created", mailbox=mailbox, address=address, kind=kind)
    for owner in owners:
        members.membership_set(user=user, mailbox=mailbox, username=owner.username, role=Membership.Role.OWNER)
    return mailbox


# What the fetch writes on the account row (mailbox.services.fetch): never part of a settings save.
FETCH_STATE = frozenset(
    {
        "status",
        "status_message",
        "last_success_at",
        "last_attempt_at",
        "next_fetch_at",
        "consecutive_failures",
        "fetch_lease_until",
        "fetch_lease_token",
    }
)
# The password changes its own way too (operations.services.kimadmin: the provider's change, stored in a transaction
# of its own): a settings save writes it only when the form entered one. Written back from the copy the request read,
# a change that finished during the request was undone with the old password.
ACCOUNT_SETTINGS = [
    f.name
    for f in KimAccount._meta.concrete_fields
    if not f.primary_key and f.name not in FETCH_STATE | {"mailbox", "password_encrypted"}
]


def account_settings(*, password_entered: bool) -> list[str]:
    """The fields a save of the account form writes (update_fields)."""
    return [*ACCOUNT_SETTINGS, "password_encrypted"] if password_entered else list(ACCOUNT_SETTINGS)


@transaction.atomic
def account_save(*, user: Any, account: KimAccount, changed: Iterable[str]) -> KimAccount:
    """The account form's changes (password and key already encrypted on the instance); `changed` the form's
    changed fields, "password" among them when one was entered. The audit names the changed fields, never their
    values: passwords and keys stay out of the trail."""
    require_manager(user)
    if account._state.adding:
        account.save()
    else:
        # The settings only: the fetch's lease and outcome are the worker's, the password the password change's, and
        # the page's copy of them is stale.
        account.save(update_fields=account_settings(password_entered="password" in changed))
    audit_record(actor=user, action="account.changed", mailbox=account.mailbox, fields=sorted(changed))
    # Queued mail follows the account's switch: held while it is off, sent again when it is on.
    if account.is_active:
        outgoing_release_held(mailbox_id=account.mailbox_id)
    else:
        outgoing_hold_mailbox(mailbox_id=account.mailbox_id)
    return account


@transaction.atomic
def mailbox_set_active(*, user: Any, mailbox: Mailbox, active: bool) -> int:
    """Switch a mailbox off (or on again). Off: its fetch stops, its members lose access at once and their pages
    leave it, locks there are released, its queued mail is held (not sent, not lost). Assignments stay, so that
    switching it on again restores the work, and the held mail goes out. Returns how many outgoing messages were
    held (off) or released (on)."""
    require_manager(user)
    mailbox = Mailbox.objects.select_for_update().get(pk=mailbox.pk)
    if mailbox.is_active == active:
        return 0
    Mailbox.objects.filter(pk=mailbox.pk).update(is_active=active)
    mailbox.is_active = active
    KimAccount.objects.filter(mailbox=mailbox).update(is_active=active)
    if not active:
        holders = get_user_model().objects.filter(
            pk__in=Message.objects.filter(mailbox=mailbox, claimed_by__isnull=False).values("claimed_by")
        )
        for holder in holders:
            claims_release_all(user=holder, mailbox_id=mailbox.pk, reason="mailbox_deactivated")
        outgoing = outgoing_hold_mailbox(mailbox_id=mailbox.pk)
    else:
        outgoing = len(outgoing_release_held(mailbox_id=mailbox.pk))
    audit_record(
        actor=user,
        action="mailbox.activated" if active else "mailbox.deactivated",
        mailbox=mailbox,
        outgoing=outgoing,
    )
    events.broadcast_memberships_changed(user_ids=_covered_user_ids(mailbox))
    return outgoing


def _covered_user_ids(mailbox: Mailbox) -> list[int]:
    memberships = Membership.objects.filter(mailbox=mailbox)
    direct = memberships.filter(user__isnull=False).values_list("user_id", flat=True)
    via_group = (
        get_user_model().objects.filter(groups__mailbox_memberships__mailbox=mailbox).values_list("pk", flat=True)
    )
    return sorted({*direct, *via_group})


# --- groups (wards) -------------------------------------------------------------------------------------------------


@transaction.atomic
def group_create(*, user: Any, name: str) -> Group:
    require_manager(user)
    name = name.strip()
    if not name:
        raise PortalError(_("Bitte einen Namen für die Gruppe angeben."))
    exists = PortalError(_("Eine Gruppe „%(name)s“ gibt es schon.") % {"name": name})
    if Group.objects.filter(name__iexact=name).exists():
        raise exists
    try:
        with transaction.atomic():  # a double click: the other request may have inserted it after the check
            group = Group.objects.create(name=name)
    except IntegrityError as exc:
        raise exists from exc
    audit_record(actor=user, action="group.created", group=name)
    return group


def _require_ward(group: Group) -> None:
    # A group with a permission (reviewers, IT, the Leitung itself) is no ward: joining or leaving it grants or
    # withdraws the permission, which the administration decides, not the managers' ward page.
    if group.permissions.exists():
        raise NotAllowed(
            _(
                "Die Gruppe „%(name)s“ vergibt Berechtigungen; wer zu ihr gehört, legt die IT in der "
                "Administration fest."
            )
            % {"name": group.name}
        )


@transaction.atomic
def group_member_add(*, user: Any, group: Group, member: Any) -> None:
    require_manager(user)
    _require_ward(group)
    if group.user_set.filter(pk=member.pk).exists():
        return
    with members.group_change_handled():  # handed over below, audited with the manager as actor
        group.user_set.add(member)
    audit_record(actor=user, action="group.member_added", group=group.name, member=member.username)
    _group_access_changed(actor=user, group=group, member=member)


@transaction.atomic
def group_member_remove(*, user: Any, group: Group, member: Any) -> None:
    """Leaving a ward ends the access it gave: open work there goes back (unless another membership still allows
    processing), the member's pages leave those mailboxes. Refused (naming the mailbox) when the member is the last
    owner of a mailbox the group owns."""
    require_manager(user)
    _require_ward(group)
    if not group.user_set.filter(pk=member.pk).exists():
        return
    owned = list(Mailbox.objects.filter(memberships__group=group, memberships__role=Membership.Role.OWNER).distinct())
    had_owner = members.owners_before_change(owned)
    with members.group_change_handled():  # handed over below, audited with the manager as actor
        group.user_set.remove(member)
    for mailbox in owned:
        # The last owner leaving the owners' group would leave the mailbox with nobody to manage it.
        _in_mailbox(members.keep_an_owner, mailbox=mailbox, had_owner=had_owner[mailbox.pk])
    audit_record(actor=user, action="group.member_removed", group=group.name, member=member.username)
    _group_access_changed(actor=user, group=group, member=member)


def _group_access_changed(*, actor: Any, group: Group, member: Any) -> None:
    for mailbox in Mailbox.objects.filter(memberships__group=group).distinct():
        members.access_changed(actor=actor, mailbox=mailbox, user_ids=[member.pk])


# --- absences on a colleague's behalf ------------------------------------------------------------------------------


def absence_set(*, user: Any, person: Any, substitute: Any, starts_at: datetime, ends_at: datetime) -> Absence:
    require_manager(user)
    return absences.absence_create(user=person, substitute=substitute, starts_at=starts_at, ends_at=ends_at, actor=user)


def absence_end(*, user: Any, absence_id: int) -> None:
    require_manager(user)
    absence = Absence.objects.select_related("user").get(pk=absence_id)
    absences.absence_end(user=absence.user, absence_id=absence.pk, actor=user)


# --- bulk changes ---------------------------------------------------------------------------------------------------


@transaction.atomic
def memberships_bulk_set(
    *, user: Any, mailboxes: Sequence[Mailbox], people: Sequence[Any], groups: Sequence[Group], role: str
) -> int:
    """Every person and group gets the role in every mailbox, in one step: one failure undoes all of it. Each
    change is the members service's (audited on its own). Returns how many memberships were set."""
    require_manager(user)
    if not mailboxes or not (people or groups):
        raise PortalError(_("Bitte mindestens ein Postfach und mindestens eine Person oder Gruppe wählen."))
    count = 0
    for mailbox in mailboxes:
        for person in people:
            _in_mailbox(members.membership_set, user=user, mailbox=mailbox, username=person.username, role=role)
            count += 1
        for group in groups:
            _in_mailbox(members.membership_set, user=user, mailbox=mailbox, group_name=group.name, role=role)
            count += 1
    return count


@transaction.atomic
def user_remove_everywhere(*, user: Any, person: Any, leave_groups: bool) -> int:
    """Someone leaves the staff: their own memberships in every mailbox go (and, if asked, their groups), through
    the members service, so their open work returns to the queues. One transaction: if they are the last owner
    somewhere, nothing changes and the error names that mailbox. Returns how many memberships and groups went."""
    require_manager(user)
    removed = 0
    direct = Membership.objects.filter(user=person).select_related("mailbox").order_by("mailbox__display_name")
    for membership in direct:
        mailbox = membership.mailbox
        _in_mailbox(members.membership_remove, user=user, mailbox=mailbox, membership_id=membership.pk)
        removed += 1
    if leave_groups:
        # Wards only: groups that grant a permission are the administration's (see _require_ward).
        for group in person.groups.filter(permissions__isnull=True).order_by("name"):
            group_member_remove(user=user, group=group, member=person)
            removed += 1
    return removed


def _in_mailbox(service: Any, **kwargs: Any) -> None:
    # In a step over many mailboxes, an error must say which one refused.
    try:
        service(**kwargs)
    except PortalError as exc:
        raise PortalError(f"{kwargs['mailbox'].display_name}: {exc.message}") from exc
