"""The KIM account behind a mailbox: how the portal reaches the Clientmodul (credentials encrypted)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from mailbox import crypto
from mailbox.models.mailboxes import Mailbox


class KimAccount(models.Model):
    """The mailbox's connection to a KIM Clientmodul (SMTP to send, POP3 to receive)."""

    class TlsMode(models.TextChoices):
        NONE = "none", _("Ohne TLS")
        SYSTEM_CA = "system_ca", _("TLS, Zertifikat über System-CAs geprüft")
        PINNED = "pinned", _("TLS, Zertifikat per SHA-256-Fingerabdruck gepinnt")

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
    tls_mode = models.CharField(_("TLS"), max_length=20, choices=TlsMode.choices, default=TlsMode.PINNED)
    tls_fingerprint_sha256 = models.CharField(
        _("SHA-256-Fingerabdruck des CM-Zertifikats"),
        max_length=95,
        blank=True,
        help_text=_("64 Hex-Zeichen, Doppelpunkte erlaubt"),
    )
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
    status_message = models.TextField(blank=True, editable=False)
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

    def set_password(self, raw: str) -> None:
        self.password_encrypted = crypto.encrypt(raw)

    def get_password(self) -> str:
        return crypto.decrypt(self.password_encrypted) if self.password_encrypted else ""

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
