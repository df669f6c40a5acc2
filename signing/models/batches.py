"""A signing run: one physician, one card, one job number, many drafts (Stapelsignatur)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render


class SignatureBatch(models.Model):
    class State(models.TextChoices):
        PREPARED = "prepared", _("vorbereitet")
        PIN = "pin", _("PIN-Eingabe")
        SIGNING = "signing", _("wird signiert")
        DONE = "done", _("abgeschlossen")
        CANCELLED = "cancelled", _("abgebrochen")
        FAILED = "failed", _("fehlgeschlagen")

    ACTIVE_STATES = (State.PREPARED, State.PIN, State.SIGNING)

    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signature_batches")
    workplace = models.ForeignKey("signing.Workplace", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=20, choices=State.choices, default=State.PREPARED)
    card_handle = models.CharField(max_length=128, blank=True)
    card_iccsn = models.CharField(max_length=20, blank=True)
    # As the card terminal shows it ("ABC-123"); shown in the page before SignDocument blocks.
    job_number = models.CharField(max_length=7, blank=True)
    # SignDocument calls made so far (each may ask for the PIN again) and how many there will be.
    calls_done = models.PositiveSmallIntegerField(default=0)
    calls_total = models.PositiveSmallIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    signed_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    error_code = models.IntegerField(null=True, blank=True)
    # Why the batch ended without signing all: kept untranslated (kimportal.texts). Pages show it as the reader may
    # see it now (signing.selectors.drafts: a missing document named only to who may see its draft); the admin as
    # error_shown.
    error_text = models.JSONField(blank=True, default=str)
    task_id = models.CharField(max_length=64, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Renewed by the running task every few seconds, also while SignDocument waits for the PIN: a batch whose
    # heartbeat stopped has no worker any more (signing.services.run.batches_recover_stale).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("Signaturvorgang")
        verbose_name_plural = _("Signaturvorgänge")

    def __str__(self) -> str:
        return f"#{self.job_number or '-'} {self.signer} ({self.get_state_display()})"

    @property
    def error_shown(self) -> str:
        return render(self.error_text)

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES

    @property
    def not_signed_count(self) -> int:
        return max(0, self.total - self.signed_count - self.failed_count)


class BatchItem(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("wartet")
        SIGNED = "signed", _("signiert")
        FAILED = "failed", _("fehlgeschlagen")
        NOT_SIGNED = "not_signed", _("nicht signiert")

    batch = models.ForeignKey(SignatureBatch, on_delete=models.CASCADE, related_name="items")
    draft = models.ForeignKey("signing.Draft", on_delete=models.CASCADE, related_name="batch_items")
    position = models.PositiveIntegerField()
    # SignRequest/@RequestID: matches the Konnektor's answer to this document.
    request_id = models.CharField(max_length=64)
    # What the physician saw and confirmed; the task signs exactly these bytes.
    document_version = models.PositiveIntegerField()
    document_sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices, default=State.PENDING)
    code = models.IntegerField(null=True, blank=True)
    # Why it was not signed: kept untranslated (kimportal.texts). Pages show it only to who may see the draft now
    # (signing.selectors.drafts); the admin as text_shown.
    text = models.JSONField(blank=True, default=str)

    class Meta:
        ordering = ["batch", "position"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "draft"], name="batchitem_unique_draft"),
            models.UniqueConstraint(fields=["batch", "request_id"], name="batchitem_unique_request"),
        ]

    def __str__(self) -> str:
        return f"{self.batch_id}/{self.position} {self.state}"

    @property
    def text_shown(self) -> str:
        return render(self.text)
