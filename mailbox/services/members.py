"""Who may read and work a mailbox: owners, managers (Leitung) and administrators manage memberships.

Every change goes through here — the owners' page, the managers' pages and the Django admin alike — so it is audited,
a mailbox always keeps an owner (a person who can sign in, not just an owners' group), and access ends when it
should: a person who can no longer work the mailbox hands their open work back to the unassigned queue (owners are
told), loses their read-locks there, their drafts go to the owners, and their open pages leave the mailbox at once.
Who can work it is decided by the right to process their memberships give, also while the mailbox is switched off
(see _access_changed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed, PortalError
from kimportal.requestscope import bound
from mailbox import events
from mailbox.models import Mailbox, Membership, Message, Notification, OutgoingMessage, member_q
from mailbox.permissions import Action, can, granted_role, is_manager, members_q, user_role
from mailbox.selectors.mailboxes import display_name, mailbox_owners
from mailbox.services.assignment import open_period
from mailbox.services.audit import audit_record
from mailbox.services.claims import claims_release_all
from mailbox.services.compose import outgoing_drafts_reclaim, outgoing_drafts_return
from mailbox.services.guard import bump
from mailbox.services.notifications import notify
from mailbox.services.outbox import outgoing_claims_return

log = logging.getLogger(__name__)


def _require_manager(user: Any, mailbox: Mailbox) -> None:
    # Owners manage their mailbox; managers (Leitung) and administrators with the model permission manage every
    # mailbox, without being members of it.
    if can(user_role(user, mailbox), Action.MANAGE) or is_manager(user) or user.has_perm("mailbox.change_membership"):
        return
    raise NotAllowed(_("Nur Eigentümer des Postfachs dürfen Mitglieder verwalten."))


@transaction.atomic
def membership_set(*, user: Any, mailbox: Mailbox, username: str = "", group_name: str = "", role: str) -> Membership:
    _require_manager(user, mailbox)
    if role not in Membership.Role.values:
        raise PortalError(_("Unbekannte Rolle."))
    had_owner = _owner_before_change(mailbox)
    if username:
        member = get_user_model().objects.filter(username=username, is_active=True).first()
        if member is None:
            raise PortalError(_("Benutzer „%(name)s“ gibt es nicht.") % {"name": username})
        membership = _grant(actor=user, mailbox=mailbox, role=role, user=member)
    else:
        group = Group.objects.filter(name=group_name).first()
        if group is None:
            raise PortalError(_("Gruppe „%(name)s“ gibt es nicht.") % {"name": group_name})
        membership = _grant(actor=user, mailbox=mailbox, role=role, group=group)
    keep_an_owner(mailbox, had_owner=had_owner)
    affected = _affected_users(membership)
    audit_record(
        actor=user,
        action="membership.set",
        mailbox=mailbox,
        member=username or None,
        group=group_name or None,
        role=role,
    )
    _access_changed(actor=user, mailbox=mailbox, user_ids=affected)
    return membership


@transaction.atomic
def membership_remove(*, user: Any, mailbox: Mailbox, membership_id: int) -> None:
    _require_manager(user, mailbox)
    had_owner = _owner_before_change(mailbox)
    membership = Membership.objects.select_related("user", "group").get(pk=membership_id, mailbox=mailbox)
    affected = _affected_users(membership)
    membership.delete()
    keep_an_owner(mailbox, had_owner=had_owner)
    audit_record(
        actor=user,
        action="membership.removed",
        mailbox=mailbox,
        member=membership.user.username if membership.user else None,
        group=membership.group.name if membership.group else None,
    )
    _access_changed(actor=user, mailbox=mailbox, user_ids=affected)


def _grant(*, actor: Any, mailbox: Mailbox, role: str, **member: Any) -> Membership:
    """Create the membership or change its role; the grant (when, by whom) is the current role's, so setting the
    same role again keeps the original grant."""
    membership = Membership.objects.select_for_update().filter(mailbox=mailbox, **member).first()
    if membership is not None and membership.role == role:
        return membership
    if membership is None:
        membership = Membership(mailbox=mailbox, **member)
    membership.role = role
    membership.granted_at = timezone.now()
    membership.granted_by = actor if getattr(actor, "is_authenticated", False) else None
    membership.save()
    return membership


def has_an_owner(mailbox: Mailbox) -> bool:
    """Whether a person can manage the mailbox as its owner: an active account with the owner role, directly or
    through a group. An owners' group nobody is in, or switched-off accounts, manage nothing."""
    owners = Membership.objects.filter(mailbox=mailbox, role=Membership.Role.OWNER)
    return get_user_model().objects.filter(members_q(owners), is_active=True).exists()


