from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from mailbox import crypto


def member_q(user, prefix: str = "") -> models.Q:
    """Memberships that apply to the user: their own or one of their groups' (wards). The one place for this rule."""
    return models.Q(**{f"{prefix}user": user}) | models.Q(**{f"{prefix}group__in": user.groups.all()})


def member_mailbox_ids(user):
    """Subquery of the active mailbox ids an active user belongs to, directly or through a group (ward).

    is_active is read from the database, not from the user object: a socket's user was loaded when it
    connected, and a deactivated account must lose access at once.
    """
    from django.contrib.auth import get_user_model

    active = models.Exists(get_user_model().objects.filter(pk=user.pk, is_active=True))
    return Membership.objects.filter(member_q(user), active, mailbox__is_active=True).values("mailbox_id")


class MailboxQuerySet(models.QuerySet):
    def visible_to(self, user) -> MailboxQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(pk__in=member_mailbox_ids(user))


class Mailbox(models.Model):
    """A KIM address as the portal's users see it: functional (shared) or personal."""

    class Kind(models.TextChoices):
        FUNCTIONAL = "functional", _("Funktionspostfach")
        PERSONAL = "personal", _("Persönliches Postfach")

    address = models.EmailField(_("KIM-Adresse"), max_length=254, unique=True)
    display_name = models.CharField(_("Anzeigename"), max_length=200)
    kind = models.CharField(_("Art"), max_length=20, choices=Kind.choices, default=Kind.FUNCTIONAL)
    is_active = models.BooleanField(_("aktiv"), default=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="mailboxes")
    created_at = models.DateTimeField(default=timezone.now)

    objects = MailboxQuerySet.as_manager()

    class Meta:
        ordering = ["display_name"]
        verbose_name = _("Postfach")
        verbose_name_plural = _("Postfächer")

    def __str__(self) -> str:
        return f"{self.display_name} <{self.address}>"


class Membership(models.Model):
    """A user or a group (ward) with a role in a mailbox. A user's role is the strongest of all that apply."""

    class Role(models.TextChoices):
        OBSERVER = "observer", _("Beobachter (nur lesen, keine Benachrichtigungen)")
        READER = "reader", _("Lesen")
        PROCESSOR = "processor", pgettext_lazy("mailbox role", "Bearbeiten")
        OWNER = "owner", _("Eigentümer")

    # Ordered by power; observers read like readers but are never notified.
    RANK = {Role.OBSERVER: 0, Role.READER: 1, Role.PROCESSOR: 2, Role.OWNER: 3}

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="memberships"
    )
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="mailbox_memberships"
    )
    role = models.CharField(_("Rolle"), max_length=20, choices=Role.choices, default=Role.PROCESSOR)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "user"], name="membership_unique_user"),
            models.UniqueConstraint(fields=["mailbox", "group"], name="membership_unique_group"),
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="membership_user_xor_group",
            ),
        ]
        verbose_name = _("Mitgliedschaft")
        verbose_name_plural = _("Mitgliedschaften")

    def __str__(self) -> str:
        return f"{self.user or self.group} @ {self.mailbox.address} ({self.role})"


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


class DienstkennungLabel(models.Model):
    """Registry of known Dienstkennungen (data, not code: the gematik list changes)."""

    application = models.CharField(_("Anwendung"), max_length=100, unique=True)
    label = models.CharField(_("Bezeichnung"), max_length=100)
    css_class = models.CharField(max_length=40, default="badge-neutral")

    class Meta:
        ordering = ["application"]
        verbose_name = _("Dienstkennung")
        verbose_name_plural = _("Dienstkennungen")

    def __str__(self) -> str:
        return f"{self.application} → {self.label}"


class MessageQuerySet(models.QuerySet):
    def visible_to(self, user) -> MessageQuerySet:
        if not user.is_authenticated:
            return self.none()
        return self.filter(mailbox_id__in=member_mailbox_ids(user))


