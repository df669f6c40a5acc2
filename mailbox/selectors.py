"""Reads, always starting from the user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from mailbox.models import Attachment, DienstkennungLabel, Mailbox, Membership, Message, MessageRead, Presence

PAGE_SIZE = 50
# A page sends a heartbeat every 20 s; a presence not refreshed for this long is gone.
PRESENCE_TTL_SECONDS = 45


@dataclass(frozen=True)
class Badge:
    label: str
    css_class: str
    title: str


def mailbox_list_for_user(user) -> QuerySet[Mailbox]:
    """The user's mailboxes with live counts: open (not done) and unread by this user among the open ones."""
    open_messages = Message.objects.filter(mailbox=OuterRef("pk")).exclude(state=Message.State.DONE).order_by()
    open_count = open_messages.values("mailbox").annotate(c=Count("pk")).values("c")
    unread = (
        open_messages.exclude(Exists(MessageRead.objects.filter(message=OuterRef("pk"), user=user)))
        .values("mailbox")
        .annotate(c=Count("pk"))
        .values("c")
    )
    return (
        Mailbox.objects.visible_to(user)
        .select_related("account")
        .annotate(
            unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)),
            open_count=Coalesce(Subquery(open_count, output_field=IntegerField()), Value(0)),
        )
        .order_by("display_name")
    )


def user_counters(user) -> dict[str, int]:
    """Open messages assigned to the user and unread notifications, in one query."""
    from mailbox.models import Notification

    mine = (
        Message.objects.visible_to(user)
        .filter(assignee=user)
        .exclude(state=Message.State.DONE)
        .order_by()
        .values("assignee")
        .annotate(c=Count("pk"))
        .values("c")
    )
    notifications = (
        Notification.objects.filter(user=user, read_at__isnull=True)
        .order_by()
        .values("user")
        .annotate(c=Count("pk"))
        .values("c")
    )
    row = (
        get_user_model()
        .objects.filter(pk=user.pk)
        .annotate(
            c_mine=Coalesce(Subquery(mine, output_field=IntegerField()), Value(0)),
            c_notifications=Coalesce(Subquery(notifications, output_field=IntegerField()), Value(0)),
        )
        .values("c_mine", "c_notifications")
        .first()
    ) or {"c_mine": 0, "c_notifications": 0}
    return {"mine": row["c_mine"], "notifications": row["c_notifications"]}


def user_role(user, mailbox: Mailbox | int) -> str | None:
    """The strongest role the user has in the mailbox, directly or through a group; None when not a member."""
    mailbox_id = mailbox if isinstance(mailbox, int) else mailbox.pk
    if not user.is_authenticated:
        return None
    roles = Membership.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all()), mailbox_id=mailbox_id, mailbox__is_active=True
    ).values_list("role", flat=True)
    return max(roles, key=lambda r: Membership.RANK[r], default=None)


def can(role: str | None, action: str) -> bool:
    """What each role may do. Observers and readers read; processors work messages; owners also manage."""
    if role is None:
        return False
    needed = {
        "read": Membership.Role.OBSERVER,
        "process": Membership.Role.PROCESSOR,
        "break_lock": Membership.Role.OWNER,
        "manage": Membership.Role.OWNER,
    }[action]
    return Membership.RANK[role] >= Membership.RANK[needed]


def mailbox_members(mailbox: Mailbox, *, min_role: str = Membership.Role.PROCESSOR) -> list:
    """Users who may be made responsible (processors and owners, directly or through a group)."""
    User = get_user_model()
    roles = [r for r, rank in Membership.RANK.items() if rank >= Membership.RANK[min_role]]
    direct = Membership.objects.filter(mailbox=mailbox, role__in=roles, user__isnull=False).values("user_id")
    groups = Membership.objects.filter(mailbox=mailbox, role__in=roles, group__isnull=False).values("group_id")
    return list(
        User.objects.filter(Q(pk__in=direct) | Q(groups__in=groups), is_active=True)
        .distinct()
        .order_by("last_name", "first_name", "username")
    )


def notification_recipients(mailbox: Mailbox, users) -> list:
    """Of the given users, those who are members and not only observers (observers are never notified)."""
    return [u for u in users if (role := user_role(u, mailbox)) is not None and role != Membership.Role.OBSERVER]


def _role_subquery(user):
    rank = Case(*(When(role=r, then=Value(n)) for r, n in Membership.RANK.items()), output_field=IntegerField())
    return (
        Membership.objects.filter(Q(user=user) | Q(group__in=user.groups.all()), mailbox=OuterRef("pk"))
        .annotate(rank=rank)
        .order_by("-rank")
        .values("role")[:1]
    )


def mailbox_get_for_user(user, pk: int) -> Mailbox:
    """The mailbox with the user's strongest role on it as `user_role` (one query)."""
    return (
        Mailbox.objects.visible_to(user)
        .select_related("account")
        .annotate(user_role=Subquery(_role_subquery(user)))
        .get(pk=pk)
    )


def _with_user_state(qs: QuerySet[Message], user) -> QuerySet[Message]:
    return qs.select_related("mailbox", "assignee", "claimed_by").annotate(
        is_read=Exists(MessageRead.objects.filter(message=OuterRef("pk"), user=user)),
    )


