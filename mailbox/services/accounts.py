"""KIM account services: endpoints for the CM clients and the "Verbindung testen" check."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.jobs import enqueue_on_commit
from kimportal.texts import N_, StoredText
from mailbox.clients.pop3 import Pop3Refused, pop3_login_check
from mailbox.clients.smtp import SmtpRefused, smtp_login_check
from mailbox.clients.tls import (
    CmAuthFailed,
    CmCertificateUntrusted,
    CmClientCertificateError,
    CmError,
    CmFingerprintMismatch,
    CmProtocolError,
    CmStartTlsUnavailable,
    CmTimeout,
    CmTlsError,
    CmUnreachable,
    Endpoint,
    TlsSettings,
)
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import KimAccount, Mailbox
from mailbox.services.audit import audit_record
from mailbox.services.cm_replies import pop3_refused_message, smtp_refused_message


def account_tls(account: KimAccount) -> TlsSettings:
    return TlsSettings(
        transport=account.transport,
        certificate_check=account.tls_certificate_check,
        fingerprint=account.tls_fingerprint_sha256,
        ca_certificates=account.tls_ca_certificates,
        check_hostname=account.tls_check_hostname,
        client_certificate=account.tls_client_certificate,
        client_key=account.get_client_key() if account.tls_client_certificate else "",
    )


def account_endpoint(account: KimAccount, protocol: str) -> Endpoint:
    port = account.smtp_port if protocol == "smtp" else account.pop3_port
    username = account.smtp_username if protocol == "smtp" else account.pop3_username
    return Endpoint(
        host=account.cm_host,
        port=port,
        tls=account_tls(account),
        username=username,
        password=account.get_password(),
        timeout=account.timeout_seconds,
    )


def cm_error_message(exc: BaseException, *, host: str, port: int) -> str:
    """A clear sentence, in the active language, for each way talking to the CM can fail."""
    return str(cm_error_text(exc, host=host, port=port))


def cm_error_text(exc: BaseException, *, host: str, port: int) -> StoredText:
    """As cm_error_message, to be stored and translated when shown (kimportal.texts)."""
    where = f"{host}:{port}"
    if isinstance(exc, Pop3Refused):
        return pop3_refused_message(exc, where=where)
    if isinstance(exc, SmtpRefused):
        return smtp_refused_message(exc, where=where)
    if isinstance(exc, CmAuthFailed):
        return N_("Anmeldung abgelehnt – Benutzername oder Passwort falsch (%(detail)s).") % {"detail": exc}
    if isinstance(exc, CmFingerprintMismatch):
        if not exc.actual:
            return N_(
                "%(where)s hat kein TLS-Zertifikat vorgelegt; der hinterlegte Fingerabdruck kann nicht geprüft "
                "werden. Verbindung aus Sicherheitsgründen abgebrochen."
            ) % {"where": where}
        return N_(
            "Das TLS-Zertifikat von %(where)s passt nicht zum hinterlegten Fingerabdruck "
            "(erwartet %(expected)s, erhalten %(actual)s). Verbindung aus Sicherheitsgründen abgebrochen."
        ) % {"where": where, "expected": exc.expected or "–", "actual": exc.actual}
    if isinstance(exc, CmStartTlsUnavailable):
        if exc.reply:
            return N_(
                "%(where)s hat %(command)s abgelehnt (%(reply)s). Ohne TLS wird die Verbindung nicht "
                "fortgesetzt – kein Passwort wurde gesendet. Bitte die Transportsicherung prüfen."
            ) % {"where": where, "command": exc.command, "reply": exc.reply}
        return N_(
            "%(where)s bietet kein %(command)s an. Ohne TLS wird die Verbindung nicht fortgesetzt – kein "
            "Passwort wurde gesendet. Bitte die Transportsicherung prüfen (z. B. TLS ab Verbindungsaufbau)."
        ) % {"where": where, "command": exc.command}
    if isinstance(exc, CmClientCertificateError):
        return _client_certificate_message(exc, where)
    if isinstance(exc, CmCertificateUntrusted):
        return N_(
            "Das TLS-Zertifikat von %(where)s wurde nicht als vertrauenswürdig erkannt (%(detail)s). "
            "Bitte das CA-Zertifikat hinterlegen, die Hostnamen-Prüfung abschalten oder den Fingerabdruck pinnen."
        ) % {"where": where, "detail": exc}
    if isinstance(exc, CmTimeout):
        return N_("Zeitüberschreitung: %(where)s hat nicht rechtzeitig geantwortet.") % {"where": where}
    if isinstance(exc, CmTlsError):
        return N_("TLS-Verbindung zu %(where)s fehlgeschlagen: %(detail)s") % {"where": where, "detail": exc}
    if isinstance(exc, CmUnreachable):
        return N_("Clientmodul unter %(where)s nicht erreichbar (%(detail)s).") % {"where": where, "detail": exc}
    if isinstance(exc, CredentialDecryptionError):
        return N_(
            "Das gespeicherte Passwort oder der Schlüssel des Client-Zertifikats kann nicht entschlüsselt werden "
            "(Schlüssel geändert?). Bitte neu eingeben."
        )
    if isinstance(exc, CmProtocolError):
        return N_("Unerwartete Antwort von %(where)s: %(detail)s") % {"where": where, "detail": exc}
    return N_("Unbekannter Fehler bei %(where)s: %(detail)s") % {"where": where, "detail": exc}


def _client_certificate_message(exc: CmClientCertificateError, where: str) -> StoredText:
    if exc.reason == "expired":
        return N_(
            "Das hinterlegte Client-Zertifikat ist abgelaufen (gültig bis %(until)s). Bitte ein neues "
            "Client-Zertifikat hinterlegen."
        ) % {"until": exc.detail}
    if exc.reason == "unusable":
        return N_("Das hinterlegte Client-Zertifikat oder sein Schlüssel ist nicht verwendbar: %(detail)s") % {
            "detail": exc.detail
        }
    if exc.reason == "required":
        return N_(
            "%(where)s verlangt ein TLS-Client-Zertifikat, es ist aber keines hinterlegt. Kein Passwort wurde gesendet."
        ) % {"where": where}
    if exc.reason == "rejected":
        return N_(
            "%(where)s hat das Client-Zertifikat abgelehnt (%(detail)s) – falsche Zertifizierungsstelle, "
            "abgelaufen oder gesperrt. Kein Passwort wurde gesendet."
        ) % {"where": where, "detail": exc.detail}
    if exc.sent:
        return N_(
            "%(where)s hat die Verbindung direkt nach dem TLS-Handshake beendet – vermutlich wird das hinterlegte "
            "Client-Zertifikat nicht akzeptiert (falsche Zertifizierungsstelle, abgelaufen oder gesperrt). "
            "Kein Passwort wurde gesendet."
        ) % {"where": where}
    return N_(
        "%(where)s hat die Verbindung direkt nach dem TLS-Handshake beendet – vermutlich verlangt das Clientmodul "
        "ein TLS-Client-Zertifikat, und es ist keines hinterlegt. Kein Passwort wurde gesendet."
    ) % {"where": where}


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
        if account.transport == KimAccount.Transport.PLAIN:
            text += " " + _("Achtung: Die Verbindung ist unverschlüsselt, Passwort und Nachrichten gehen im Klartext.")
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
