"""Reading patient data: every view of a message, its HTML, source or attachment is audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from mailbox.models import Message, MessageRead
from mailbox.services.audit import audit_record
from mailbox.services.claims import message_claim

# The read-lock as a claim leaves it on the row.
_LOCK_FIELDS = ("claimed_by_id", "claimed_at", "claim_expires_at", "claim_renewed_at", "claim_page", "first_claimed_at")


@transaction.atomic
def message_open(*, user: Any, message: Message, claim_page: str | None = None) -> None:
    """Opening a message is access to patient data: audited, and it marks the message read for this user.

    With `claim_page` the user opens it to work on it: the read-lock is taken in the same transaction
    (one commit per page view), and `message` then shows the lock as the claim left it (holder, lease), so the
    page need not read the row again.
    """
    # One INSERT … ON CONFLICT DO NOTHING: the first read's time stays; no SELECT, no savepoint.
    MessageRead.objects.bulk_create([MessageRead(message=message, user=user)], ignore_conflicts=True)
    audit_record(actor=user, action="message.viewed", message=message)
    if claim_page is not None:
        fresh = message_claim(user=user, message=message, page=claim_page).message
        for name in _LOCK_FIELDS:
            setattr(message, name, getattr(fresh, name))
        Message.claimed_by.field.set_cached_value(message, fresh.claimed_by)


def message_access_record(*, user: Any, message: Message, action: str, **details: Any) -> None:
    audit_record(actor=user, action=action, message=message, **details)
