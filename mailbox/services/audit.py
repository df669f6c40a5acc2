from __future__ import annotations

from typing import Any

from mailbox.models import AuditEvent, Mailbox, Message


def audit_record(
    *, actor, action: str, mailbox: Mailbox | None = None, message: Message | None = None, **details: Any
) -> AuditEvent:
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        # By id: the message's mailbox need not be loaded for the audit trail.
        mailbox_id=mailbox.pk if mailbox is not None else (message.mailbox_id if message is not None else None),
        message=message,
        details=details,
    )
