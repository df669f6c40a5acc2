"""The access report for managers: who may do what, since when, granted by whom — per mailbox and per user.

A row is one way a person reaches a mailbox: their own membership, or one of their groups' (wards). A person can
have several rows for one mailbox; their effective role is the strongest (mailbox.permissions). Managers see every
mailbox here; the report lists access, never messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from mailbox.models import Absence, Mailbox, Membership
from mailbox.selectors.mailboxes import display_name


@dataclass(frozen=True)
class AccessRow:
    mailbox: Mailbox
    user: Any | None  # None: a group membership whose group has no members (yet)
    group: Group | None  # the group the access comes through; None for a direct membership
    role: str
    role_label: str
    granted_at: datetime | None  # None: granted before this was recorded
    granted_by: str

    @property
    def user_name(self) -> str:
        return display_name(self.user) if self.user is not None else ""


def _memberships() -> QuerySet[Membership]:
    active_users = get_user_model().objects.filter(is_active=True).order_by("last_name", "first_name", "username")
    return Membership.objects.select_related("mailbox", "user", "group", "granted_by").prefetch_related(
        Prefetch("group__user_set", queryset=active_users, to_attr="active_users")
    )


def _rows(membership: Membership, only_user: Any = None) -> Iterator[AccessRow]:
    def row(user: Any | None, group: Group | None) -> AccessRow:
        return AccessRow(
            mailbox=membership.mailbox,
            user=user,
            group=group,
            role=membership.role,
            role_label=membership.get_role_display(),
            granted_at=membership.granted_at,
            granted_by=display_name(membership.granted_by) if membership.granted_by else "",
        )

    if membership.user is not None:
        yield row(membership.user, None)
        return
    group = membership.group
    assert group is not None
    people = [only_user] if only_user is not None else getattr(group, "active_users", [])
    if not people:
        yield row(None, group)
    for person in people:
        yield row(person, group)


def access_for_mailbox(mailbox: Mailbox) -> list[AccessRow]:
    """Everyone who reaches the mailbox, directly or through a group, strongest role first."""
    rows = [row for m in _memberships().filter(mailbox=mailbox) for row in _rows(m)]
    return sorted(rows, key=lambda r: (-Membership.RANK[r.role], r.user_name.casefold(), r.group is not None))


def access_for_user(person: Any) -> list[AccessRow]:
    """Every mailbox the person reaches, directly or through which group."""
    memberships = _memberships().filter(Q(user=person) | Q(group__in=person.groups.all()))
    rows = [row for m in memberships for row in _rows(m, only_user=person)]
    return sorted(rows, key=lambda r: (r.mailbox.display_name.casefold(), -Membership.RANK[r.role]))


def access_for_house() -> list[AccessRow]:
    """The whole house (the full export): every mailbox's rows, by mailbox."""
    rows = [row for m in _memberships() for row in _rows(m)]
    return sorted(rows, key=lambda r: (r.mailbox.display_name.casefold(), -Membership.RANK[r.role], r.user_name))


def mailbox_list_for_manager() -> QuerySet[Mailbox]:
    """Every mailbox, active or not, with its account and how many memberships it has."""
    return (
        Mailbox.objects.select_related("account")
        .annotate(membership_count=Count("memberships"))
        .order_by("-is_active", "display_name")
    )


def group_list_for_manager() -> QuerySet[Group]:
    active_users = get_user_model().objects.filter(is_active=True).order_by("last_name", "first_name", "username")
    # grants_permissions: a group with a permission (reviewers, IT, the Leitung) takes no members from these pages.
    granting = Group.permissions.through.objects.filter(group_id=OuterRef("pk"))
    return (
        Group.objects.annotate(grants_permissions=Exists(granting))
        .prefetch_related(
            Prefetch("user_set", queryset=active_users, to_attr="active_users"),
            Prefetch("mailbox_memberships", queryset=Membership.objects.select_related("mailbox")),
        )
        .order_by("name")
    )


def granting_groups_with_mailboxes(person: Any) -> list[str]:
    """The names of the person's groups that grant a permission and are members of a mailbox: the ward pages leave
    them to the administration (manage.user_remove_everywhere), and through them the person still sees mail."""
    granting = Group.permissions.through.objects.filter(group_id=OuterRef("pk"))
    groups = (
        Group.objects.filter(user=person, mailbox_memberships__isnull=False)
        .filter(Exists(granting))
        .distinct()
        .order_by("name")
    )
    return list(groups.values_list("name", flat=True))


def staff_for_manager(*, active_only: bool = True) -> QuerySet[Any]:
    """Users for the pickers on the managers' pages: active ones, or everyone (someone deactivated may still hold
    memberships to clear or to report)."""
    users = get_user_model().objects.order_by("last_name", "first_name", "username")
    return users.filter(is_active=True) if active_only else users


def membership_list_for_manager(mailbox: Mailbox) -> list[Membership]:
    """The mailbox's memberships with who granted them, strongest role first."""
    memberships = Membership.objects.filter(mailbox=mailbox).select_related("user", "group", "granted_by")
    return sorted(
        memberships,
        key=lambda m: (-Membership.RANK[m.role], m.group is not None, (m.user or m.group).__str__().casefold()),
    )


def absence_list_for_manager() -> QuerySet[Absence]:
    """Current and coming absences of the whole house."""
    return Absence.objects.filter(ends_at__gt=timezone.now()).select_related("user", "substitute").order_by("starts_at")
