"""Working a shared mailbox: read-lock (claim), responsibility, state, notes — with a conflict guard.

The claim is a lease on the message row, taken with one conditional UPDATE: on PostgreSQL two users
claiming in the same millisecond serialize on the row and only one UPDATE matches. A lease is valid
while claim_expires_at is in the future, so it expires to the second without any cron.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mailbox import events, selectors
from mailbox.errors import PortalError
from mailbox.models import Absence, AssignmentPeriod, Message, Note, Notification
from mailbox.services.audit import audit_record


class NotAllowed(PortalError):
    pass


class ClaimHeld(PortalError):
    """Someone else holds the read-lock."""

    def __init__(self, message: Message) -> None:
        holder = selectors.display_name(message.claimed_by) if message.claimed_by else "?"
        since = timezone.localtime(message.claimed_at).strftime("%H:%M") if message.claimed_at else ""
        super().__init__(
            _("In Bearbeitung durch %(name)s seit %(since)s – Sie können die Nachricht nur lesen.")
            % {"name": holder, "since": since}
        )
        self.holder = message.claimed_by


class Conflict(PortalError):
    """The message changed since the user loaded it (the 'Traffic Cop')."""

    def __init__(self, message: Message) -> None:
        super().__init__(
            _(
                "Die Nachricht wurde inzwischen geändert (zuletzt: %(what)s). Ihre Aktion wurde nicht ausgeführt, "
                "damit nichts überschrieben wird. Bitte prüfen Sie den aktuellen Stand und wiederholen Sie sie "
                "gegebenenfalls."
            )
            % {"what": _last_change_text(message)}
        )
        self.fresh = message


def claim_seconds() -> int:
    return int(getattr(settings, "KIMPORTAL_CLAIM_SECONDS", 600))


def _require(user, message: Message, action: str) -> str:
    role = selectors.user_role(user, message.mailbox_id)
    if not selectors.can(role, action):
        raise NotAllowed(_("Dafür fehlt Ihnen die Berechtigung in diesem Postfach."))
    return role


@dataclass(frozen=True)
class ClaimResult:
    won: bool
    renewed: bool
    message: Message


# A page load that renewed the lock this recently may still be connecting its socket.
PAGE_HANDOVER_SECONDS = 15


def message_claim(*, user, message: Message, page: str = "", now: datetime | None = None) -> ClaimResult:
    """Take or renew the read-lock. Never raises for a held lock: the caller shows who holds it.

    `page` names the page load that claims (detail view, claim button); heartbeats renew without it.
    """
    _require(user, message, "process")
    now = now or timezone.now()
    until = now + timedelta(seconds=claim_seconds())
    still_mine = Q(claimed_by=user, claim_expires_at__gt=now)
    # The one statement that decides a race: free, expired, or already ours. A renewal keeps the
    # original claimed_at ("seit 10:42"), a new claim starts now.
    won = bool(
        Message.objects.filter(pk=message.pk)
        .filter(Q(claimed_by__isnull=True) | Q(claim_expires_at__lte=now) | Q(claimed_by=user))
        .update(
            claimed_by=user,
            claimed_at=Case(When(still_mine, then=F("claimed_at")), default=Value(now)),
            claim_expires_at=until,
            claim_renewed_at=now,
            # A new page claim names its page; a heartbeat renewal keeps the page that claimed.
            claim_page=Value(page) if page else Case(When(still_mine, then=F("claim_page")), default=Value("")),
        )
    )
    fresh = Message.objects.select_related("claimed_by").get(pk=message.pk)
    renewed = won and fresh.claimed_at != now
    if won and not renewed:
        with transaction.atomic():
            audit_record(actor=user, action="message.claimed", message=fresh, until=until.isoformat())
            events.broadcast_message_changed(mailbox_id=fresh.mailbox_id, message_id=fresh.pk, lock=True)
    return ClaimResult(won=won, renewed=renewed, message=fresh)


@transaction.atomic
def message_release(*, user, message: Message, reason: str = "") -> bool:
    released = bool(
        Message.objects.filter(pk=message.pk, claimed_by=user).update(
            claimed_by=None, claimed_at=None, claim_expires_at=None, claim_renewed_at=None, claim_page=""
        )
    )
    if released:
        audit_record(actor=user, action="message.released", message=message, reason=reason)
        events.broadcast_message_changed(mailbox_id=message.mailbox_id, message_id=message.pk, lock=True)
    return released


@transaction.atomic
def message_break_lock(*, user, message: Message) -> bool:
    """An owner frees a colleague's lock; the holder is told, and it is audited."""
    _require(user, message, "break_lock")
    current = Message.objects.select_for_update(of=("self",)).select_related("claimed_by").get(pk=message.pk)
    if not current.claim_active():
        return False
    holder = current.claimed_by
    Message.objects.filter(pk=message.pk).update(
        claimed_by=None, claimed_at=None, claim_expires_at=None, claim_renewed_at=None, claim_page=""
    )
    audit_record(actor=user, action="message.lock_broken", message=current, holder=holder.pk)
    if holder.pk != user.pk:
        _notify(
            [holder],
            kind=Notification.Kind.LOCK_BROKEN,
            message=current,
            actor=user,
            params={"name": selectors.display_name(user), "subject": _short(current.subject)},
        )
    events.broadcast_message_changed(mailbox_id=current.mailbox_id, message_id=current.pk, lock=True)
    return True


