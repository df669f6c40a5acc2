"""Accounts and groups changed wherever Django reports it (signals): deleted, a group renamed, the permissions a
user or a group holds directly. The Django admin, a directory script, a management command and the shell all end
here, so each change is audited once, in the writer's transaction, with the administrator as actor where the admin
says who (changed_by), else by the system.

Deleting from code is audited, not refused, as other changes outside the portal's forms are (members.owners_lost):
a script deleting an account or a ward carries the hospital's truth, and refusing it would keep someone who should
have gone. A mailbox left without an owner who can sign in is made visible instead (mailbox.owner_lost). The Django
admin refuses such a delete before anything is deleted (mailbox.admin).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q, QuerySet

from kimportal.requestscope import bound
from mailbox.models import Mailbox, Membership, OutgoingMessage, member_q
from mailbox.services.audit import audit_record
from mailbox.services.members import (
    GroupChange,
    groups_changed,
    groups_changing,
    has_an_owner,
    owners_lost,
    work_return,
)

# Who changes accounts and groups, where a caller knows it (the Django admin); otherwise the system.
_ACTOR: ContextVar[Any] = ContextVar("auth_changes_actor", default=None)
# A save that audits the permissions it sets itself, once for the whole save: the m2m_changed receiver leaves it.
_PERMISSIONS_HANDLED: ContextVar[bool] = ContextVar("auth_changes_permissions_handled", default=False)


def changed_by(actor: Any) -> AbstractContextManager[None]:
    """Deletes, renames and permission changes inside are audited as made by `actor`."""
    return bound(_ACTOR, actor)


def _permissions_handled() -> AbstractContextManager[None]:
    return bound(_PERMISSIONS_HANDLED, True)


# --- deleting ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deleting:
    """Read before a user or group is deleted (pre_delete), for the audit after it (post_delete)."""

    details: dict[str, Any]
    people: list[Any]  # who loses an owner role by it
    owned_with_an_owner: list[int]  # mailboxes owned through it that have an owner person now
    # A deleted group's members leave it: where that takes their right to process, their work goes back, as when
    # they leave it alive (members.groups_changing / groups_changed).
    members_leaving: GroupChange | None = None


def _locked_mailboxes(mailbox_ids: Iterable[int]) -> list[Mailbox]:
    # The mailboxes the deleted owned: the delete takes turns with membership changes on their rows
    # (members._owner_before_change), in a fixed order, so "had an owner" read here still holds when it ends.
    return list(Mailbox.objects.select_for_update().filter(pk__in=list(mailbox_ids)).order_by("pk"))


# Where a bulk delete's queryset remembers the delete it has locked the mailboxes for (_lock_deleted_together).
_LOCKED_FOR = "_auth_changes_owned_locked_for"


def _lock_deleted_together(instance: Any, origin: Any) -> None:
    """A bulk delete from code (`User.objects.filter(...).delete()`; Django sends pre_delete per instance, with the
    queryset as origin): the mailboxes all its users or groups own are locked at once, in pk order, before any of
    them is read. One instance after the other (_locked_mailboxes), two such deletes over the same mailboxes took
    them in different orders — a person owning the second mailbox before one owning the first — and PostgreSQL
    aborted one as a deadlock. Taken once per delete, at its first instance: the rows stay locked to the end of the
    transaction, so asking again for each further instance only repeated the query. An instance the queryset no
    longer matched when read here (changed since Django collected it) still locks its own in turn."""
    model = instance._meta.concrete_model
    if not isinstance(origin, QuerySet) or origin.model._meta.concrete_model is not model:
        return  # instance.delete(): its own mailboxes are the only ones, locked in pk order
    # The delete's own atomic block (Django's collector opens one around all its pre_delete signals): the same
    # queryset deleted once more is another delete, which locks again.
    blocks = transaction.get_connection(origin.db).atomic_blocks
    delete = blocks[-1] if blocks else None
    if delete is not None and origin.__dict__.get(_LOCKED_FOR) is delete:
        return
    together = origin.values("pk")
    if model is Group:
        owner_of = Membership.objects.filter(group_id__in=together, role=Membership.Role.OWNER)
    else:
        their_groups = get_user_model().groups.through.objects.filter(user_id__in=together).values("group_id")
        owner_of = Membership.objects.filter(
            Q(user_id__in=together) | Q(group_id__in=their_groups), role=Membership.Role.OWNER
        )
    owned = Mailbox.objects.select_for_update().filter(pk__in=owner_of.values("mailbox_id")).order_by("pk")
    list(owned.values_list("pk", flat=True))
    if delete is not None:
        origin.__dict__[_LOCKED_FOR] = delete


def user_deleting(person: Any, *, origin: Any = None) -> Deleting:
    """Before a user is deleted (pre_delete; `origin` the delete's, an instance or a queryset)."""
    _lock_deleted_together(person, origin)
    group_ids = list(
        get_user_model().groups.through.objects.filter(user_id=person.pk).values_list("group_id", flat=True)
    )
    owner_of = Membership.objects.filter(Q(user_id=person.pk) | Q(group_id__in=group_ids), role=Membership.Role.OWNER)
    owned = _locked_mailboxes(owner_of.values_list("mailbox_id", flat=True))
    # Their open work goes back to the unassigned queue, their locks go and the owners are told, as when the account
    # is switched off (members.work_return): the delete alone cleared the assignee and the lock (SET_NULL), unaudited
    # and unseen by the pages that showed them. The delete clears the drafts' author too: unmarked, they would be
    # nobody's to see, so work_return marks them as left by a former member while they still name their author — in
    # every mailbox the person belongs to, and in any they had left with drafts still theirs (a membership removed
    # from code, without the hand-over), where they go to the owners all the same.
    member_of = Membership.objects.filter(member_q(person)).values("mailbox_id")
    drafts_in = OutgoingMessage.objects.filter(
        author=person, state=OutgoingMessage.State.DRAFT, author_left_at=None
    ).values("mailbox_id")
    for mailbox in Mailbox.objects.filter(Q(pk__in=member_of) | Q(pk__in=drafts_in)).order_by("pk"):
        work_return(actor=_ACTOR.get(), mailbox=mailbox, person=person, reason="user_deleted")
    details = {
        "user_id": person.pk,
        "member": person.username,
        "groups": sorted(Group.objects.filter(pk__in=group_ids).values_list("name", flat=True)),
        "owner_of": [mailbox.address for mailbox in owned],
    }
    return Deleting(
        details=details,
        people=[person],
        owned_with_an_owner=[mailbox.pk for mailbox in owned if has_an_owner(mailbox)],
    )


def group_deleting(group: Group, *, origin: Any = None) -> Deleting:
    """Before a group is deleted (pre_delete; `origin` the delete's, an instance or a queryset)."""
    _lock_deleted_together(group, origin)
    people = list(get_user_model().objects.filter(groups=group.pk).order_by("username"))
    memberships = Membership.objects.filter(group_id=group.pk)
    owned = _locked_mailboxes(memberships.filter(role=Membership.Role.OWNER).values_list("mailbox_id", flat=True))
    mailboxes = Mailbox.objects.filter(pk__in=memberships.values("mailbox_id")).order_by("pk")
    details = {
        "group_id": group.pk,
        "group": group.name,
        "members": [person.username for person in people],
        "mailboxes": [mailbox.address for mailbox in mailboxes],
        "owner_of": [mailbox.address for mailbox in owned],
    }
    # Its rows go without m2m_changed. The mailboxes it owned are audited with the delete (owner_lost once), not
    # again as left by its members.
    leaving = groups_changing(user_ids=[person.pk for person in people], group_ids=[group.pk], leaving=True)
    return Deleting(
        details=details,
        people=people,
        owned_with_an_owner=[mailbox.pk for mailbox in owned if has_an_owner(mailbox)],
        members_leaving=replace(leaving, owned=[]) if leaving is not None else None,
    )


def deleted(deleting: Deleting | None, *, action: str, reason: str) -> None:
    """After the delete (post_delete, inside its transaction): the event naming who or what went,
    mailbox.owner_lost for each mailbox that had an owner who can sign in and has none now, and a deleted group's
    members' work handed back where they lost the right to process with it."""
    if deleting is None:
        return
    actor = _ACTOR.get()
    audit_record(actor=actor, action=action, **deleting.details)
    owners_lost(actor=actor, mailbox_ids=deleting.owned_with_an_owner, people=deleting.people, reason=reason)
    groups_changed(deleting.members_leaving, joined=False)


# --- renaming a group ----------------------------------------------------------------------------------------------


def group_renamed(*, group: Group, previous: str) -> None:
    audit_record(actor=_ACTOR.get(), action="group.renamed", group_id=group.pk, group=group.name, previous=previous)


# --- permissions held directly -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Holders:
    """User.user_permissions or Group.permissions: whose permissions a through table holds."""

    model: Any
    column: str  # the through table's column naming the holder
    action: str

    @property
    def through(self) -> Any:
        field = "user_permissions" if self.model is not Group else "permissions"
        return getattr(self.model, field).through

    def names(self, holder_ids: Iterable[int]) -> dict[int, set[str]]:
        rows = self.through.objects.filter(**{f"{self.column}__in": list(holder_ids)}).values_list(
            self.column, "permission__content_type__app_label", "permission__codename"
        )
        held: dict[int, set[str]] = {pk: set() for pk in holder_ids}
        for holder_id, app_label, codename in rows:
            held[holder_id].add(f"{app_label}.{codename}")
        return held

    def record(self, *, actor: Any, holder: Any, before: set[str], after: set[str]) -> None:
        if before == after:
            return
        who = {"group": holder.name} if self.model is Group else {"member": holder.username}
        audit_record(
            actor=actor, action=self.action, **who, added=sorted(after - before), removed=sorted(before - after)
        )


def _holders(*, groups: bool) -> _Holders:
    if groups:
        return _Holders(model=Group, column="group_id", action="group.permissions_changed")
    return _Holders(model=get_user_model(), column="user_id", action="user.permissions_changed")


def permissions_changing(
    *, sender: Any, instance: Any, reverse: bool, pk_set: set[int] | None
) -> dict[int, set[str]] | None:
    """Before user.user_permissions / group.permissions change from code (pre_add, pre_remove, pre_clear; the
    reverse side, permission.user_set …, too): what each holder the change touches holds now."""
    if _PERMISSIONS_HANDLED.get():
        return None
    holders = _holders(groups=sender is Group.permissions.through)
    if not reverse:
        holder_ids = [instance.pk]
    elif pk_set is not None:
        holder_ids = sorted(pk_set)
    else:  # permission.<holders>.clear(): everyone who holds it
        holding = holders.through.objects.filter(permission_id=instance.pk)
        holder_ids = sorted(holding.values_list(holders.column, flat=True))
    return holders.names(holder_ids)


def permissions_changed(*, sender: Any, before: dict[int, set[str]] | None) -> None:
    """After the change (post_add, post_remove, post_clear): one event per holder whose permissions changed,
    naming those added and removed ("app_label.codename")."""
    if not before:
        return
    holders = _holders(groups=sender is Group.permissions.through)
    after = holders.names(before)
    actor = _ACTOR.get()
    for holder in holders.model.objects.filter(pk__in=list(before)).order_by("pk"):
        holders.record(actor=actor, holder=holder, before=before[holder.pk], after=after[holder.pk])


def permissions_saved(*, actor: Any, holder: Any, save: Callable[[], None]) -> None:
    """A save that sets all of a user's or group's permissions at once (the Django admin's forms: Django removes
    those taken away, then adds the new ones). Audited once per save, with `actor`, only when they changed."""
    holders = _holders(groups=isinstance(holder, Group))
    before = holders.names([holder.pk])[holder.pk] if holder.pk else set()
    with _permissions_handled():
        save()
    after = holders.names([holder.pk])[holder.pk]
    holders.record(actor=actor, holder=holder, before=before, after=after)