@dataclass(frozen=True)
class MessageFilter:
    view: str = "all"  # all | unassigned | mine | open
    state: str = ""
    dienstkennung: str = ""  # an application ("Arztbrief") or a full value
    date_from: date | None = None
    date_to: date | None = None
    q: str = ""
    sort: str = "-received"


SORTS = {
    "-received": ("-received_at", "-id"),
    "received": ("received_at", "id"),
    "from": ("from_name", "from_address", "-received_at", "-id"),
    "subject": ("subject", "-received_at", "-id"),
}


def _apply_filter(qs: QuerySet[Message], user, f: MessageFilter) -> QuerySet[Message]:
    if f.view == "unassigned":
        qs = qs.filter(assignee__isnull=True).exclude(state=Message.State.DONE)
    elif f.view == "mine":
        # "Mir zugewiesen" is a to-do list: finished ones only when asked for by the state filter.
        qs = qs.filter(assignee=user)
        if not f.state:
            qs = qs.exclude(state=Message.State.DONE)
    elif f.view == "open":
        qs = qs.exclude(state=Message.State.DONE)
    if f.state in Message.State.values:
        qs = qs.filter(state=f.state)
    if f.dienstkennung:
        value = f.dienstkennung.strip()
        qs = qs.filter(dienstkennung=value) if ";" in value else qs.filter(dienstkennung__istartswith=f"{value};")
    if f.date_from:
        qs = qs.filter(received_at__date__gte=f.date_from)
    if f.date_to:
        qs = qs.filter(received_at__date__lte=f.date_to)
    if f.q.strip():
        qs = _search(qs, f.q.strip())
    return qs


def _search(qs: QuerySet[Message], text: str) -> QuerySet[Message]:
    if connection.vendor == "postgresql":
        # The generated column search_tsv (migration 0004) has a GIN index; German stemming.
        return qs.filter(
            RawSQL(
                "mailbox_message.search_tsv @@ websearch_to_tsquery('german'::regconfig, %s)"
                " OR mailbox_message.search_tsv @@ websearch_to_tsquery('simple'::regconfig, %s)",
                [text, text],
                output_field=BooleanField(),
            )
        )
    # Embedded default (SQLite): every word must occur somewhere.
    for word in text.split()[:8]:
        qs = qs.filter(
            Q(subject__icontains=word)
            | Q(from_address__icontains=word)
            | Q(from_name__icontains=word)
            | Q(text_body__icontains=word)
        )
    return qs


@dataclass
class WindowPage:
    """A page of a list without COUNT(*): one extra row tells whether an older page exists.

    Counting 100,000 rows on every page view costs more than the rest of the page; a mail list
    needs "newer/older", not "page 37 of 2,000".
    """

    object_list: list
    number: int
    has_next: bool

    @classmethod
    def fetch(cls, qs: QuerySet, page: int | str, size: int = PAGE_SIZE) -> WindowPage:
        try:
            number = max(1, min(int(page), 10_000))
        except (TypeError, ValueError):
            number = 1
        start = (number - 1) * size
        rows = list(qs[start : start + size + 1])
        return cls(object_list=rows[:size], number=number, has_next=len(rows) > size)

    def __iter__(self):
        return iter(self.object_list)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_other_pages(self) -> bool:
        return self.has_next or self.has_previous

    @property
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def first_index(self) -> int:
        return (self.number - 1) * PAGE_SIZE + 1 if self.object_list else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * PAGE_SIZE + len(self.object_list)


def message_list_for_user(
    user, *, mailbox: Mailbox | None = None, page: int | str = 1, filters: MessageFilter | None = None
) -> WindowPage:
    f = filters or MessageFilter()
    qs = Message.objects.visible_to(user)
    if mailbox is not None:
        qs = qs.filter(mailbox=mailbox)
    qs = _apply_filter(qs, user, f)
    qs = (
        qs.select_related("mailbox", "assignee", "claimed_by")
        .defer("text_body", "html_body", "references", "parse_problems", "to", "cc")
        .order_by(*SORTS.get(f.sort, SORTS["-received"]))
    )
    page_obj = WindowPage.fetch(qs, page)
    badges = dienstkennung_badges()
    rows = page_obj.object_list
    ids = [m.pk for m in rows]
    # Read state for this page only: an index lookup, where an EXISTS per row made PostgreSQL
    # hash all of the user's reads (50,000 rows in the bench) on every page view.
    read = set(MessageRead.objects.filter(user=user, message_id__in=ids).values_list("message_id", flat=True))
    presence = presence_for_messages(ids)
    url = detail_url_pattern()
    for message in rows:
        message.is_read = message.pk in read
        message.badge = badge_for(message.dienstkennung, badges)
        message.present = presence.get(message.pk, [])
        message.url = url.format(message.pk)
    return page_obj


def detail_url_pattern() -> str:
    """The detail URL with a {} for the id: one reverse() per page instead of one per row."""
    return reverse("mailbox:message-detail", args=[987654321]).replace("987654321", "{}")


