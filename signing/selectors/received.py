"""Reads of received signatures, starting from the user: a message the user may not see has none."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from kimportal.prepared import PreparedQuery
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


# The id and the panel's fields in the model's order (Model.from_db() takes a subset's values in that order).
_PANEL_COLUMNS = tuple(
    f.attname for f in ReceivedSignature._meta.concrete_fields if f.primary_key or f.attname in _PANEL_FIELDS
)


def _panel_query(message_id: int) -> QuerySet[ReceivedSignature, tuple[Any, ...]]:
    return (
        ReceivedSignature.objects.filter(message_id=message_id)
        .order_by("document_position", "kind")  # the model's ordering within one message
        .values_list(*_PANEL_COLUMNS)
    )


# Every message page with a PDF or a signature: compiled once (kimportal.prepared), not per page.
_PANEL = PreparedQuery(_panel_query)


def received_signatures_for_message(message_id: int) -> list[ReceivedSignature]:
    """The rows of a message its caller has already found visible (the message page, through visible_to)."""
    return [ReceivedSignature.from_db("default", _PANEL_COLUMNS, row) for row in _PANEL.rows(message_id)]


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
