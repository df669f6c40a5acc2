from __future__ import annotations

from typing import Any

from mailbox.models import AuditEvent, Mailbox, Message


def audit_record(
    *, actor, action: str, mailbox: Mailbox | None = None, message: Message | None = None, **details: Any
) -> AuditEvent:
    if message is not None and mailbox is None:
        mailbox = message.mailbox
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        action=action,
        mailbox=mailbox,
        message=message,
        details=details,
    )
