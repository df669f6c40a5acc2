"""Mailboxes, members and people as one user sees them."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    TextField,
    Value,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone

from kimportal.prepared import PreparedQuery
from kimportal.requestscope import in_scope, scoped
from mailbox.models import (
    Absence,
    KimAccount,
    Mailbox,
    MailboxQueue,
    Membership,
    Message,
    MessageRead,
    Notification,
    member_q,
    member_roles,
)
from mailbox.permissions import members_q, strongest_role, user_role

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractUser, User


def display_name(user: AbstractUser) -> str:
    return user.get_full_name() or user.username


_MAILBOX_COLUMNS = tuple(field.attname for field in Mailbox._meta.concrete_fields)
_ACCOUNT_COLUMNS = ("id", "mailbox_id", "status")  # what the navigation shows of an account (its status dot)


def _counter_columns(user_id: int, mailbox_ids: list[int]) -> tuple[Coalesce, Coalesce]:
    """The header's counters as columns: open messages assigned to the user, unread notifications they may see."""
    mine = (
        Message.objects.filter(mailbox_id__in=mailbox_ids, assignee_id=user_id)
        .exclude(state=Message.State.DONE)
        .order_by()
        .values("assignee")
        .annotate(c=Count("pk"))
        .values("c")
    )
    notifications = (
        _visible_notifications(user_id, mailbox_ids)
        .filter(read_at__isnull=True)
        .order_by()
        .values("user")
        .annotate(c=Count("pk"))
        .values("c")
    )
    return (
        Coalesce(Subquery(mine, output_field=IntegerField()), Value(0)),
        Coalesce(Subquery(notifications, output_field=IntegerField()), Value(0)),
    )


def _not_done(state: str) -> Func:
    """NOT state = 'done' with the value in the SQL text, not a parameter.

    A prepared statement's generic plan can use the partial index of open messages only if its predicate
    follows from the query without the parameters' values: with 'done' as a parameter PostgreSQL planned the
    navigation's query anew on every execution (a custom plan, about 0.3 ms), every page.
    """
    return Func(F(state), template=f"NOT (%(expressions)s = '{Message.State.DONE.value}')", output_field=BooleanField())


def _nav_query(user_id: int, mailbox_ids: list[int], *, counters: bool) -> QuerySet[Mailbox, tuple[Any, ...]]:
    # Two index-only counts per mailbox (the partial index of open messages carries their ids, the reads are
    # indexed by user and message): its open messages, and those of them this user has read. Unread is their
    # difference (a user reads a message at most once: message_read_unique). Asking per open message whether
    # the user had read it was the costliest query of every page.
    open_count = (
        Message.objects.filter(_not_done("state"), mailbox=OuterRef("pk"))
        .order_by()
        .values("mailbox")
        .annotate(c=Count("*"))
        .values("c")
    )
    read_open = (
        MessageRead.objects.filter(_not_done("message__state"), user_id=user_id, message__mailbox=OuterRef("pk"))
        .order_by()
        .values("message__mailbox")
        .annotate(c=Count("*"))
        .values("c")
    )
    qs = Mailbox.objects.filter(pk__in=mailbox_ids).annotate(
        nav_open=Coalesce(Subquery(open_count, output_field=IntegerField()), Value(0)),
        nav_read=Coalesce(Subquery(read_open, output_field=IntegerField()), Value(0)),
    )
    columns = [*_MAILBOX_COLUMNS, *(f"account__{c}" for c in _ACCOUNT_COLUMNS), "nav_open", "nav_read"]
    if counters:
        # The header's counters ride along (computed once, not per mailbox): one round trip for both.
        mine, notifications = _counter_columns(user_id, mailbox_ids)
        qs = qs.annotate(c_mine=mine, c_notifications=notifications)
        columns += ["c_mine", "c_notifications"]
    return qs.order_by("display_name", "pk").values_list(*columns)


# Every page's navigation: compiled once (kimportal.prepared), not per page. With the header's counters for a
# request (user_counters() reads them from its scope); a socket, outside any request, asks them itself.
_NAV_WITH_COUNTERS = PreparedQuery(functools.partial(_nav_query, counters=True))
_NAV = PreparedQuery(functools.partial(_nav_query, counters=False))
_COUNTS = len(_MAILBOX_COLUMNS) + len(_ACCOUNT_COLUMNS)  # where a row's counts start


