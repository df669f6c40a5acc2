"""Signing's door to the audit trail: every view of a draft's document and every batch step is recorded."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent
from audit.services import event_record
from signing.models import Draft


def signing_audit(*, actor: Any, action: str, draft: Draft | None = None, **details: Any) -> AuditEvent:
    """Append an event in the caller's transaction. A draft is named by id, patient and subject (the trail's
    subject snapshot), with the sending mailbox as its mailbox."""
    if draft is not None:
        details = {
            "draft": draft.pk,
            "patient": draft.patient_reference,
            "document_type": draft.document_type,
            **details,
        }
    return event_record(
        actor=actor,
        action=action,
        mailbox_id=draft.mailbox_id if draft is not None else None,
        message_subject=draft.subject if draft is not None else "",
        details=details,
    )
