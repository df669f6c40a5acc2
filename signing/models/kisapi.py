"""Drafts from the KIS (issue 12): the client systems allowed to submit drafts over the HTTP API, their tokens,
the link from a client's own document id to the draft, and the callbacks announcing state changes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render


class KisClient(models.Model):
    """A client system (a KIS, a department's letter software) that submits drafts for signature.

    Its scope is a set of departments, i.e. sending mailboxes (Draft.mailbox): it may submit, read and change
    drafts of these only. Its callback secret is encrypted at rest (mailbox.crypto): the portal needs it in clear
    to sign each callback, so it cannot be stored hashed like the tokens."""

    name = models.CharField(_("Name"), max_length=100, unique=True)
    mailboxes = models.ManyToManyField(
        "mailbox.Mailbox", related_name="+", blank=True, verbose_name=_("Abteilungen (Absender-Postfächer)")
    )
    callback_url = models.URLField(_("Rückruf-URL"), max_length=500, blank=True)
    callback_secret = models.TextField(blank=True)  # Fernet token (mailbox.crypto), never shown after creation
    is_active = models.BooleanField(_("aktiv"), default=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("KIS-Anbindung")
        verbose_name_plural = _("KIS-Anbindungen")

    def __str__(self) -> str:
        return self.name


class KisToken(models.Model):
    """An API token of a client system. Only its SHA-256 is stored: the token is 256 random bits, so a fast
    hash is as safe as a slow one and keeps every API call to one indexed lookup. Shown once, at creation.

    Every token expires (`expires_at`, chosen when it is issued, at most two years): a token copied into a KIS
    configuration, a ticket or a script is not valid forever, and the operations page warns before a connection
    loses its last valid one."""

    client = models.ForeignKey(KisClient, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    # The token's first characters, to tell tokens apart on the page and in the audit (never enough to use it).
    prefix = models.CharField(_("Anfang"), max_length=20)
    created_at = models.DateTimeField(_("erzeugt"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(_("widerrufen"), null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_used_at = models.DateTimeField(_("zuletzt benutzt"), null=True, blank=True)
    expires_at = models.DateTimeField(_("gültig bis"))

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("KIS-Token")
        verbose_name_plural = _("KIS-Tokens")

    def __str__(self) -> str:
        return f"{self.client} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: Any = None) -> bool:
        return self.expires_at <= (now or timezone.now())

    @property
    def is_valid(self) -> bool:
        """Accepted by the API now: neither revoked nor expired."""
        return self.revoked_at is None and not self.is_expired()


class KisDraft(models.Model):
    """A draft a client system submitted, under the client's own document id (unique per client: a replayed
    submission finds it). Also what the callbacks last announced about it."""

    client = models.ForeignKey(KisClient, on_delete=models.PROTECT, related_name="drafts")
    draft = models.OneToOneField("signing.Draft", on_delete=models.CASCADE, related_name="kis")
    document_id = models.CharField(max_length=100)
    # SHA-256 over the last accepted submission (metadata and document): the same again is a replay (200).
    submission_digest = models.CharField(max_length=64)
    # What the last callback said (state, review state, version); a difference is a change to announce.
    announced_state = models.CharField(max_length=20, blank=True)
    announced_review = models.CharField(max_length=20, blank=True)
    announced_version = models.PositiveIntegerField(default=0)
    # A final state (sent, withdrawn) was announced: the sweep no longer looks at it.
    finished = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("Entwurf aus dem KIS")
        verbose_name_plural = _("Entwürfe aus dem KIS")
        constraints = [
            models.UniqueConstraint(fields=["client", "document_id"], name="signing_kisdraft_unique_document"),
        ]
        indexes = [
            models.Index(fields=["client"], condition=models.Q(finished=False), name="signing_kisdraft_open"),
        ]

    def __str__(self) -> str:
        return f"{self.client}: {self.document_id}"


class KisCallback(models.Model):
    """One state change to announce to a client system's callback URL: kept until delivered (retried with
    backoff) or given up. Carries ids and states only, never patient data."""

    class State(models.TextChoices):
        PENDING = "pending", _("ausstehend")
        DELIVERED = "delivered", _("zugestellt")
        FAILED = "failed", _("aufgegeben")

    client = models.ForeignKey(KisClient, on_delete=models.CASCADE, related_name="callbacks")
    link = models.ForeignKey(KisDraft, on_delete=models.CASCADE, related_name="callbacks")
    payload = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # Why the last attempt failed, kept untranslated (kimportal.texts; an older row: its sentence as written), shown
    # as last_error_text.
    last_error = models.JSONField(default=str, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("KIS-Rückruf")
        verbose_name_plural = _("KIS-Rückrufe")
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(state="pending"),
                name="signing_kiscallback_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.client} #{self.pk} ({self.state})"

    @property
    def last_error_text(self) -> str:
        return render(self.last_error)
