"""Reads of received signatures, starting from the user: a message the user may not see has none."""

from __future__ import annotations

from typing import Any

from mailbox.models import Message
from signing.models import ReceivedSignature

# What the panel shows; the certificate's bytes stay in the database.
_PANEL_FIELDS = (
    "message_id",
    "kind",
    "document_position",
    "signature_position",
    "filename",
    "status",
    "result",
    "reason",
    "signer_name",
    "signing_time",
    "is_qes",
    "checked_at",
    "next_try_at",
)


def received_signatures_for_message(message_id: int) -> list[ReceivedSignature]:
    """The rows of a message its caller has already found visible (the message page, through visible_to)."""
    return list(ReceivedSignature.objects.filter(message_id=message_id).only(*_PANEL_FIELDS))


def received_message_for_user(user: Any, message_id: int) -> Message | None:
    """The message (id, mailbox, subject) if the user may see it, else None."""
    return (
        Message.objects.visible_to(user)
        .filter(pk=message_id)
        .only("pk", "mailbox_id", "subject", "content_deleted_at")
        .first()
    )


def received_signatures_for_user(user: Any, message_id: int) -> list[ReceivedSignature] | None:
    """The rows of a message the user may see; None when the user may not see it (any more)."""
    if received_message_for_user(user, message_id) is None:
        return None
    return received_signatures_for_message(message_id)