def message_get_for_user(user, pk: int) -> Message:
    message = _with_user_state(Message.objects.visible_to(user), user).get(pk=pk)
    message.badge = badge_for(message.dienstkennung, dienstkennung_badges())
    message.present = presence_for_messages([message.pk]).get(message.pk, [])
    message.url = detail_url_pattern().format(message.pk)
    return message


@dataclass(frozen=True)
class PresentUser:
    user_id: int
    name: str
    writing: bool


def presence_for_messages(message_ids: list[int], *, now=None) -> dict[int, list[PresentUser]]:
    """Who has each message open now. Rows older than the TTL are ignored (a crashed server's sockets)."""
    if not message_ids:
        return {}
    cutoff = (now or timezone.now()) - timedelta(seconds=PRESENCE_TTL_SECONDS)
    rows = (
        Presence.objects.filter(message_id__in=message_ids, last_seen__gte=cutoff)
        .select_related("user")
        .order_by("message_id", "user__first_name", "user_id")
    )
    result: dict[int, dict[int, PresentUser]] = {}
    for row in rows:
        per_message = result.setdefault(row.message_id, {})
        previous = per_message.get(row.user_id)
        writing = row.writing or (previous.writing if previous else False)
        per_message[row.user_id] = PresentUser(row.user_id, display_name(row.user), writing)
    return {mid: list(users.values()) for mid, users in result.items()}


def display_name(user) -> str:
    return user.get_full_name() or user.username


_UNKNOWN = object()


def message_detail_for_user(user, pk: int, *, role: str | object | None = _UNKNOWN) -> Message:
    """Everything the detail page shows, prefetched (no queries from the template).

    `role` may be passed when the caller has just looked it up for the same request.
    """
    message = message_get_for_user(user, pk)
    message.role = user_role(user, message.mailbox_id) if role is _UNKNOWN else role
    message.attachment_list = list(message.attachments.all())
    message.note_list = list(message.notes.select_related("author").order_by("created_at", "id"))
    message.assignment_history = list(
        message.assignment_periods.select_related("user", "assigned_by").order_by("started_at", "id")
    )
    message.readers = list(
        message.reads.select_related("user")
        .order_by("read_at")
        .values_list("user__first_name", "user__last_name", "user__username", "read_at")
    )
    return message


def message_row_for_user(user, pk: int) -> Message | None:
    """The list row of one message, or None when the user may not see it."""
    try:
        return message_get_for_user(user, pk)
    except Message.DoesNotExist:
        return None


def attachment_get_for_user(user, *, message_pk: int, position: int) -> Attachment:
    return Attachment.objects.select_related("message__mailbox").get(
        message__in=Message.objects.visible_to(user), message_id=message_pk, position=position
    )


# Built-in labels for the common applications; rows in DienstkennungLabel (editable in the admin,
# seeded by a migration) extend and override them.
DEFAULT_LABELS = {
    "arztbrief": DienstkennungLabel(application="Arztbrief", label="eArztbrief", css_class="badge-arztbrief"),
    "eau": DienstkennungLabel(application="eAU", label="eAU", css_class="badge-eau"),
    "kim-mail": DienstkennungLabel(application="KIM-Mail", label="KIM-Mail", css_class="badge-kimmail"),
}


def dienstkennung_badges() -> dict[str, DienstkennungLabel]:
    # A small registry read on every list page: cached for a minute (admin edits show up within it).
    labels = cache.get("mailbox:dienstkennung-labels")
    if labels is None:
        labels = {d.application.lower(): d for d in DienstkennungLabel.objects.all()}
        cache.set("mailbox:dienstkennung-labels", labels, 60)
    return DEFAULT_LABELS | labels


def badge_for(dienstkennung: str, labels: dict[str, DienstkennungLabel]) -> Badge | None:
    """eArztbrief, eAU, KIM-Mail …; unknown Dienstkennungen are shown as they are, never hidden."""
    value = dienstkennung.strip()
    if not value:
        return None
    application = value.split(";", 1)[0].strip().lower()
    known = labels.get(application)
    if known is None:
        return Badge(label=value, css_class="badge-unknown", title=value)
    return Badge(label=known.label, css_class=known.css_class, title=value)


def substitute_candidates(user):
    """Colleagues who share at least one mailbox with the user."""
    User = get_user_model()
    shared = Membership.objects.filter(mailbox_id__in=Mailbox.objects.visible_to(user).values("pk"))
    return (
        User.objects.filter(
            Q(pk__in=shared.filter(user__isnull=False).values("user_id"))
            | Q(groups__in=shared.filter(group__isnull=False).values("group_id")),
            is_active=True,
        )
        .exclude(pk=user.pk)
        .distinct()
        .order_by("last_name", "first_name", "username")
    )


def absence_list_for_user(user):
    from mailbox.models import Absence

    return list(
        Absence.objects.filter(user=user, ends_at__gt=timezone.now()).select_related("substitute").order_by("starts_at")
    )


def membership_list(mailbox: Mailbox):
    return list(Membership.objects.filter(mailbox=mailbox).select_related("user", "group").order_by("role", "id"))
