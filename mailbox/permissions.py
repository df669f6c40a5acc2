"""Who may do what in a mailbox: one role per user and mailbox, one table of actions.

A user's role is the strongest of their own membership and those of their groups (wards). A
deactivated user, or a deactivated mailbox, has no role at all — every view, service and socket
asks here, so switching an account off ends its access everywhere at once.
"""

from __future__ import annotations

import enum
from typing import Any

from django.contrib.auth.models import Permission
from django.db.models import Case, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed
from kimportal.prepared import PreparedQuery
from kimportal.requestscope import in_scope, scoped
from kimportal.sessions import user_flag
from mailbox.models import Mailbox, Membership, member_q, member_roles, memberships_in_force


class Action(enum.Enum):
    READ = "read"
    PROCESS = "process"  # lock, take, assign, state, notes
    BREAK_LOCK = "break_lock"
    MANAGE = "manage"  # members and roles


# The weakest role that may do each action. Observers read like readers but are never notified.
NEEDED: dict[Action, str] = {
    Action.READ: Membership.Role.OBSERVER,
    Action.PROCESS: Membership.Role.PROCESSOR,
    Action.BREAK_LOCK: Membership.Role.OWNER,
    Action.MANAGE: Membership.Role.OWNER,
}


def members_q(memberships: QuerySet[Membership]) -> Q:
    """Users covered by these memberships, directly or through a group (a filter on the user model)."""
    return Q(pk__in=memberships.filter(user__isnull=False).values("user_id")) | Q(
        groups__in=memberships.filter(group__isnull=False).values("group_id")
    )


def user_role(user: Any, mailbox: Mailbox | int) -> str | None:
    """The strongest role the user has in the mailbox; None when not a member, inactive or signed out."""
    mailbox_id = mailbox if isinstance(mailbox, int) else mailbox.pk
    if not getattr(user, "is_authenticated", False):
        return None
    if in_scope():  # within an HTTP request: all of the user's roles, read once (kimportal.requestscope)
        return member_roles(user).get(mailbox_id)
    return _strongest(memberships_in_force(user).filter(mailbox_id=mailbox_id))


def granted_role(user: Any, mailbox: Mailbox | int) -> str | None:
    """The strongest role the user's memberships give in the mailbox whether or not it is switched on right now:
    what they may do there while it is on. It decides who keeps their work in a mailbox
    (mailbox.services.members); what a user may see and do now is always user_role's. Read from the database."""
    mailbox_id = mailbox if isinstance(mailbox, int) else mailbox.pk
    if getattr(user, "pk", None) is None:
        return None
    return _strongest(memberships_in_force(user, while_switched_off=True).filter(mailbox_id=mailbox_id))


def _strongest(memberships: QuerySet[Membership]) -> str | None:
    roles = memberships.values_list("role", flat=True)
    return max(roles, key=lambda r: Membership.RANK[r], default=None)


MANAGER_PERMISSION = "mailbox.manage_house"


def is_manager(user: Any) -> bool:
    """The house's manager role (Leitung): an active user with the manage_house permission (directly, through a
    group, or as superuser). Managers administer mailboxes and access and read the audit; they are not members
    of every mailbox and read no message without a membership.

    Every page asks (the navigation's "Leitung" link): one EXISTS query, read once per request, instead of
    has_perm's two queries loading all of the user's permissions."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if user.is_superuser:
        return True
    # The request's user was read with the answer (kimportal.sessions.user_flag_register, in MailboxConfig).
    known = user_flag(user, MANAGER_PERMISSION)
    if known is not None:
        return known
    return scoped(("mailbox.is_manager", user.pk), lambda: bool(_MANAGER.rows(user.pk)))


def _manager_query(user_id: int | OuterRef) -> QuerySet[Permission, tuple[int]]:
    app_label, codename = MANAGER_PERMISSION.split(".")
    return (
        Permission.objects.filter(content_type__app_label=app_label, codename=codename)
        .filter(Q(user=user_id) | Q(group__user=user_id))
        .values_list("pk")[:1]
    )


# Asked by every page (the navigation's link): compiled once (kimportal.prepared), not per page.
_MANAGER = PreparedQuery(_manager_query)


def manager_flag() -> Exists:
    """is_manager's question as an expression over a user row (read with the signed-in user)."""
    return Exists(_manager_query(OuterRef("pk")))


def can(role: str | None, action: Action) -> bool:
    if role is None:
        return False
    return Membership.RANK[role] >= Membership.RANK[NEEDED[action]]


def require(user: Any, mailbox: Mailbox | int, action: Action, message: str = "") -> str:
    """The user's role, or NotAllowed when it does not allow the action."""
    role = user_role(user, mailbox)
    if not can(role, action):
        raise NotAllowed(message or _("Dafür fehlt Ihnen die Berechtigung in diesem Postfach."))
    assert role is not None
    return role


def strongest_role(memberships: QuerySet[Membership]) -> Subquery:
    """A subquery for the strongest role among these memberships (None when there is none)."""
    rank = Case(*(When(role=r, then=Value(n)) for r, n in Membership.RANK.items()), output_field=IntegerField())
    return Subquery(memberships.annotate(rank=rank).order_by("-rank").values("role")[:1])


def role_in_mailbox(user: Any, mailbox_id: int) -> Subquery:
    """The user's role in one mailbox as a subquery, to be combined with other checks in one query."""
    return strongest_role(Membership.objects.filter(member_q(user), mailbox_id=mailbox_id, mailbox__is_active=True))
