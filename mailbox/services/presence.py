"""Who has which message open, and whether they are writing. One row per open page (socket)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

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


@transaction.atomic
def presence_leave(*, channel_name: str, broadcast: bool = True) -> tuple[Presence | None, bool]:
    """Remove the page's row; returns it and whether the same user still has the message open elsewhere.

    broadcast=False: the caller announces the change itself (leaving that also releases the lock sends
    one message change, which redraws presence too, instead of two events to every watching list)."""
    # Of the message only its mailbox (for the event): not the bodies a whole message row carries.
    row = (
        Presence.objects.select_related("message")
        .only("message_id", "user_id", "page_token", "message__mailbox_id")
        .filter(channel_name=channel_name)
        .first()
    )
    if row is None:
        return None, False
    Presence.objects.filter(pk=row.pk).delete()
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS)
    still_open = Presence.objects.filter(message_id=row.message_id, user_id=row.user_id, last_seen__gte=cutoff).exists()
    if broadcast:
        events.broadcast_presence(mailbox_id=row.message.mailbox_id, message_id=row.message_id)
    return row, still_open


def presence_purge_stale() -> int:
    """Housekeeping only: stale rows are already invisible after the TTL."""
    cutoff = timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS * 4)
    deleted, _ = Presence.objects.filter(last_seen__lt=cutoff).delete()
    return deleted
