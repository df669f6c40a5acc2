"""Responsibility: one person per message ("Verantwortung ist nicht teilbar"), with its history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import PortalError
from kimportal.texts import N_, Stored, StoredText, join
from mailbox.models import Absence, AssignmentPeriod, Message, Notification
from mailbox.selectors.mailboxes import display_name, mailbox_members, notification_recipients
from mailbox.services.audit import audit_record
from mailbox.services.guard import bump, guarded, short
from mailbox.services.notifications import notify


class AssigneeRefused(PortalError):
    """The person chosen cannot be made responsible (not a working member, deactivated, away without a substitute
    who could step in). Not a matter of the assigner's role: the form comes back with the reason, to choose again."""


def open_period(message: Message, assignee: Any, *, by: Any, note: Stored = "") -> None:
    """Close the current responsibility period and open the next (None: nobody is responsible)."""
    now = timezone.now()
    AssignmentPeriod.objects.filter(message=message, ended_at__isnull=True).update(ended_at=now)
    if assignee is not None:
        AssignmentPeriod.objects.create(message=message, user=assignee, assigned_by=by, note=note, started_at=now)


def substitute_for(user: Any, *, at: datetime | None = None) -> Any:
    """The user's substitute if they are absent now, else None."""
    at = at or timezone.now()
    absence = Absence.objects.filter(user=user, starts_at__lte=at, ends_at__gt=at).select_related("substitute").first()
    return absence.substitute if absence else None


@transaction.atomic
def message_take(*, user: Any, message: Message, version: int) -> Message:
    current = guarded(user, message, version)
    if current.assignee_id == user.pk:
        return current
    open_period(current, user, by=user)
    audit_record(actor=user, action="message.taken", message=current, previous=current.assignee_id)
    state = Message.State.IN_PROGRESS if current.state in (Message.State.NEW, Message.State.WAITING) else current.state
    return bump(current, assignee=user, state=state)


@transaction.atomic
def message_assign(*, user: Any, message: Message, version: int, assignee_id: int, note: str = "") -> Message:
    current = guarded(user, message, version)
    members = mailbox_members(current.mailbox_id)
    assignee = get_user_model().objects.filter(pk=assignee_id, is_active=True).first()
    if assignee is None or assignee not in members:
        raise AssigneeRefused(_("Diese Person ist kein bearbeitendes Mitglied des Postfachs."))
    substitute = substitute_for(assignee)
    stored_note: Stored = note
    if substitute is not None and substitute in members and substitute_for(substitute) is not None:
        # The substitute is away too (routing leaves such mail unassigned): whoever assigns chooses again.
        raise AssigneeRefused(
            _("%(name)s und die Vertretung %(substitute)s sind abwesend. Bitte eine andere Person wählen.")
            % {"name": display_name(assignee), "substitute": display_name(substitute)}
        )
    if substitute is not None and substitute in members:
        # Kept untranslated (kimportal.texts): the history and the notification are read in the reader's language.
        stored_note = join(
            StoredText.of(note), N_("Vertretung für %(name)s (abwesend)") % {"name": display_name(assignee)}
        ).stored
        assignee = substitute
    elif substitute is not None:
        # The substitute left the mailbox (or lost the right to work it): the letter would wait, unseen, with
        # someone who is away. Whoever assigns chooses again (routing leaves such mail unassigned instead).
        raise AssigneeRefused(
            _(
                "%(name)s ist abwesend, und die Vertretung %(substitute)s kann dieses Postfach nicht bearbeiten. "
                "Bitte eine andere Person wählen."
            )
            % {"name": display_name(assignee), "substitute": display_name(substitute)}
        )
    if current.assignee_id == assignee.pk:
        return current
    open_period(current, assignee, by=user, note=stored_note)
    audit_record(
        actor=user, action="message.assigned", message=current, assignee=assignee.pk, previous=current.assignee_id
    )
    if assignee.pk != user.pk:
        notify(
            notification_recipients(current.mailbox_id, [assignee]),
            kind=Notification.Kind.ASSIGNED,
            message=current,
            actor=user,
            params={"name": display_name(user), "subject": short(current.subject), "note": stored_note},
        )
    state = Message.State.IN_PROGRESS if current.state == Message.State.NEW else current.state
    return bump(current, assignee=assignee, state=state)


@transaction.atomic
def message_unassign(*, user: Any, message: Message, version: int) -> Message:
    current = guarded(user, message, version)
    if current.assignee_id is None:
        return current
    open_period(current, None, by=user)
    audit_record(actor=user, action="message.unassigned", message=current, previous=current.assignee_id)
    return bump(current, assignee=None)
