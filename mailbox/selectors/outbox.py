"""Reads of sent mail, drafts and conversations; every read starts from the user."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from mailbox.models import (
    DeliveryAttempt,
    Mailbox,
    Membership,
    Message,
    OutgoingAttachment,
    OutgoingMessage,
    OutgoingRecipient,
    member_roles,
)

SEND_ROLES = (Membership.Role.PROCESSOR, Membership.Role.OWNER)


def sendable_mailboxes_for_user(user: Any) -> QuerySet[Mailbox]:
    """Mailboxes the user may send from: processor or owner (a personal mailbox's owner is its owner)."""
    if not user.is_authenticated:
        return Mailbox.objects.none()
    ids = [mailbox_id for mailbox_id, role in member_roles(user).items() if role in SEND_ROLES]
    return Mailbox.objects.filter(pk__in=ids, is_active=True).select_related("account").order_by("display_name")


def outgoing_list_for_user(
    user: Any,
    *,
    mailbox: Mailbox | int | None = None,
    states: Iterable[str] | None = None,
) -> QuerySet[OutgoingMessage]:
    """ "Gesendet", "Entwürfe" and the outbox: newest first, recipients and attachment counts prefetched.

    Drafts are the author's own: a colleague's half-written text is not shown to others. A draft left by a former
    member is shown to the mailbox's owners (who delete it or take it over), and only to them.
    """
    qs = OutgoingMessage.objects.visible_to(user).select_related("mailbox", "author", "claimed_by")
    if mailbox is not None:
        qs = qs.filter(mailbox_id=mailbox if isinstance(mailbox, int) else mailbox.pk)
    if states is not None:
        qs = qs.filter(state__in=list(states))
    qs = qs.filter(
        ~Q(state=OutgoingMessage.State.DRAFT)
        | Q(author_id=user.pk)
        | Q(author_left_at__isnull=False, mailbox_id__in=_owned_mailbox_ids(user))
    )
    return qs.prefetch_related(
        Prefetch("recipient_rows", queryset=OutgoingRecipient.objects.order_by("id")),
    ).order_by("-created_at", "-id")


def outgoing_get_for_user(user: Any, pk: int) -> OutgoingMessage:
    """One outgoing message with attachments, recipients and attempts; 404 for anyone not a member (and for
    another author's draft)."""
    qs = outgoing_list_for_user(user).prefetch_related(
        Prefetch("attachments", queryset=OutgoingAttachment.objects.order_by("position")),
        Prefetch("attempts", queryset=DeliveryAttempt.objects.order_by("number")),
    )
    outgoing = get_object_or_404(qs, pk=pk)
    outgoing.attachment_list = list(outgoing.attachments.all())
    outgoing.recipient_list = list(outgoing.recipient_rows.all())
    return outgoing


def _owned_mailbox_ids(user: Any) -> list[int]:
    if not user.is_authenticated:
        return []
    return [mailbox_id for mailbox_id, role in member_roles(user).items() if role == Membership.Role.OWNER]


def own_draft_out_of_reach(user: Any, pk: int) -> OutgoingMessage | None:
    """The user's own draft, if they may no longer send from its mailbox (removed, made reader or observer, the
    account or the mailbox switched off): a page still open on it learns why its edits are not saved. Only what
    that answer needs is read; everyone else's draft, and one taken over meanwhile, is None."""
    if not user.is_authenticated:
        return None
    draft = (
        OutgoingMessage.objects.filter(pk=pk, author_id=user.pk, state=OutgoingMessage.State.DRAFT)
        .only("pk", "mailbox_id", "author_id", "state", "version", "updated_at")
        .first()
    )
    if draft is None or member_roles(user).get(draft.mailbox_id) in SEND_ROLES:
        return None
    return draft


def drafts_for_user(user: Any, *, mailbox: Mailbox | int | None = None) -> QuerySet[OutgoingMessage]:
    """The user's own drafts ("Entwürfe"). One that went to the owners when they lost the right to process there
    (author_left_at) is not theirs to edit any more, though they may still read the mailbox: it shows again once
    they get it back (outgoing_drafts_reclaim)."""
    return (
        outgoing_list_for_user(user, mailbox=mailbox, states=[OutgoingMessage.State.DRAFT])
        .filter(author_id=user.pk)
        .filter(author_left_at__isnull=True)
    )


def left_drafts_for_user(user: Any) -> QuerySet[OutgoingMessage]:
    """Drafts of former members in the mailboxes the user owns ("von ehemaligem Mitglied …")."""
    return (
        outgoing_list_for_user(user, states=[OutgoingMessage.State.DRAFT])
        .filter(author_left_at__isnull=False, mailbox_id__in=_owned_mailbox_ids(user))
        .exclude(author_id=user.pk)
    )


@dataclass(frozen=True)
class TimelineStep:
    label: str  # German: "versendet", "zugestellt", "fehlgeschlagen" …
    state: str
    at: datetime | None
    reason: str = ""  # in the active language (kimportal.texts)


@dataclass(frozen=True)
class RecipientTimeline:
    address: str
    field: str
    state: str
    state_label: str
    steps: list[TimelineStep]
    status_code: str = ""
    report_message_id: int | None = None


@dataclass(frozen=True)
class Timeline:
    state: str
    state_label: str
    last_error: str
    recipients: list[RecipientTimeline] = field(default_factory=list)
    attempts: list[DeliveryAttempt] = field(default_factory=list)


def outgoing_timeline(outgoing: OutgoingMessage) -> Timeline:
    """Per recipient: versendet → zugestellt / fehlgeschlagen (+ reason), and every attempt.

    Takes an outgoing message the caller already loaded through outgoing_get_for_user (permission checked).
    """
    rows = getattr(outgoing, "recipient_list", None) or list(outgoing.recipient_rows.order_by("id"))
    attempts = list(outgoing.attempts.order_by("number"))
    sent_label = OutgoingRecipient.State.SENT.label
    out: list[RecipientTimeline] = []
    for row in rows:
        steps: list[TimelineStep] = []
        if outgoing.queued_at:
            # A recipient still waiting after a temporary refusal says why (the others of the message went out).
            waiting_reason = row.reason_text if row.state == "queued" else ""
            steps.append(
                TimelineStep(str(OutgoingRecipient.State.QUEUED.label), "queued", outgoing.queued_at, waiting_reason)
            )
        if row.state in ("sent", "delivered", "delayed") or (row.state == "failed" and row.report_id):
            steps.append(TimelineStep(str(sent_label), "sent", outgoing.sent_at))
        if row.state not in ("queued", "sent"):
            steps.append(TimelineStep(str(row.get_state_display()), row.state, row.updated_at, row.reason_text))
        out.append(
            RecipientTimeline(
                address=row.address,
                field=row.field,
                state=row.state,
                state_label=str(row.get_state_display()),
                steps=steps,
                status_code=row.status_code,
                report_message_id=row.report_id,
            )
        )
    return Timeline(
        state=outgoing.state,
        state_label=str(outgoing.get_state_display()),
        last_error=outgoing.last_error_text,
        recipients=out,
        attempts=attempts,
    )


@dataclass(frozen=True)
class ThreadItem:
    """One message of a conversation: received (``message``) or sent (``outgoing``)."""

    at: datetime
    message: Message | None = None
    outgoing: OutgoingMessage | None = None

    @property
    def is_sent(self) -> bool:
        return self.outgoing is not None


def thread_for_user(user: Any, message: Message | OutgoingMessage, *, max_items: int = 200) -> list[ThreadItem]:
    """Received and sent messages of one conversation, oldest first, found by Message-ID / In-Reply-To /
    References within the mailboxes the user can see. Delivery reports are not part of it."""
    ids = _own_ids(message)
    visible = list(member_roles(user)) if user.is_authenticated else []
    if not ids or not visible:
        return _single(message)
    found_messages: dict[int, Message] = {}
    found_outgoing: dict[int, OutgoingMessage] = {}
    # Follow the links outwards a few hops: a reply to a reply names the root in References, most clients
    # keep it; older ones only name their parent, so several rounds join the chain.
    for _round in range(6):
        before = len(ids)
        received = (
            Message.objects.filter(mailbox_id__in=visible, delivery_report__isnull=True)
            .filter(Q(message_id__in=ids) | Q(in_reply_to__in=ids))
            .only(
                "id",
                "mailbox_id",
                "subject",
                "from_address",
                "from_name",
                "message_id",
                "in_reply_to",
                "references",
                "received_at",
                "date",
                "dienstkennung",
                "state",
            )
            # The earliest first: a flood of mails naming one Message-ID cannot push out the conversation they copy.
            .order_by("id")[:max_items]
        )
        for m in received:
            found_messages[m.pk] = m
            ids |= _own_ids(m)
        sent = (
            OutgoingMessage.objects.filter(mailbox_id__in=visible)
            .exclude(state=OutgoingMessage.State.DRAFT)
            .filter(Q(message_id__in=ids) | Q(in_reply_to_header__in=ids))
            .order_by("id")[:max_items]
        )
        for o in sent:
            found_outgoing[o.pk] = o
            ids |= _own_ids(o)
        if len(ids) == before:
            break
    items = [ThreadItem(at=m.date or m.received_at, message=m) for m in found_messages.values()]
    # The Date we wrote (queued_at) is what the other side sees; sent_at may be minutes later after retries.
    items += [ThreadItem(at=o.queued_at or o.created_at, outgoing=o) for o in found_outgoing.values()]
    if not items:
        return _single(message)

    # Date headers have whole seconds: within one second, a message comes before the answers that reference it.
    def order(item: ThreadItem) -> tuple[datetime, int]:
        return (item.at.replace(microsecond=0), len(_chain(item)))

    shown = sorted(items, key=order)[:max_items]
    # The message the page is about is always part of its own conversation, however many others name its ids.
    here = (message.pk, isinstance(message, OutgoingMessage))
    if not any(((i.outgoing or i.message).pk, i.outgoing is not None) == here for i in shown):  # type: ignore[union-attr]
        shown = sorted(shown[: max_items - 1] + _single(message), key=order)
    return shown


def _chain(item: ThreadItem) -> list[str]:
    found = item.message or item.outgoing
    assert found is not None
    return (found.references or "").split()


def _own_ids(message: Message | OutgoingMessage) -> set[str]:
    ids: set[str] = set()
    if message.message_id:
        ids.add(message.message_id.strip())
    reply = message.in_reply_to if isinstance(message, Message) else message.in_reply_to_header
    if reply:
        ids.add(reply.strip())
    ids.update((message.references or "").split())
    return {i for i in ids if i.startswith("<") and i.endswith(">") and len(i) <= 998}


def _single(message: Message | OutgoingMessage) -> list[ThreadItem]:
    if isinstance(message, Message):
        return [ThreadItem(at=message.date or message.received_at, message=message)]
    return [ThreadItem(at=message.sent_at or message.created_at, outgoing=message)]


def acknowledgement_for(message: Message) -> OutgoingMessage | None:
    """The eArztbrief acknowledgement sent (or being sent) for a received message, if any."""
    return (
        OutgoingMessage.objects.filter(in_reply_to=message, kind=OutgoingMessage.Kind.ACKNOWLEDGEMENT)
        .exclude(state=OutgoingMessage.State.DRAFT)
        .first()
    )