def _guarded(user, message: Message, expected_version: int) -> Message:
    """Lock the row and stop the action if the message changed or someone else holds the read-lock."""
    _require(user, message, "process")
    current = (
        Message.objects.select_for_update(of=("self",)).select_related("claimed_by", "assignee").get(pk=message.pk)
    )
    if current.version != expected_version:
        raise Conflict(current)
    if current.claim_active() and current.claimed_by_id != user.pk:
        raise ClaimHeld(current)
    return current


def _bump(message: Message, **fields) -> Message:
    fields["version"] = message.version + 1
    Message.objects.filter(pk=message.pk).update(**fields)
    for name, value in fields.items():
        setattr(message, name, value)
    events.broadcast_message_changed(mailbox_id=message.mailbox_id, message_id=message.pk)
    return message


def _open_period(message: Message, assignee, *, by, note: str = "") -> None:
    now = timezone.now()
    AssignmentPeriod.objects.filter(message=message, ended_at__isnull=True).update(ended_at=now)
    if assignee is not None:
        AssignmentPeriod.objects.create(message=message, user=assignee, assigned_by=by, note=note, started_at=now)


def substitute_for(user, *, at: datetime | None = None):
    """The user's substitute if they are absent now, else None."""
    at = at or timezone.now()
    absence = Absence.objects.filter(user=user, starts_at__lte=at, ends_at__gt=at).select_related("substitute").first()
    return absence.substitute if absence else None


@transaction.atomic
def message_take(*, user, message: Message, version: int) -> Message:
    current = _guarded(user, message, version)
    if current.assignee_id == user.pk:
        return current
    _open_period(current, user, by=user)
    audit_record(actor=user, action="message.taken", message=current, previous=current.assignee_id)
    state = Message.State.IN_PROGRESS if current.state in (Message.State.NEW, Message.State.WAITING) else current.state
    return _bump(current, assignee=user, state=state)


@transaction.atomic
def message_assign(*, user, message: Message, version: int, assignee_id: int, note: str = "") -> Message:
    current = _guarded(user, message, version)
    assignee = get_user_model().objects.filter(pk=assignee_id, is_active=True).first()
    if assignee is None or assignee not in selectors.mailbox_members(current.mailbox):
        raise NotAllowed(_("Diese Person ist kein bearbeitendes Mitglied des Postfachs."))
    substitute = substitute_for(assignee)
    if substitute is not None and substitute in selectors.mailbox_members(current.mailbox):
        note = (note + "\n" if note else "") + _("Vertretung für %(name)s (abwesend)") % {
            "name": selectors.display_name(assignee)
        }
        assignee = substitute
    if current.assignee_id == assignee.pk:
        return current
    _open_period(current, assignee, by=user, note=note)
    audit_record(
        actor=user, action="message.assigned", message=current, assignee=assignee.pk, previous=current.assignee_id
    )
    if assignee.pk != user.pk:
        _notify(
            selectors.notification_recipients(current.mailbox, [assignee]),
            kind=Notification.Kind.ASSIGNED,
            message=current,
            actor=user,
            params={"name": selectors.display_name(user), "subject": _short(current.subject), "note": note},
        )
    state = Message.State.IN_PROGRESS if current.state == Message.State.NEW else current.state
    return _bump(current, assignee=assignee, state=state)


@transaction.atomic
def message_unassign(*, user, message: Message, version: int) -> Message:
    current = _guarded(user, message, version)
    if current.assignee_id is None:
        return current
    _open_period(current, None, by=user)
    audit_record(actor=user, action="message.unassigned", message=current, previous=current.assignee_id)
    return _bump(current, assignee=None)


@transaction.atomic
def message_set_state(*, user, message: Message, version: int, state: str, due_at: datetime | None = None) -> Message:
    current = _guarded(user, message, version)
    if state not in Message.State.values:
        raise NotAllowed(_("Unbekannter Status."))
    if state == Message.State.WAITING and due_at is None:
        raise PortalError(_("Für „wartet“ bitte ein Fälligkeitsdatum angeben."))
    audit_record(actor=user, action="message.state_changed", message=current, old=current.state, new=state)
    fields: dict = {"state": state, "due_at": due_at if state == Message.State.WAITING else None}
    if state == Message.State.DONE and current.claimed_by_id == user.pk:
        # Done means the work is finished: free the message for colleagues at once.
        fields.update(claimed_by=None, claimed_at=None, claim_expires_at=None, claim_renewed_at=None, claim_page="")
        audit_record(actor=user, action="message.released", message=current, reason="done")
    if current.assignee_id is None and state != Message.State.NEW:
        # Working on (or finishing) a message makes you responsible unless someone already is: the
        # history then always says who handled it.
        _open_period(current, user, by=user)
        fields["assignee"] = user
    return _bump(current, **fields)


