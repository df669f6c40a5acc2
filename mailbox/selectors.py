"""Reads, always starting from the user."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.paginator import Page, Paginator
from django.db.models import Count, Exists, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from mailbox.models import Attachment, DienstkennungLabel, Mailbox, Message, MessageRead

PAGE_SIZE = 50


@dataclass(frozen=True)
class Badge:
    label: str
    css_class: str
    title: str


def mailbox_list_for_user(user) -> QuerySet[Mailbox]:
    unread = (
        Message.objects.filter(mailbox=OuterRef("pk"))
        .exclude(Exists(MessageRead.objects.filter(message=OuterRef("pk"), user=user)))
        .order_by()
        .values("mailbox")
        .annotate(c=Count("pk"))
        .values("c")
    )
    return (
        Mailbox.objects.filter(memberships__user=user, is_active=True)
        .select_related("account")
        .annotate(unread_count=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)))
        .order_by("display_name")
    )


def mailbox_get_for_user(user, pk: int) -> Mailbox:
    return Mailbox.objects.visible_to(user).select_related("account").get(pk=pk)


def _with_user_state(qs: QuerySet[Message], user) -> QuerySet[Message]:
    return qs.select_related("mailbox").annotate(
        is_read=Exists(MessageRead.objects.filter(message=OuterRef("pk"), user=user)),
        has_attachments=Exists(Attachment.objects.filter(message=OuterRef("pk"), is_inline=False)),
    )


def message_list_for_user(user, *, mailbox: Mailbox | None = None, page: int | str = 1) -> Page:
    qs = Message.objects.visible_to(user)
    if mailbox is not None:
        qs = qs.filter(mailbox=mailbox)
    qs = _with_user_state(qs, user).defer("text_body", "html_body", "references").order_by("-received_at", "-id")
    page_obj = Paginator(qs, PAGE_SIZE).get_page(page)
    badges = dienstkennung_badges()
    for message in page_obj.object_list:
        message.badge = badge_for(message.dienstkennung, badges)
    return page_obj


def message_get_for_user(user, pk: int) -> Message:
    message = _with_user_state(Message.objects.visible_to(user), user).get(pk=pk)
    message.badge = badge_for(message.dienstkennung, dienstkennung_badges())
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
    return DEFAULT_LABELS | {d.application.lower(): d for d in DienstkennungLabel.objects.all()}


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
