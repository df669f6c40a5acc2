"""Signatures on received letters and what the Konnektor said about them (VerifyDocument).

One row per signed document of a received message: a signed PDF (PAdES), a document with its detached
signature file beside it (.p7s, CAdES detached) or a signed file with the document inside (.p7m, CAdES
enveloping). The row is updated in place when the check is repeated; the audit trail keeps every check.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render
from mailbox.models import Message


class ReceivedSignature(models.Model):
    class Kind(models.TextChoices):
        PADES = "pades", _("signiertes PDF (PAdES)")
        CADES_DETACHED = "cades_detached", _("Signaturdatei (CAdES, .p7s)")
        CADES_ENVELOPING = "cades_enveloping", _("signierte Datei (CAdES, .p7m)")

    class Status(models.TextChoices):
        PENDING = "pending", _("wird geprüft")
        VALID = "valid", _("gültig")
        INVALID = "invalid", _("ungültig")
        # The Konnektor answered INCONCLUSIVE (e.g. revocation status unknown): a result, not a failure to ask.
        INCONCLUSIVE = "inconclusive", _("nicht prüfbar")
        # The Konnektor could not be asked (unreachable, refused the call) or the bytes are gone: retried later.
        UNVERIFIABLE = "unverifiable", _("nicht prüfbar")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="received_signatures")
    kind = models.CharField(_("Art"), max_length=20, choices=Kind.choices)
    # Attachment.position of the signed document (PAdES: the PDF; detached: the document; enveloping: the .p7m).
    document_position = models.PositiveIntegerField()
    # Attachment.position of the detached signature (.p7s); None for PAdES and enveloping CAdES.
    signature_position = models.PositiveIntegerField(null=True, blank=True)
    filename = models.CharField(_("Datei"), max_length=500)
    status = models.CharField(_("Ergebnis"), max_length=20, choices=Status.choices, default=Status.PENDING)
    # The Konnektor's HighLevelResult as it said it (VALID, INVALID, INCONCLUSIVE), empty while none.
    result = models.CharField(max_length=20, blank=True)
    # Kept untranslated (kimportal.texts; the Konnektor's own words and an older row's sentence as written), shown
    # as reason_text.
    reason = models.JSONField(_("Grund"), blank=True, default=str)
    signer_name = models.CharField(_("Signiert von"), max_length=300, blank=True)
    signer_certificate = models.BinaryField(null=True, blank=True)
    signing_time = models.DateTimeField(_("Signiert am"), null=True, blank=True)
    is_qes = models.BooleanField(_("qualifizierte Signatur"), default=False)
    checked_at = models.DateTimeField(_("geprüft am"), null=True, blank=True)
    # Automatic tries while the Konnektor cannot be asked; next_try_at is when the next one is due (None: none).
    attempts = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message", "document_position", "kind"]
        verbose_name = _("empfangene Signatur")
        verbose_name_plural = _("empfangene Signaturen")
        constraints = [
            models.UniqueConstraint(
                fields=["message", "kind", "document_position"], name="received_signature_unique_document"
            ),
        ]
        indexes = [
            # The retry sweep reads only the few rows waiting for the Konnektor.
            models.Index(
                fields=["next_try_at"],
                name="received_signature_retry_due",
                condition=models.Q(next_try_at__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename}: {self.status}"

    @property
    def reason_text(self) -> str:
        return render(self.reason)
