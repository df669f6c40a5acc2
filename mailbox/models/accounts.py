"""The KIM account behind a mailbox: how the portal reaches the Clientmodul (credentials encrypted)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render
from mailbox import crypto
from mailbox.models.mailboxes import Mailbox


class KimAccount(models.Model):
    """The mailbox's connection to a KIM Clientmodul (SMTP to send, POP3 to receive)."""

    class Transport(models.TextChoices):
        IMPLICIT_TLS = "implicit_tls", _("TLS ab Verbindungsaufbau (SMTPS/POP3S)")
        STARTTLS = "starttls", _("STARTTLS (SMTP) / STLS (POP3)")
        PLAIN = "plain", _("UNSICHER: unverschlüsselt – Passwort und Nachrichten im Klartext")

    class CertificateCheck(models.TextChoices):
        PINNED = "pinned", _("SHA-256-Fingerabdruck des CM-Zertifikats (Pinning)")
        CA = "ca", _("Zertifizierungsstelle (hinterlegte CA-Zertifikate oder System-CAs)")

    class Status(models.TextChoices):
        UNKNOWN = "unknown", _("noch nicht abgerufen")
        OK = "ok", _("erreichbar")
        UNREACHABLE = "unreachable", _("nicht erreichbar")
        AUTH_FAILED = "auth_failed", _("Anmeldung fehlgeschlagen")
        ERROR = "error", _("Fehler")

    mailbox = models.OneToOneField(Mailbox, on_delete=models.CASCADE, related_name="account")
    cm_host = models.CharField(_("Clientmodul-Host"), max_length=255, default="127.0.0.1")
    smtp_port = models.PositiveIntegerField(_("SMTP-Port"), default=8465)
    pop3_port = models.PositiveIntegerField(_("POP3-Port"), default=8995)
    # Transport and certificate check are separate choices: real CMs offer implicit TLS or STARTTLS,
    # and their certificates are pinned or checked against a CA independently of that.
    transport = models.CharField(
        _("Transportsicherung"), max_length=20, choices=Transport.choices, default=Transport.IMPLICIT_TLS
    )
    tls_certificate_check = models.CharField(
        _("Prüfung des CM-Zertifikats"),
        max_length=20,
        choices=CertificateCheck.choices,
        default=CertificateCheck.PINNED,
    )
    tls_fingerprint_sha256 = models.CharField(
        _("SHA-256-Fingerabdruck des CM-Zertifikats"),
        max_length=95,
        blank=True,
        help_text=_("64 Hex-Zeichen, Doppelpunkte erlaubt"),
    )
    tls_ca_certificates = models.TextField(
        _("CA-Zertifikate (PEM)"),
        blank=True,
        help_text=_("Nur bei Prüfung über eine Zertifizierungsstelle; leer = System-CAs des Servers"),
    )
    tls_check_hostname = models.BooleanField(
        _("Hostnamen im Zertifikat prüfen"),
        default=False,
        help_text=_(
            "Nur bei Prüfung über eine Zertifizierungsstelle. "
            "Das Zertifikat eines CM ist selten auf seinen Hostnamen ausgestellt."
        ),
    )
    # mTLS (KOM-LE-A_2181). The certificate is public; the key is a secret like the password.
    tls_client_certificate = models.TextField(_("Client-Zertifikat (PEM)"), blank=True)
    tls_client_key_encrypted = models.TextField(_("Privater Schlüssel (verschlüsselt)"), blank=True, editable=False)
    fachdienst = models.CharField(
        _("Fachdienst (Host:Port)"), max_length=255, blank=True, help_text=_("leer = DNS-SD durch das CM")
    )
    fachdienst_pop3 = models.CharField(
        _("Fachdienst für POP3 (Host:Port)"), max_length=255, blank=True, help_text=_("leer = wie SMTP, Port 995")
    )
    mandant_id = models.CharField(_("MandantId"), max_length=64)
    client_system_id = models.CharField(_("ClientSystemId"), max_length=64)
    workplace_id = models.CharField(_("WorkplaceId"), max_length=64)
    user_id = models.CharField(_("UserId (nur HBA)"), max_length=64, blank=True)
    konnektor_id = models.CharField(_("KonnektorId"), max_length=64, blank=True)
    smtp_username_template = models.CharField(
        _("SMTP-Benutzername (Vorlage)"),
        max_length=255,
        default="{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{konnektor}",
        help_text=_("Platzhalter: {address} {fachdienst} {mandant} {clientsystem} {workplace} {user} {konnektor}"),
    )
    pop3_username_template = models.CharField(
        _("POP3-Benutzername (Vorlage)"),
        max_length=255,
        default="{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{user}#{konnektor}",
        help_text=_("Platzhalter wie bei SMTP"),
    )
    password_encrypted = models.TextField(_("Passwort (verschlüsselt)"), blank=True, editable=False)
    is_active = models.BooleanField(_("Abruf aktiv"), default=True)
    poll_interval_seconds = models.PositiveIntegerField(_("Abrufintervall (Sekunden)"), default=30)
    keep_on_server_days = models.PositiveIntegerField(
        _("Nachrichten auf dem Server behalten (Tage)"), default=0, help_text=_("0 = nach sicherer Ablage löschen")
    )
    timeout_seconds = models.FloatField(_("Zeitlimit (Sekunden)"), default=30.0)

    # Fetch state. The lease makes "one fetch per account at a time" hold across all workers.
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNKNOWN, editable=False)
    # Why the last fetch failed, translated when shown (kimportal.texts; a row from before keeps its German sentence).
    status_message = models.JSONField(default=str, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_attempt_at = models.DateTimeField(null=True, blank=True, editable=False)
    next_fetch_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    fetch_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    fetch_lease_token = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        verbose_name = _("KIM-Konto")
        verbose_name_plural = _("KIM-Konten")

    def __str__(self) -> str:
        return self.mailbox.address

    @property
    def status_message_text(self) -> str:
        return render(self.status_message)

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    def get_password(self) -> str:
        return crypto.decrypt(self.password_encrypted) if self.password_encrypted else ""

    def set_client_key(self, pem: str) -> None:
        self.tls_client_key_encrypted = crypto.encrypt(pem) if pem else ""

    def get_client_key(self) -> str:
        return crypto.decrypt(self.tls_client_key_encrypted) if self.tls_client_key_encrypted else ""

    def _username(self, template: str, fachdienst: str) -> str:
        return build_username(
            template,
            address=self.mailbox.address,
            fachdienst=fachdienst,
            mandant=self.mandant_id,
            clientsystem=self.client_system_id,
            workplace=self.workplace_id,
            user=self.user_id,
            konnektor=self.konnektor_id,
        )

    @property
    def smtp_username(self) -> str:
        return self._username(self.smtp_username_template, self.fachdienst)

    @property
    def pop3_username(self) -> str:
        fachdienst = self.fachdienst_pop3 or _with_port(self.fachdienst, "995")
        return self._username(self.pop3_username_template, fachdienst)


def _with_port(hostport: str, port: str) -> str:
    if not hostport:
        return ""
    host = hostport.rsplit(":", 1)[0] if ":" in hostport else hostport
    return f"{host}:{port}"


def build_username(template: str, **parts: str) -> str:
    """Fill the '#' username template; skipped optional parts become '*', trailing ones are dropped.

    gematik A_21519-02: every skipped position before a used later part must hold the placeholder '*'.
    """
    filled = template.format(**{k: (v or "\0") for k, v in parts.items()})
    fields = filled.split("#")
    while fields and fields[-1] == "\0":
        fields.pop()
    return "#".join("*" if f == "\0" else f for f in fields)
