"""Who has which message open now, and whether they are writing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from kimportal.prepared import PreparedQuery
from mailbox.models import Presence
from mailbox.models.display import PresentUser

# A page sends a heartbeat every 20 s; a presence not refreshed for this long is gone.
PRESENCE_TTL_SECONDS = 45
_NAMES = ("first_name", "last_name", "username")


def _presence_query(message_ids: list[int]) -> QuerySet[Presence, tuple[Any, ...]]:
    return (
        Presence.objects.filter(message_id__in=message_ids)
        .order_by("message_id", "user__first_name", "user_id")
        .values_list("message_id", "user_id", "writing", "last_seen", *(f"user__{f}" for f in _NAMES))
    )


# Every list page and live row: compiled once per page length (kimportal.prepared), not per call.
_PRESENCE = PreparedQuery(_presence_query)


def presence_for_messages(message_ids: list[int], *, now: datetime | None = None) -> dict[int, list[PresentUser]]:
    """Who has each message open now. Rows older than the TTL are ignored (a crashed server's sockets)."""
    if not message_ids:
        return {}
    cutoff = (now or timezone.now()) - timedelta(seconds=PRESENCE_TTL_SECONDS)
    result: dict[int, dict[int, PresentUser]] = {}
    # The TTL is applied here, not in SQL: the few rows of open pages, and the query stays one shape.
    for message_id, user_id, writing, last_seen, first, last, username in _PRESENCE.rows(list(message_ids)):
        if last_seen < cutoff:
            continue
        per_message = result.setdefault(message_id, {})
        previous = per_message.get(user_id)
        name = f"{first} {last}".strip() or username  # display_name(), from the row's values
        per_message[user_id] = PresentUser(user_id, name, writing or (previous.writing if previous else False))
    return {mid: list(users.values()) for mid, users in result.items()}
