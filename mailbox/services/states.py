"""Work states: neu → in Bearbeitung → erledigt, and "wartet" with a due date."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import NotAllowed, PortalError
from mailbox.models import Message
from mailbox.services.assignment import open_period
from mailbox.services.audit import audit_record
from mailbox.services.claims import claim_cleared
from mailbox.services.guard import bump, guarded


@transaction.atomic
def message_set_state(
    *, user: Any, message: Message, version: int, state: str, due_at: datetime | None = None
) -> Message:
    current = guarded(user, message, version)
    if state not in Message.State.values:
        raise NotAllowed(_("Unbekannter Status."))
    if state == Message.State.WAITING and due_at is None:
        raise PortalError(_("Für „wartet“ bitte ein Fälligkeitsdatum angeben."))
    audit_record(actor=user, action="message.state_changed", message=current, old=current.state, new=state)
    fields: dict[str, Any] = {"state": state, "due_at": due_at if state == Message.State.WAITING else None}
    if state != current.state:
        # The retention clock and the dashboards' "time to done" start when it became done; reopening stops it.
        fields["done_at"] = timezone.now() if state == Message.State.DONE else None
    if state == Message.State.DONE and current.claimed_by_id == user.pk:
        # Done means the work is finished: free the message for colleagues at once.
        fields.update(claim_cleared())
        audit_record(actor=user, action="message.released", message=current, reason="done")
    if current.assignee_id is None and state != Message.State.NEW:
        # Working on (or finishing) a message makes you responsible unless someone already is: the
        # history then always says who handled it.
        open_period(current, user, by=user)
        fields["assignee"] = user
    return bump(current, **fields)
