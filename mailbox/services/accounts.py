"""KIM account services: endpoints for the CM clients and the "Verbindung testen" check."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.jobs import enqueue_on_commit
from mailbox.clients.pop3 import pop3_login_check
from mailbox.clients.smtp import smtp_login_check
from mailbox.clients.tls import (
    CmAuthFailed,
    CmError,
    CmFingerprintMismatch,
    CmProtocolError,
    CmTimeout,
    CmTlsError,
    CmUnreachable,
    Endpoint,
)
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import KimAccount, Mailbox
from mailbox.services.audit import audit_record


def account_endpoint(account: KimAccount, protocol: str) -> Endpoint:
    port = account.smtp_port if protocol == "smtp" else account.pop3_port
    username = account.smtp_username if protocol == "smtp" else account.pop3_username
    return Endpoint(
        host=account.cm_host,
        port=port,
        tls_mode=account.tls_mode,
        fingerprint=account.tls_fingerprint_sha256,
        username=username,
        password=account.get_password(),
        timeout=account.timeout_seconds,
    )


def cm_error_message(exc: BaseException, *, host: str, port: int) -> str:
    """A clear German sentence for each way talking to the CM can fail."""
    where = f"{host}:{port}"
    if isinstance(exc, CmAuthFailed):
        return _("Anmeldung abgelehnt – Benutzername oder Passwort falsch (%(detail)s).") % {"detail": exc}
    if isinstance(exc, CmFingerprintMismatch):
        return _(
            "Das TLS-Zertifikat von %(where)s passt nicht zum hinterlegten Fingerabdruck "
            "(erwartet %(expected)s, erhalten %(actual)s). Verbindung aus Sicherheitsgründen abgebrochen."
        ) % {"where": where, "expected": exc.expected or "–", "actual": exc.actual}
    if isinstance(exc, CmTimeout):
        return _("Zeitüberschreitung: %(where)s hat nicht rechtzeitig geantwortet.") % {"where": where}
    if isinstance(exc, CmTlsError):
        return _("TLS-Verbindung zu %(where)s fehlgeschlagen: %(detail)s") % {"where": where, "detail": exc}
    if isinstance(exc, CmUnreachable):
        return _("Clientmodul unter %(where)s nicht erreichbar (%(detail)s).") % {"where": where, "detail": exc}
    if isinstance(exc, CredentialDecryptionError):
        return _("Das gespeicherte Passwort kann nicht entschlüsselt werden (Schlüssel geändert?). Bitte neu eingeben.")
    if isinstance(exc, CmProtocolError):
        return _("Unerwartete Antwort von %(where)s: %(detail)s") % {"where": where, "detail": exc}
    return _("Unbekannter Fehler bei %(where)s: %(detail)s") % {"where": where, "detail": exc}


@dataclass(frozen=True)
class ConnectionCheck:
    protocol: str
    ok: bool
    message: str


def account_test_connection(*, account: KimAccount) -> list[ConnectionCheck]:
    results: list[ConnectionCheck] = []
    for protocol, check in (("SMTP", smtp_login_check), ("POP3", pop3_login_check)):
        port = account.smtp_port if protocol == "SMTP" else account.pop3_port
        try:
            outcome = check(account_endpoint(account, protocol.lower()))
        except (CmError, CredentialDecryptionError) as exc:
            results.append(ConnectionCheck(protocol, False, cm_error_message(exc, host=account.cm_host, port=port)))
            continue
        if protocol == "POP3":
            text = _("POP3-Anmeldung erfolgreich, %(count)d Nachricht(en) liegen bereit.") % {"count": outcome}
        else:
            text = _("SMTP-Anmeldung erfolgreich.")
        results.append(ConnectionCheck(protocol, True, text))
    return results


@transaction.atomic
def mailbox_fetch_request(*, user, mailbox: Mailbox) -> bool:
    """'Jetzt abrufen': make the account due now and queue a fetch."""
    try:
        account = mailbox.account
    except KimAccount.DoesNotExist:
        return False
    if not account.is_active:
        return False
    KimAccount.objects.filter(pk=account.pk).update(next_fetch_at=timezone.now())
    audit_record(actor=user, action="mailbox.fetch_requested", mailbox=mailbox)
    enqueue_on_commit("mailbox.tasks.mailbox_fetch", account.pk)
    return True
