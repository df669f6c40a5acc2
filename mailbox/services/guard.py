"""The conflict guard shared by every work action ("Traffic Cop").

Every action carries the version the user saw. `guarded` locks the row, refuses the action when the
message changed meanwhile or a colleague holds the read-lock, and `bump` writes the change with a new
version and tells open pages on commit.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from audit.selectors import last_event_for_message
from kimportal.errors import ClaimHeld, Conflict
from mailbox import events
from mailbox.models import Message
from mailbox.permissions import Action, require
from mailbox.selectors.mailboxes import display_name

# Changes a colleague must see before acting (reading and locking change nothing of that kind).
ACTION_LABELS = {
    "message.taken": gettext_lazy("übernommen"),
    "message.assigned": gettext_lazy("zugewiesen"),
    "message.unassigned": gettext_lazy("Zuständigkeit entfernt"),
    "message.state_changed": gettext_lazy("Status geändert"),
    "note.added": gettext_lazy("Notiz hinzugefügt"),
    "message.lock_broken": gettext_lazy("Sperre aufgehoben"),
}


def claim_held_error(message: Message) -> ClaimHeld:
    holder = display_name(message.claimed_by) if message.claimed_by else "?"
    since = timezone.localtime(message.claimed_at).strftime("%H:%M") if message.claimed_at else ""
    return ClaimHeld(
        _("In Bearbeitung durch %(name)s seit %(since)s – Sie können die Nachricht nur lesen.")
        % {"name": holder, "since": since},
        holder=message.claimed_by,
        fresh=message,
    )


def conflict_error(message: Message) -> Conflict:
    return Conflict(
        _(
            "Die Nachricht wurde inzwischen geändert (zuletzt: %(what)s). Ihre Aktion wurde nicht ausgeführt, "
            "damit nichts überschrieben wird. Bitte prüfen Sie den aktuellen Stand und wiederholen Sie sie "
            "gegebenenfalls."
        )
        % {"what": _last_change_text(message)},
        fresh=message,
    )


def _last_change_text(message: Message) -> str:
    last = last_event_for_message(message.pk, list(ACTION_LABELS))
    if last is None:
        return _("unbekannt")
    who = display_name(last.actor) if last.actor else (last.actor_username or _("System"))
    when = timezone.localtime(last.at).strftime("%H:%M:%S")
    return f"{ACTION_LABELS.get(last.action, last.action)} – {who}, {when}"


def guarded(user: Any, message: Message, expected_version: int | None) -> Message:
    """Lock the row and stop the action if the message changed or someone else holds the read-lock.

    `expected_version` None: the action only adds (a note) and overwrites nothing a colleague did, so a change
    meanwhile does not stop it; the read-lock still does. Call inside a transaction: the row lock holds until it
    commits, which also puts concurrent additions one after the other.
    """
    require(user, message.mailbox_id, Action.PROCESS)
    current = (
        Message.objects.select_for_update(of=("self",)).select_related("claimed_by", "assignee").get(pk=message.pk)
    )
    if expected_version is not None and current.version != expected_version:
        raise conflict_error(current)
    if current.claim_active() and current.claimed_by_id != user.pk:
        raise claim_held_error(current)
    return current


def bump(message: Message, *, notes: bool = False, **fields: Any) -> Message:
    """Write the change with a new version; open lists and pages re-render on commit (`notes`: their notes too)."""
    previous_state, previous_assignee = message.state, message.assignee_id
    fields["version"] = message.version + 1
    Message.objects.filter(pk=message.pk).update(**fields)
    for name, value in fields.items():
        setattr(message, name, value)
    events.broadcast_message_changed(
        mailbox_id=message.mailbox_id, message_id=message.pk, counts=message.state != previous_state, notes=notes
    )
    if message.assignee_id != previous_assignee:
        people = [pk for pk in (previous_assignee, message.assignee_id) if pk is not None]
        events.broadcast_counters_changed(user_ids=people)
    return message


def short(subject: str) -> str:
    return subject if len(subject) <= 60 else subject[:57] + "…"
