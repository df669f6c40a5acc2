"""Reading patient data: every view of a message, its HTML, source or attachment is audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from mailbox.models import Message, MessageRead
from mailbox.services.audit import audit_record
from mailbox.services.claims import message_claim


@transaction.atomic
def message_open(*, user: Any, message: Message, claim_page: str | None = None) -> None:
    """Opening a message is access to patient data: audited, and it marks the message read for this user.

    With `claim_page` the user opens it to work on it: the read-lock is taken in the same transaction
    (one commit per page view).
    """
    # One INSERT … ON CONFLICT DO NOTHING: the first read's time stays; no SELECT, no savepoint.
    MessageRead.objects.bulk_create([MessageRead(message=message, user=user)], ignore_conflicts=True)
    audit_record(actor=user, action="message.viewed", message=message)
    if claim_page is not None:
        message_claim(user=user, message=message, page=claim_page)


def message_access_record(*, user: Any, message: Message, action: str, **details: Any) -> None:
    audit_record(actor=user, action=action, message=message, **details)