def _owner_before_change(mailbox: Mailbox) -> bool:
    # Changes to one mailbox's memberships take turns on its row: two owners removing each other at the same
    # moment would otherwise each still see the other and leave the mailbox with none.
    Mailbox.objects.select_for_update().filter(pk=mailbox.pk).values_list("pk").first()
    return has_an_owner(mailbox)


def keep_an_owner(mailbox: Mailbox, *, had_owner: bool) -> None:
    """After a change that may have taken owners away (inside its transaction): refuse it if the mailbox had an
    owner before and has none now, or has no owner membership at all. A mailbox nobody may manage any more is a
    support call. One that had no owner person before (its owners' group empty, its owners switched off) may still
    be changed: the change may be the one that mends it."""
    if not Membership.objects.filter(mailbox=mailbox, role=Membership.Role.OWNER).exists() or (
        had_owner and not has_an_owner(mailbox)
    ):
        raise PortalError(_("Ein Postfach braucht mindestens einen Eigentümer."))


def owners_before_change(mailboxes: list[Mailbox]) -> dict[int, bool]:
    """Before a change that may take owners away from several mailboxes (a person leaving a group): whether each
    had an owner, for keep_an_owner afterwards. Locks the mailboxes' rows, in a fixed order."""
    return {mailbox.pk: _owner_before_change(mailbox) for mailbox in sorted(mailboxes, key=lambda m: m.pk)}


def mailboxes_left_without_owner(
    *,
    users_gone: Collection[int] = (),
    groups_gone: Collection[int] = (),
    groups_of: Mapping[int, Collection[int]] | None = None,
) -> list[Mailbox]:
    """Before a change the Django admin would make to accounts or groups: the mailboxes that have an owner now (a
    person who can sign in, see has_an_owner) and would have none after it — for the form to refuse it, naming
    them, before anything is saved. The change: `users_gone` switched off or deleted, `groups_gone` deleted,
    `groups_of` a person's groups replaced by these. Locks those mailboxes' rows, as a membership change does,
    until the caller's transaction ends."""
    replaced = {user_id: set(group_ids) for user_id, group_ids in (groups_of or {}).items()}
    people = {*users_gone, *replaced}
    through = get_user_model().groups.through
    their_groups = through.objects.filter(user_id__in=people).values("group_id")
    owned = Membership.objects.filter(
        Q(user_id__in=people) | Q(group_id__in=their_groups) | Q(group_id__in=groups_gone),
        role=Membership.Role.OWNER,
    ).values("mailbox_id")
    lost = []
    with transaction.atomic():
        for mailbox in Mailbox.objects.select_for_update().filter(pk__in=owned).order_by("pk"):
            if has_an_owner(mailbox) and not _owner_after(mailbox, users_gone, groups_gone, replaced):
                lost.append(mailbox)
    return sorted(lost, key=lambda mailbox: (mailbox.display_name, mailbox.pk))


def _owner_after(
    mailbox: Mailbox, users_gone: Collection[int], groups_gone: Collection[int], groups_of: dict[int, set[int]]
) -> bool:
    owners = Membership.objects.filter(mailbox=mailbox, role=Membership.Role.OWNER).exclude(group_id__in=groups_gone)
    direct = set(owners.filter(user__isnull=False).values_list("user_id", flat=True))
    owner_groups = set(owners.filter(group__isnull=False).values_list("group_id", flat=True))
    through = get_user_model().groups.through
    via = through.objects.filter(group_id__in=owner_groups).exclude(user_id__in=list(groups_of))
    people = direct | set(via.values_list("user_id", flat=True))
    people |= {user_id for user_id, group_ids in groups_of.items() if group_ids & owner_groups}
    people -= set(users_gone)
    return get_user_model().objects.filter(pk__in=people, is_active=True).exists()


def owned_with_an_owner(group_ids: Iterable[int]) -> list[int]:
    """Before people leave these groups outside the portal's forms: the mailboxes the groups own that have an
    owner person now, for owners_lost afterwards."""
    owner_of = Membership.objects.filter(group_id__in=list(group_ids), role=Membership.Role.OWNER)
    mailboxes = Mailbox.objects.filter(pk__in=owner_of.values("mailbox_id")).order_by("pk")
    return [mailbox.pk for mailbox in mailboxes if has_an_owner(mailbox)]