MENTION = re.compile(r"(?<![\w.@])@([\w][\w.\-]{0,149})")


@transaction.atomic
def note_add(*, user, message: Message, version: int, body: str) -> Note:
    body = body.strip()
    if not body:
        raise PortalError(_("Die Notiz ist leer."))
    if len(body) > 10_000:
        raise PortalError(_("Die Notiz ist zu lang (höchstens 10.000 Zeichen)."))
    current = _guarded(user, message, version)
    note = Note.objects.create(message=current, author=user, body=body)
    # "@anna." at the end of a sentence mentions anna: trailing dots and dashes are punctuation.
    names = {m.lower().rstrip(".-") for m in MENTION.findall(body)}
    mentioned = [
        u for u in selectors.mailbox_members(current.mailbox, min_role="observer") if u.username.lower() in names
    ]
    if mentioned:
        note.mentions.set(mentioned)
        recipients = [u for u in selectors.notification_recipients(current.mailbox, mentioned) if u.pk != user.pk]
        _notify(
            recipients,
            kind=Notification.Kind.MENTION,
            message=current,
            actor=user,
            params={"name": selectors.display_name(user), "subject": _short(current.subject)},
        )
    audit_record(actor=user, action="note.added", message=current, note=note.pk, mentions=[u.pk for u in mentioned])
    _bump(current)
    return note


def _notify(users, *, kind: str, message: Message, actor, params: dict) -> None:
    # German text kept for the admin and exports; the UI renders params in the reader's language.
    with translation.override("de"):
        fallback = Notification(kind=kind, params=params).display_text
    for user in users:
        Notification.objects.create(
            user=user, kind=kind, message=message, actor=actor, params=params, text=fallback[:500]
        )
        events.broadcast_user_notification(user_id=user.pk)


def _short(subject: str) -> str:
    return subject if len(subject) <= 60 else subject[:57] + "…"


def _last_change_text(message: Message) -> str:
    from mailbox.models import AuditEvent

    last = (
        AuditEvent.objects.filter(message=message)
        # Reading and locking change nothing a colleague must see before acting.
        .filter(action__in=list(ACTION_LABELS))
        .select_related("actor")
        .first()
    )
    if last is None:
        return _("unbekannt")
    who = selectors.display_name(last.actor) if last.actor else _("System")
    when = timezone.localtime(last.at).strftime("%H:%M:%S")
    return f"{ACTION_LABELS.get(last.action, last.action)} – {who}, {when}"


ACTION_LABELS = {
    "message.taken": gettext_lazy("übernommen"),
    "message.assigned": gettext_lazy("zugewiesen"),
    "message.unassigned": gettext_lazy("Zuständigkeit entfernt"),
    "message.state_changed": gettext_lazy("Status geändert"),
    "note.added": gettext_lazy("Notiz hinzugefügt"),
    "message.lock_broken": gettext_lazy("Sperre aufgehoben"),
}


@transaction.atomic
def absence_create(*, user, substitute, starts_at: datetime, ends_at: datetime) -> Absence:
    if substitute.pk == user.pk:
        raise PortalError(_("Sie können sich nicht selbst vertreten."))
    if ends_at <= starts_at:
        raise PortalError(_("Das Ende der Abwesenheit muss nach dem Beginn liegen."))
    absence = Absence.objects.create(user=user, substitute=substitute, starts_at=starts_at, ends_at=ends_at)
    audit_record(
        actor=user,
        action="absence.created",
        substitute=substitute.pk,
        starts_at=starts_at.isoformat(),
        ends_at=ends_at.isoformat(),
    )
    if starts_at <= timezone.now():
        transaction.on_commit(lambda: absence_begin(absence_id=absence.pk))
    else:
        from mailbox.tasks import mailbox_absence_begin

        transaction.on_commit(lambda: mailbox_absence_begin.apply_async((absence.pk,), eta=starts_at))
    return absence


def absence_begin(*, absence_id: int) -> int:
    """Release every lock the absent user still holds."""
    absence = Absence.objects.select_related("user").filter(pk=absence_id).first()
    if absence is None or not (absence.starts_at <= timezone.now() < absence.ends_at):
        return 0
    released = 0
    for message in Message.objects.filter(claimed_by=absence.user):
        released += message_release(user=absence.user, message=message, reason="absence")
    return released


@transaction.atomic
def absence_end(*, user, absence_id: int) -> None:
    absence = Absence.objects.get(pk=absence_id, user=user)
    now = timezone.now()
    if absence.starts_at >= now:
        absence.delete()
    else:
        Absence.objects.filter(pk=absence.pk).update(ends_at=now)
    audit_record(actor=user, action="absence.ended", absence=absence_id)
