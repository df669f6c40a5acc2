"""Who has which message open now, and whether they are writing."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from mailbox.models import Presence
from mailbox.models.display import PresentUser
from mailbox.selectors.mailboxes import display_name

# A page sends a heartbeat every 20 s; a presence not refreshed for this long is gone.
PRESENCE_TTL_SECONDS = 45


def presence_for_messages(message_ids: list[int], *, now: datetime | None = None) -> dict[int, list[PresentUser]]:
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