def owners_lost(*, actor: Any, mailbox_ids: Iterable[int], people: list[Any], reason: str) -> None:
    """After a change outside the portal's forms (a directory sync, a script, the shell) that may have taken these
    mailboxes' last owner who can sign in: each that has none now is audited (per person who went) and logged.
    Not refused — such a change is the directory's or the account's truth, and refusing it would keep an owner
    who should have gone — but made visible, so that the managers give the mailbox an owner."""
    for mailbox in Mailbox.objects.filter(pk__in=list(mailbox_ids)).order_by("pk"):
        if has_an_owner(mailbox):
            continue
        for person in people:
            audit_record(
                actor=actor, action="mailbox.owner_lost", mailbox=mailbox, member=person.username, reason=reason
            )
        log.warning("Mailbox %s has no owner who can sign in any more (%s)", mailbox.pk, reason)


def _affected_users(membership: Membership) -> list[int]:
    if membership.user_id:
        return [membership.user_id]
    return list(get_user_model().objects.filter(groups=membership.group_id).values_list("pk", flat=True))


def access_changed(*, actor: Any, mailbox: Mailbox, user_ids: list[int]) -> None:
    """For writes outside this module that change who is covered by a membership (a user joining or leaving a
    group, a mailbox switched off): the same consequences as a membership change. Call inside the transaction."""
    _access_changed(actor=actor, mailbox=mailbox, user_ids=user_ids)


def _access_changed(*, actor: Any, mailbox: Mailbox, user_ids: list[int]) -> None:
    """Whoever can no longer process in the mailbox hands their work back; whoever can (again) gets their drafts
    back; their pages follow on commit.

    Every role change is decided the same way, by the right to process the role gives (granted_role), not by
    whether the mailbox happens to be switched on:
    - Losing it (removed; processor or owner made reader or observer; a group left) is leaving, whether the
      mailbox is on or off: open messages go back to the unassigned queue (owners told), claims and locks go,
      drafts go to the owners (outgoing_drafts_return). Reason "membership_ended" when no role is left,
      "role_changed" when the person still reads.
    - Keeping it (processor made owner and back) changes nothing. A mailbox switched off keeps everyone's work
      where it is (mailbox_set_active); a role change made meanwhile must not read "no role at all" there.
    - Gaining it (again) is returning: drafts left there are the person's again (outgoing_drafts_reclaim,
      audited); messages stay in the queue, where colleagues may have taken them meanwhile.
    """
    for person in get_user_model().objects.filter(pk__in=user_ids):
        _process_right_changed(actor=actor, mailbox=mailbox, person=person)
    events.broadcast_memberships_changed(user_ids=user_ids)


def _process_rights(person: Any, mailbox_ids: Iterable[int]) -> dict[int, bool]:
    """Before a change: whether the person may process in each mailbox, for _process_right_changed afterwards."""
    return {mailbox_id: can(granted_role(person, mailbox_id), Action.PROCESS) for mailbox_id in mailbox_ids}


def _process_right_changed(*, actor: Any, mailbox: Mailbox, person: Any, could_process: bool | None = None) -> None:
    """The one rule for a change that may give or take the right to process in the mailbox, read now: without it,
    the person hands their work back (work_return; reason "membership_ended" when no role is left, "role_changed"
    when they still read); with it, their drafts left there are theirs again (outgoing_drafts_reclaim).

    `could_process`: whether they could before the change, where the caller read it; when it is the same now,
    nothing is handed over. Not known (None): handed over as the right reads now (both steps find nothing to do
    when nothing changed)."""
    role = granted_role(person, mailbox)
    can_process = can(role, Action.PROCESS)
    if could_process is not None and could_process == can_process:
        return
    if not can_process:
        reason = "membership_ended" if role is None else "role_changed"
        work_return(actor=actor, mailbox=mailbox, person=person, reason=reason)
    else:
        outgoing_drafts_reclaim(actor=actor, mailbox_id=mailbox.pk, person=person, reason="membership_changed")


# --- group memberships changed where Django reports it (m2m_changed of User.groups) --------------------------------

# A service that changes groups and hands the work over itself, with its actor (mailbox.services.manage, signin).
_GROUP_CHANGE_HANDLED: ContextVar[bool] = ContextVar("members_group_change_handled", default=False)
# Who changes groups, where a caller knows it (the Django admin's user form); otherwise the system.
_GROUP_CHANGE_ACTOR: ContextVar[Any] = ContextVar("members_group_change_actor", default=None)


