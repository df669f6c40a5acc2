"""Komfortsignatur (gemSpec_Kon 4.1.8.1.5, SignatureService 7.5): one PIN entry at the card terminal unlocks the
physician's eHBA for a number of signatures within a time limit, bound to a fresh UserId per activation.

An activation is one physician, one card, one workstation and its own UUID (never reused: a unique column, and
the Konnektor refuses a UserId used in its last 1000 activations). A batch that signs with it records a
ComfortUse: the live page says "keine PIN-Eingabe nötig", or why it fell back to the PIN."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render


class ComfortActivation(models.Model):
    class State(models.TextChoices):
        ACTIVATING = "activating", _("PIN-Eingabe")
        ACTIVE = "active", _("aktiv")
        ENDED = "ended", _("beendet")
        FAILED = "failed", _("fehlgeschlagen")

    class End(models.TextChoices):
        DEACTIVATED = "deactivated", _("beendet von Ihnen")
        LOGOUT = "logout", _("beendet bei der Abmeldung")
        WORKPLACE = "workplace", _("beendet: anderer Arbeitsplatz")
        CARD = "card", _("beendet: eHBA gezogen oder gewechselt")
        EXPIRED = "expired", _("abgelaufen")
        EXHAUSTED = "exhausted", _("aufgebraucht")
        CANCELLED = "cancelled", _("abgebrochen")
        INTERRUPTED = "interrupted", _("unterbrochen")
        ACCOUNT = "account", _("beendet: Konto oder eHBA-Zuordnung geändert")
        KONNEKTOR = "konnektor", _("beendet am Konnektor")

    LIVE_STATES = (State.ACTIVATING, State.ACTIVE)

    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="comfort_activations")
    workplace = models.ForeignKey("signing.Workplace", on_delete=models.PROTECT, related_name="+")
    # Context.UserId of this activation and of every SignDocument that uses it: a fresh UUID, never reused.
    user_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state = models.CharField(max_length=20, choices=State.choices, default=State.ACTIVATING)
    end_reason = models.CharField(max_length=20, choices=End.choices, blank=True)
    # The card the PIN unlocked: a new handle means the card was pulled (the Konnektor ends the session then).
    card_handle = models.CharField(max_length=128, blank=True)
    card_iccsn = models.CharField(max_length=20, blank=True)
    # GetSignatureMode's answer, as last read (checked_at).
    remaining_count = models.PositiveSmallIntegerField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    error_code = models.IntegerField(null=True, blank=True)
    # Why it failed or ended, kept untranslated (kimportal.texts; an older row: its German sentence), shown
    # through signing.services.comfort.end_text.
    error_text = models.JSONField(blank=True, default=str)
    task_id = models.CharField(max_length=64, blank=True)
    # The sign-in session that asked for it: when that session ends without a logout (browser closed, idle), the
    # sweep (signing.services.comfort.comfort_sweep) ends the activation as a logout would.
    session_key = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("Komfortsignatur")
        verbose_name_plural = _("Komfortsignaturen")
        constraints = [
            # One live activation per physician: two tabs pressing "Aktivieren" at once get one, not two.
            models.UniqueConstraint(
                fields=["signer"],
                condition=Q(state__in=["activating", "active"]),
                name="comfort_one_live_per_signer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.signer} {self.get_state_display()} ({self.created_at:%Y-%m-%d %H:%M})"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES


class ComfortUse(models.Model):
    """A batch signed with an activation: how many documents without a PIN, and why (if) it fell back to it."""

    batch = models.OneToOneField("signing.SignatureBatch", on_delete=models.CASCADE, related_name="comfort_use")
    activation = models.ForeignKey(ComfortActivation, on_delete=models.PROTECT, related_name="uses")
    signed_count = models.PositiveIntegerField(default=0)
    # Set when the activation ended during the batch: the rest of the documents asked for the PIN. Kept
    # untranslated (kimportal.texts), shown as fallback_shown.
    fallback_text = models.JSONField(blank=True, default=str)
    fallback_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("Nutzung der Komfortsignatur")
        verbose_name_plural = _("Nutzungen der Komfortsignatur")

    def __str__(self) -> str:
        return f"{self.batch_id} ← {self.activation_id}"

    @property
    def fallback_shown(self) -> str:
        return render(self.fallback_text)

    @property
    def in_effect(self) -> bool:
        return self.fallback_at is None
