"""Live events of the signing app: sent after commit, carrying ids only.

Consumers re-read through user-scoped selectors before they render (signing.consumers). The signer's new
work also reaches the bell in every page through mailbox's user.notified event (signing.services.drafts).
"""

from __future__ import annotations

from django.db import transaction

from mailbox.events import send_to_group


def queue_group(user_id: int) -> str:
    """The signing pages of one user: their queue and the central list."""
    return f"signing.user.{user_id}"


def batch_group(batch_id: int) -> str:
    return f"signing.batch.{batch_id}"


def broadcast_drafts_changed(*, user_ids: list[int], draft_ids: list[int]) -> None:
    """Drafts were added or changed: the queues of these users show them anew."""
    event = {"type": "signing.drafts_changed", "draft_ids": sorted(set(draft_ids))}

    def send() -> None:
        for user_id in sorted(set(user_ids)):
            send_to_group(queue_group(user_id), event)

    transaction.on_commit(send)


def broadcast_batch_changed(*, batch_id: int, item_ids: list[int] | None = None) -> None:
    """A batch moved on (job number, PIN asked again, documents signed, summary): its page re-renders."""
    event = {"type": "signing.batch_changed", "batch_id": batch_id, "item_ids": sorted(item_ids or [])}
    transaction.on_commit(lambda: send_to_group(batch_group(batch_id), event))