def group_change_handled() -> AbstractContextManager[None]:
    """Around a group change whose caller returns the work and reclaims the drafts itself (access_changed, with
    its own actor and audit): the m2m_changed receiver leaves it alone."""
    return bound(_GROUP_CHANGE_HANDLED, True)


def group_change_by(actor: Any) -> AbstractContextManager[None]:
    """Group changes inside are audited as made by `actor` (an administrator saving the user form)."""
    return bound(_GROUP_CHANGE_ACTOR, actor)


@dataclass(frozen=True)
class GroupChange:
    """Before people join or leave groups: who, which groups, and who could process in each mailbox those groups
    are members of."""

    user_ids: list[int]
    group_ids: list[int]
    could_process: dict[tuple[int, int], bool]  # (user id, mailbox id)
    # Mailboxes those groups own that have an owner person now: leaving may take the last one (owner_lost).
    owned: list[int] = field(default_factory=list)


def groups_changing(*, user_ids: list[int], group_ids: list[int], leaving: bool) -> GroupChange | None:
    """Before a change of User.groups (pre_add, pre_remove, pre_clear; one side is always a single user or group),
    read where it may change the right to process; None when there is nothing to do (no mailbox involved, or the
    caller hands the work over itself). Removing someone from a group they are not in changes nothing."""
    if _GROUP_CHANGE_HANDLED.get() or not user_ids or not group_ids:
        return None
    if leaving:
        pairs = get_user_model().groups.through.objects.filter(user_id__in=user_ids, group_id__in=group_ids)
        user_ids = sorted(set(pairs.values_list("user_id", flat=True)))
        group_ids = sorted(set(pairs.values_list("group_id", flat=True)))
    mailbox_ids = sorted(
        set(Membership.objects.filter(group_id__in=group_ids).values_list("mailbox_id", flat=True).distinct())
    )
    if not mailbox_ids or not user_ids:
        return None
    people = list(get_user_model().objects.filter(pk__in=user_ids).order_by("pk"))
    could = {
        (person.pk, mailbox_id): could_process
        for person in people
        for mailbox_id, could_process in _process_rights(person, mailbox_ids).items()
    }
    owned = owned_with_an_owner(group_ids) if leaving else []
    return GroupChange(
        user_ids=[person.pk for person in people], group_ids=list(group_ids), could_process=could, owned=owned
    )


def groups_changed(change: GroupChange | None, *, joined: bool) -> None:
    """After the change (post_add, post_remove, post_clear): audited as a manager's change of a ward is, and, per
    mailbox, as a membership change is (_access_changed) — whoever lost the right to process there hands their
    work and drafts back, whoever gained it gets their drafts back. A mailbox where the right stayed (another
    membership still gives it) is left alone."""
    if change is None:
        return
    actor = _GROUP_CHANGE_ACTOR.get()
    people = {person.pk: person for person in get_user_model().objects.filter(pk__in=change.user_ids)}
    groups = dict(Group.objects.filter(pk__in=change.group_ids).values_list("pk", "name"))
    mailboxes = Mailbox.objects.in_bulk(sorted({mailbox_id for _user, mailbox_id in change.could_process}))
    with transaction.atomic():
        for person in people.values():
            for group_id in sorted(groups):
                audit_record(
                    actor=actor,
                    action="group.member_added" if joined else "group.member_removed",
                    group=groups[group_id],
                    member=person.username,
                )
        for (user_id, mailbox_id), could in sorted(change.could_process.items()):
            if user_id not in people or mailbox_id not in mailboxes:
                continue
            _process_right_changed(
                actor=actor, mailbox=mailboxes[mailbox_id], person=people[user_id], could_process=could
            )
        owners_lost(actor=actor, mailbox_ids=change.owned, people=list(people.values()), reason="group_left")
    events.broadcast_memberships_changed(user_ids=list(people))