class Message(models.Model):
    """A received KIM message. The raw bytes are immutable (blob store); parsed fields are for display."""

    class State(models.TextChoices):
        NEW = "new", _("neu")
        IN_PROGRESS = "in_progress", _("in Bearbeitung")
        WAITING = "waiting", _("wartet")
        DONE = "done", _("erledigt")

    mailbox = models.ForeignKey(Mailbox, on_delete=models.PROTECT, related_name="messages")
    uidl = models.CharField(max_length=100)
    # The size the CM's POP3 LIST gave: a known UIDL with another size is a different message.
    pop3_size = models.PositiveBigIntegerField(null=True, blank=True)
    raw_sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    from_address = models.CharField(max_length=320, blank=True)
    from_name = models.CharField(max_length=300, blank=True)
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    subject = models.TextField(blank=True)
    date = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=998, blank=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)
    dienstkennung = models.CharField(max_length=200, blank=True)
    decryption_results = models.JSONField(default=list, blank=True)
    integrity_results = models.JSONField(default=list, blank=True)
    kim_error_codes = models.JSONField(default=list, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True, help_text="sanitized with nh3")
    is_malformed = models.BooleanField(default=False)
    parse_problems = models.JSONField(default=list, blank=True)
    # Attachments (not inline images); immutable after ingest, kept here so lists need no join.
    attachment_count = models.PositiveSmallIntegerField(default=0)

    # Work state. One responsible person at most: a single column, so the database enforces it.
    state = models.CharField(max_length=20, choices=State.choices, default=State.NEW, db_index=True)
    due_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_messages"
    )
    # Bumped by every change a colleague should see before acting (conflict guard).
    version = models.PositiveIntegerField(default=1)
    # The read-lock: valid while claim_expires_at is in the future; no cron releases it.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="claimed_messages"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # Which page load took or last re-took the lease, and when. A reload's new page takes it over
    # before the old page's socket closes; the old page must not release it then.
    claim_page = models.CharField(max_length=40, blank=True)
    claim_renewed_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["mailbox", "uidl"], name="message_unique_uidl")]
        indexes = [
            models.Index(fields=["mailbox", "-received_at", "-id"], name="message_mailbox_recent"),
            models.Index(fields=["assignee", "state"], name="message_assignee_state"),
            # Counters and "open" views only look at messages not done: a small partial index.
            models.Index(
                fields=["mailbox", "-received_at"], condition=~models.Q(state="done"), name="message_open_by_mailbox"
            ),
        ]

    def __str__(self) -> str:
        return self.subject or f"<{self.uidl}>"

    def claim_active(self, now=None) -> bool:
        now = now or timezone.now()
        return bool(self.claimed_by_id and self.claim_expires_at and self.claim_expires_at > now)

    @property
    def integrity_ok(self) -> bool:
        # No header at all is not "ok": the CM always sets it on decrypted KIM mail.
        return bool(self.integrity_results) and all(r == "01" for r in self.integrity_results)

    @property
    def decryption_ok(self) -> bool:
        return bool(self.decryption_results) and all(r == "00" for r in self.decryption_results)

    @property
    def has_security_warning(self) -> bool:
        return bool(self.integrity_results or self.decryption_results) and not (
            self.integrity_ok and self.decryption_ok
        )

    @property
    def is_error_mail(self) -> bool:
        return bool(self.kim_error_codes)


class Attachment(models.Model):
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveIntegerField()
    filename = models.CharField(max_length=500)
    content_type = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_id = models.CharField(max_length=500, blank=True)
    is_inline = models.BooleanField(default=False)

    class Meta:
        ordering = ["message", "position"]
        constraints = [models.UniqueConstraint(fields=["message", "position"], name="attachment_unique_position")]

    def __str__(self) -> str:
        return self.filename


class MessageRead(models.Model):
    """Per-user read state: several people share one mailbox."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="reads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="message_reads")
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="message_read_unique")]

    def __str__(self) -> str:
        return f"{self.user} read {self.message_id}"


class AuditEvent(models.Model):
    """Append-only record of access to patient data and of every change (the manager issue audits these)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=60)
    mailbox = models.ForeignKey(Mailbox, null=True, blank=True, on_delete=models.SET_NULL)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action}"


class AssignmentPeriod(models.Model):
    """Who was responsible for a message, from when to when (the history shown to users)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="assignment_periods")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [
            # A second open period for the same message is impossible, whatever the code does.
            models.UniqueConstraint(
                fields=["message"], condition=models.Q(ended_at__isnull=True), name="assignment_one_open_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} for {self.message_id} since {self.started_at:%Y-%m-%d %H:%M}"


class Note(models.Model):
    """An internal note on a message; never sent to the outside."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    body = models.TextField()
    mentions = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"note by {self.author} on {self.message_id}"


class Notification(models.Model):
    class Kind(models.TextChoices):
        MENTION = "mention", _("Erwähnung")
        ASSIGNED = "assigned", _("Zuweisung")
        LOCK_BROKEN = "lock_broken", _("Sperre aufgehoben")
        WORK_RETURNED = "work_returned", _("Arbeit zurückgegeben")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.ForeignKey(Message, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Rendered in the reader's language when shown: kind + params. `text` is the German fallback.
    params = models.JSONField(default=dict, blank=True)
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    TEXTS = {
        Kind.MENTION: _("%(name)s hat Sie in einer Notiz zu „%(subject)s“ erwähnt."),
        Kind.ASSIGNED: _("%(name)s hat Ihnen „%(subject)s“ zugewiesen."),
        Kind.LOCK_BROKEN: _("%(name)s hat Ihre Sperre auf „%(subject)s“ aufgehoben."),
        Kind.WORK_RETURNED: _(
            "%(name)s kann „%(mailbox)s“ nicht mehr bearbeiten: %(count)s offene Nachrichten sind wieder unzugewiesen."
        ),
    }

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_user_unread")]

    def __str__(self) -> str:
        return f"{self.user}: {self.text}"

    @property
    def display_text(self) -> str:
        template = self.TEXTS.get(self.kind)
        if template is None or "name" not in self.params:
            return self.text
        values = {"subject": "", "mailbox": "", "count": 0, **self.params}
        try:
            text = str(template) % values
        except (TypeError, ValueError):
            return self.text
        return f"{text} – {self.params['note']}" if self.params.get("note") else text


class Presence(models.Model):
    """One open page (socket) of a user on a message. Stale rows are ignored after PRESENCE_TTL and purged."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="presences")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    channel_name = models.CharField(max_length=200, unique=True)
    page_token = models.CharField(max_length=40, blank=True)
    writing = models.BooleanField(default=False)
    last_seen = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.user} on {self.message_id}"


class Absence(models.Model):
    """A user away for a period, with a substitute who gets new assignments meanwhile."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="absences")
    substitute = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="substitutions")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="absence_ends_after_start"
            ),
            models.CheckConstraint(condition=~models.Q(user=models.F("substitute")), name="absence_not_own_substitute"),
        ]

    def __str__(self) -> str:
        return f"{self.user} → {self.substitute} ({self.starts_at:%d.%m.} – {self.ends_at:%d.%m.})"
