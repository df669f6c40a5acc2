"""German names for the actions apps record (an action without a name here is shown as recorded)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

ACTION_LABELS = {
    "signin.succeeded": _("Anmeldung"),
    "signin.failed": _("Anmeldung fehlgeschlagen"),
    "signin.logout": _("Abmeldung"),
    "signin.locked": _("Anmeldung gesperrt"),
    "signin.unlocked": _("Anmeldesperre aufgehoben"),
    "signin.wards_synced": _("Stationen aus dem Verzeichnis übernommen"),
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
    "message.legal_hold_set": _("Aufbewahrungssperre gesetzt"),
    "message.legal_hold_released": _("Aufbewahrungssperre aufgehoben"),
    "note.added": _("Notiz hinzugefügt"),
    "routing.applied": _("Verteilregel angewendet"),
    "routing.rule_changed": _("Verteilregel geändert"),
    "membership.set": _("Mitgliedschaft oder Rolle gesetzt"),
    "membership.removed": _("Mitgliedschaft entfernt"),
    "group.created": _("Gruppe angelegt"),
    "group.member_added": _("Person einer Gruppe zugeordnet"),
    "group.member_removed": _("Person aus einer Gruppe entfernt"),
    "mailbox.created": _("Postfach angelegt"),
    "mailbox.activated": _("Postfach aktiviert"),
    "mailbox.deactivated": _("Postfach deaktiviert"),
    "mailbox.fetch_requested": _("Abruf angestoßen"),
    "mailbox.sla_changed": _("Servicezeit geändert"),
    "mailbox.retention_changed": _("Löschfrist geändert"),
    "account.changed": _("KIM-Konto geändert"),
    "absence.created": _("Abwesenheit eingetragen"),
    "absence.ended": _("Abwesenheit beendet"),
    "retention.run": _("Aufbewahrung: Löschlauf"),
    "retention.deleted": _("Inhalt gelöscht (Aufbewahrung)"),
    "access.exported": _("Zugriffsbericht exportiert"),
    "audit.exported": _("Audit exportiert"),
    "signing.draft_created": _("Entwurf zur Signatur angelegt"),
    "signing.draft_changed": _("Entwurf geändert"),
    "signing.document_viewed": _("Dokument zur Signatur angesehen"),
    "signing.batch_started": _("Signaturvorgang gestartet"),
    "signing.batch_cancel_requested": _("Signaturvorgang abgebrochen"),
    "signing.signed": _("Dokument signiert"),
    "signing.sign_failed": _("Signatur fehlgeschlagen"),
    "signing.batch_finished": _("Signaturvorgang beendet"),
    "signing.card_set": _("eHBA zugeordnet"),
    "signing.card_removed": _("eHBA-Zuordnung entfernt"),
    "signing.workplace_saved": _("Arbeitsplatz gespeichert"),
    "signing.handed_to_outbox": _("Signierter Brief an den Postausgang übergeben"),
}


def action_label(action: str) -> str:
    return str(ACTION_LABELS.get(action, action))