def groups_saved(*, actor: Any, person: Any, group_ids: Iterable[int], save: Callable[[], None]) -> None:
    """A save that sets all of a person's groups at once (the Django admin's user form: Django removes the groups
    left, then adds the new ones). The right to process is compared once, before and after the whole save: moved
    from one ward to another that processes the same mailbox, the person keeps their work (step by step, the
    moment between the two steps would have read as leaving). Audited with `actor` per group joined or left."""
    through = get_user_model().groups.through
    before = set(through.objects.filter(user_id=person.pk).values_list("group_id", flat=True)) if person.pk else set()
    touched = before ^ set(group_ids)
    mailbox_ids = sorted(set(Membership.objects.filter(group_id__in=touched).values_list("mailbox_id", flat=True)))
    could = _process_rights(person, mailbox_ids)
    with group_change_handled():
        save()
    after = set(through.objects.filter(user_id=person.pk).values_list("group_id", flat=True))
    if before == after:
        return
    names = dict(Group.objects.filter(pk__in=before ^ after).values_list("pk", "name"))
    mailboxes = Mailbox.objects.in_bulk(mailbox_ids)
    with transaction.atomic():
        for group_id in sorted(before ^ after):
            joined = group_id in after
            action = "group.member_added" if joined else "group.member_removed"
            audit_record(actor=actor, action=action, group=names.get(group_id, ""), member=person.username)
        for mailbox_id, could_process in could.items():
            _process_right_changed(
                actor=actor, mailbox=mailboxes[mailbox_id], person=person, could_process=could_process
            )
    events.broadcast_memberships_changed(user_ids=[person.pk])


def account_deactivated(*, person: Any) -> None:
    """An account was switched off (in the Django admin, by a directory sync, from the shell): as when it leaves its
    mailboxes, its open work in each goes back to the unassigned queue and the owners are told, instead of staying
    with someone who will not see it. By the system: who switched it off is not known here."""
    mailbox_ids = Membership.objects.filter(member_q(person)).values_list("mailbox_id", flat=True).distinct()
    with transaction.atomic():
        for mailbox in Mailbox.objects.filter(pk__in=list(mailbox_ids)).order_by("pk"):
            work_return(actor=None, mailbox=mailbox, person=person, reason="account_deactivated")
        # The account was active: where it was an owner, the mailbox had one before.
        owned = Membership.objects.filter(member_q(person), role=Membership.Role.OWNER).values_list("mailbox_id")
        owners_lost(actor=None, mailbox_ids=[pk for (pk,) in owned], people=[person], reason="account_deactivated")
    events.broadcast_memberships_changed(user_ids=[person.pk])


def account_reactivated(*, person: Any) -> None:
    """An account switched on again: its drafts left when it was switched off are its own again in every mailbox its
    memberships let it process in — also one switched off at the moment, which would otherwise keep them with the
    owners for good — and the owners no longer see them; elsewhere they stay with the owners. Audited per draft, by
    the system (who switched it on is not known here)."""
    mailbox_ids = (
        OutgoingMessage.objects.filter(author=person, state=OutgoingMessage.State.DRAFT, author_left_at__isnull=False)
        .values_list("mailbox_id", flat=True)
        .distinct()
    )
    with transaction.atomic():
        for mailbox_id in sorted(set(mailbox_ids)):
            if can(granted_role(person, mailbox_id), Action.PROCESS):
                outgoing_drafts_reclaim(actor=None, mailbox_id=mailbox_id, person=person, reason="account_reactivated")


def work_return(*, actor: Any, mailbox: Mailbox, person: Any, reason: str = "membership_ended") -> int:
    """The person's open messages in the mailbox go back to the unassigned queue; their locks there go.

    Audited per message; the owners are told once (all of them when the system acts: `actor` None). Returns how many
    messages went back.
    """
    returned = 0
    open_work = (
        Message.objects.select_for_update(of=("self",))
        .filter(mailbox=mailbox, assignee=person)
        .exclude(state=Message.State.DONE)
        .order_by("pk")
    )
    for message in open_work:
        open_period(message, None, by=actor)
        audit_record(actor=actor, action="message.unassigned", message=message, previous=person.pk, reason=reason)
        state = Message.State.NEW if message.state == Message.State.IN_PROGRESS else message.state
        bump(message, assignee=None, state=state)
        returned += 1
    claims_release_all(user=person, mailbox_id=mailbox.pk, reason=reason)
    outgoing_claims_return(actor=actor, mailbox_id=mailbox.pk, person=person, reason=reason)
    outgoing_drafts_return(actor=actor, mailbox_id=mailbox.pk, person=person, reason=reason)
    if returned:
        owners = [owner for owner in mailbox_owners(mailbox) if actor is None or owner.pk != actor.pk]
        notify(
            owners,
            kind=Notification.Kind.WORK_RETURNED,
            message=None,
            actor=actor,
            params={"name": display_name(person), "mailbox": mailbox.display_name, "count": returned},
        )
    return returned