def mailbox_list_for_user(user: Any) -> list[Mailbox]:
    """The user's mailboxes with live counts: open (not done) and unread by this user among the open ones.

    In a request the same query reads the header's counters: user_counters() in that request uses them.
    """
    ids = sorted(member_roles(user)) if getattr(user, "is_authenticated", False) else []
    mailboxes = []
    split = len(_MAILBOX_COLUMNS)
    counters = in_scope()
    rows = (_NAV_WITH_COUNTERS if counters else _NAV).rows(user.pk, ids) if ids else []
    for row in rows:
        mailbox = Mailbox.from_db("default", _MAILBOX_COLUMNS, row[:split])
        account_values = row[split : split + len(_ACCOUNT_COLUMNS)]
        # Like select_related: the account (only its status; other fields load if asked) or none.
        account = KimAccount.from_db("default", _ACCOUNT_COLUMNS, account_values) if account_values[0] else None
        Mailbox.account.related.set_cached_value(mailbox, account)
        # Counts for the template, set as select_related's annotations were (no model fields).
        open_count, read_count = row[_COUNTS], row[_COUNTS + 1]
        mailbox.unread_count, mailbox.open_count = open_count - read_count, open_count  # type: ignore[attr-defined]
        mailboxes.append(mailbox)
    if counters and rows:
        mine, notifications = rows[0][_COUNTS + 2 :]
        scoped(_counters_key(user), lambda: {"mine": mine, "notifications": notifications})
    return mailboxes


def mailbox_ids_for_user(user: Any) -> list[int]:
    return list(Mailbox.objects.visible_to(user).values_list("pk", flat=True))


def _counters_query(user_id: int, mailbox_ids: list[int]) -> QuerySet[Any, tuple[int, int]]:
    mine, notifications = _counter_columns(user_id, mailbox_ids)
    return (
        get_user_model()
        .objects.filter(pk=user_id)
        .annotate(c_mine=mine, c_notifications=notifications)
        .values_list("c_mine", "c_notifications")
    )


# In every page's header: compiled once (kimportal.prepared), not per page.
_COUNTERS = PreparedQuery(_counters_query)


def _counters_key(user: Any) -> tuple[str, int]:
    return ("mailbox.user_counters", user.pk)


def user_counters(user: Any) -> dict[str, int]:
    """Open messages assigned to the user and unread notifications (of messages they still may see), one query.

    Read once per HTTP request (kimportal.requestscope), by the navigation's query when the page has one.
    """
    if not getattr(user, "is_authenticated", False):
        return {"mine": 0, "notifications": 0}

    def read() -> dict[str, int]:
        rows = _COUNTERS.rows(user.pk, sorted(member_roles(user)))
        mine, notifications = rows[0] if rows else (0, 0)
        return {"mine": mine, "notifications": notifications}

    return dict(scoped(_counters_key(user), read))


def _visible_notifications(user_id: int, mailbox_ids: list[int]) -> QuerySet[Notification]:
    # The one rule: notifications about messages of mailboxes the user may still see, or about no message; and one
    # that names a mailbox in its params ("mailbox_id": e.g. a draft to sign or review) only while the user is a
    # member of that mailbox. Compared as text, so odd params never make the query fail; the ids stay plain
    # parameters of an IN on a real column (kimportal.prepared binds them).
    named = Mailbox.objects.filter(pk__in=mailbox_ids).alias(pk_text=Cast("pk", TextField()))
    return (
        Notification.objects.filter(user_id=user_id)
        .filter(Q(message__isnull=True) | Q(message__mailbox_id__in=mailbox_ids))
        .alias(named_mailbox=KT("params__mailbox_id"))
        .filter(Q(named_mailbox__isnull=True) | Exists(named.filter(pk_text=OuterRef("named_mailbox"))))
    )


def notifications_visible_to(user: Any) -> QuerySet[Notification]:
    """The user's notifications, without those about messages in mailboxes they have left.

    A notification quotes a subject and an assignment note: patient data that an ex-member must no
    longer see. The rows stay (audit), they are just not shown.
    """
    return _visible_notifications(user.pk, sorted(member_roles(user)))


