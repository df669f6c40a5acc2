"""Mailbox's door to the audit trail: names the mailbox and message an event concerns, with readable snapshots.

The trail itself (append-only, hash-chained) is the `audit` app; it imports nothing from here.
"""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent
from audit.services import event_record
from mailbox.models import Mailbox, Message


def audit_record(
    *, actor: Any, action: str, mailbox: Mailbox | None = None, message: Message | None = None, **details: Any
) -> AuditEvent:
    """Append an event in the caller's transaction. `actor` may be None or anonymous (the system; a failed
    sign-in passes the name tried as a detail)."""
    mailbox_id = mailbox.pk if mailbox is not None else (message.mailbox_id if message is not None else None)
    address = mailbox.address if mailbox is not None else ""
    subject = ""
    if message is not None:
        loaded = message.__dict__
        if Message.mailbox.is_cached(message):
            address = message.mailbox.address
        subject = loaded.get("subject") or ""
        if "subject" not in loaded or not address:
            # The page loaded only what it needed (pk, mailbox id, state): one indexed read for the snapshots.
            subject, address = Message.objects.filter(pk=message.pk).values_list(
                "subject", "mailbox__address"
            ).first() or ("", "")
    return event_record(
        actor=actor,
        action=action,
        mailbox_id=mailbox_id,
        mailbox_address=address,
        message_id=message.pk if message is not None else None,
        message_subject=subject,
        details=details,
    )
