"""German names for the actions apps record (an action without a name here is shown as recorded)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

ACTION_LABELS = {
    "auth.login": _("Anmeldung"),
    "auth.login_failed": _("Anmeldung fehlgeschlagen"),
    "auth.logout": _("Abmeldung"),
    "message.viewed": _("Nachricht geöffnet"),
    "message.html_viewed": _("HTML-Ansicht geöffnet"),
    "message.raw_viewed": _("Quelltext angesehen"),
    "attachment.downloaded": _("Anhang geöffnet"),
    "message.claimed": _("Sperre übernommen"),
    "message.released": _("Sperre freigegeben"),
    "message.lock_broken": _("Sperre aufgehoben"),
    "message.taken": _("Verantwortung übernommen"),
    "message.assigned": _("zugewiesen"),
    "message.unassigned": _("Zuständigkeit entfernt"),
    "message.state_changed": _("Status geändert"),
    "note.added": _("Notiz hinzugefügt"),
    "membership.set": _("Mitgliedschaft oder Rolle gesetzt"),
    "membership.removed": _("Mitgliedschaft entfernt"),
    "mailbox.fetch_requested": _("Abruf angestoßen"),
    "absence.created": _("Abwesenheit eingetragen"),
    "absence.ended": _("Abwesenheit beendet"),
    "audit.exported": _("Audit exportiert"),
}


def action_label(action: str) -> str:
    return str(ACTION_LABELS.get(action, action))