def notification_list_for_user(user: Any, *, limit: int = 100) -> list[Notification]:
    return list(notifications_visible_to(user).select_related("actor", "message")[:limit])


def _members(mailbox: Mailbox | int, min_role: str) -> QuerySet[User]:
    roles = [r for r, rank in Membership.RANK.items() if rank >= Membership.RANK[min_role]]
    memberships = Membership.objects.filter(mailbox=mailbox, role__in=roles)
    return (
        get_user_model()
        .objects.filter(members_q(memberships), is_active=True)
        .distinct()
        .order_by("last_name", "first_name", "username")
    )


def mailbox_members(mailbox: Mailbox | int, *, min_role: str = Membership.Role.PROCESSOR) -> list[User]:
    """Active users with at least `min_role` (processors and owners by default), directly or through a group."""
    return list(_members(mailbox, min_role))


def _member_choices_query(mailbox_id: int) -> QuerySet[User, tuple[int, str, str, str]]:
    return _members(mailbox_id, Membership.Role.PROCESSOR).values_list("pk", "first_name", "last_name", "username")


# Every message page's assign form: compiled once (kimportal.prepared), not per page.
_MEMBER_CHOICES = PreparedQuery(_member_choices_query)


def mailbox_member_choices(mailbox: Mailbox | int) -> list[tuple[int, str]]:
    """(id, name) of the people a message can be assigned to, for the assign form: only the columns shown.

    A ward's mailbox has hundreds of members; full user rows and a template loop over them were a
    fifth of the message page's CPU.
    """
    rows = _MEMBER_CHOICES.rows(mailbox if isinstance(mailbox, int) else mailbox.pk)
    # As User.get_full_name(), falling back to the username.
    return [(pk, f"{first} {last}".strip() or username) for pk, first, last, username in rows]


def mailbox_owners(mailbox: Mailbox | int) -> list[User]:
    return mailbox_members(mailbox, min_role=Membership.Role.OWNER)


def notification_recipients(mailbox: Mailbox | int, users: list[User]) -> list[User]:
    """Of the given users, those who are members and not only observers (observers are never notified)."""
    return [u for u in users if (role := user_role(u, mailbox)) is not None and role != Membership.Role.OBSERVER]


def mailbox_get_for_user(user: Any, pk: int) -> Mailbox:
    """The mailbox with the user's strongest role on it as `user_role` (one query)."""
    # django-stubs' plugin rejects annotating a name the model declares (for rows set by hand); Django only a field.
    return (
        Mailbox.objects.visible_to(user)
        .select_related("account")
        .annotate(user_role=strongest_role(Membership.objects.filter(member_q(user), mailbox=OuterRef("pk"))))  # type: ignore[no-redef]
        .annotate(has_queues=Exists(MailboxQueue.objects.filter(mailbox=OuterRef("pk"))))
        .get(pk=pk)
    )


def mailbox_queue_choices(mailbox: Mailbox) -> list[tuple[int, str]]:
    """The mailbox's queues (Ablagen) for the list filter; no query when mailbox_get_for_user saw none."""
    if not getattr(mailbox, "has_queues", True):
        return []
    return list(MailboxQueue.objects.filter(mailbox=mailbox).order_by("name").values_list("pk", "name"))


def substitute_candidates(user: Any) -> QuerySet[User]:
    """Colleagues who share at least one mailbox with the user."""
    shared = Membership.objects.filter(mailbox_id__in=Mailbox.objects.visible_to(user).values("pk"))
    return (
        get_user_model()
        .objects.filter(members_q(shared), is_active=True)
        .exclude(pk=user.pk)
        .distinct()
        .order_by("last_name", "first_name", "username")
    )


def absence_list_for_user(user: Any) -> list[Absence]:
    return list(
        Absence.objects.filter(user=user, ends_at__gt=timezone.now()).select_related("substitute").order_by("starts_at")
    )


def membership_list(mailbox: Mailbox) -> list[Membership]:
    return list(Membership.objects.filter(mailbox=mailbox).select_related("user", "group").order_by("role", "id"))
