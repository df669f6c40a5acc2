"""Who has which message open, and whether they are writing. One row per open page (socket)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from kimportal.prepared import PreparedQuery
from mailbox import events
from mailbox.models import Message, Presence
from mailbox.selectors.presence import PRESENCE_TTL_SECONDS


@transaction.atomic
def presence_join(*, user, message: Message, channel_name: str, page_token: str = "") -> None:
    # One upsert on the unique channel name (a reconnect may reuse it), instead of a locking read and a write.
    Presence.objects.bulk_create(
        [
            Presence(
                channel_name=channel_name,
                user=user,
                message=message,
                page_token=page_token,
                writing=False,
                last_seen=timezone.now(),
            )
        ],
        update_conflicts=True,
        unique_fields=["channel_name"],
        update_fields=["user", "message", "page_token", "writing", "last_seen"],
    )
    events.broadcast_presence(mailbox_id=message.mailbox_id, message_id=message.pk, origin=channel_name)


@transaction.atomic
def presence_beat(*, channel_name: str, writing: bool, now=None) -> Presence | None:
    """Heartbeat from an open page. Re-creates nothing: a page whose row is gone must reconnect."""
    row = Presence.objects.select_related("message").filter(channel_name=channel_name).first()
    if row is None:
        return None
    changed = row.writing != writing
    Presence.objects.filter(pk=row.pk).update(last_seen=now or timezone.now(), writing=writing)
    if changed:
        events.broadcast_presence(mailbox_id=row.message.mailbox_id, message_id=row.message_id)
    return row


@dataclass(frozen=True)
class Left:
    """A page's presence row as it was removed, and whether its user still has the message open elsewhere."""

    message_id: int
    user_id: int
    page_token: str
    still_open: bool


def _channel_query(channel_name: str) -> QuerySet[Presence, tuple[int, int, int, str]]:
    return Presence.objects.filter(channel_name=channel_name).values_list("pk", "message_id", "user_id", "page_token")


def _pages_query(message_id: int, user_id: int) -> QuerySet[Presence, tuple[datetime]]:
    return Presence.objects.filter(message_id=message_id, user_id=user_id).values_list("last_seen")


# Every page that closes asks both: compiled once (kimportal.prepared), not per leave.
_CHANNEL = PreparedQuery(_channel_query)
_PAGES = PreparedQuery(_pages_query)


@transaction.atomic
def presence_leave(*, channel_name: str) -> Left | None:
    """Remove the page's row; None when it was gone already. The caller announces the change (a leave that
    also releases the lock sends one message change, which redraws presence too, instead of two events)."""
    found = _CHANNEL.rows(channel_name)
    if not found:
        return None
    pk, message_id, user_id, page_token = found[0]
    Presence.objects.filter(pk=pk).delete()
    # The TTL is applied here, not in SQL: the query keeps one shape (a user's few pages of one message).
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS)
    still_open = any(last_seen >= cutoff for (last_seen,) in _PAGES.rows(message_id, user_id))
    return Left(message_id, user_id, page_token, still_open)


def presence_purge_stale() -> int:
    """Housekeeping only: stale rows are already invisible after the TTL."""
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS * 4)
    deleted, _ = Presence.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
