"""Review before signature (issue 12): each draft's versions, the review round's steps, and which document types
a department (a functional sending mailbox) has reviewed before its physician signs."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from signing.doctypes import document_type_label


class DraftVersion(models.Model):
    """One version of a draft as it was: who made it (or which channel, `via`), when, which fields changed, and
    the full metadata with the document's digest — earlier documents stay in the content-addressed blob store,
    so every version can be shown and compared."""

    draft = models.ForeignKey("signing.Draft", on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # A non-human channel, e.g. "KIS: <client name>"; empty for a change made in the portal.
    via = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Names of the fields that differ from the version before (empty for version 1).
    changed = models.JSONField(default=list, blank=True)
    comment = models.CharField(max_length=2000, blank=True)

    document_type = models.CharField(max_length=30)
    patient_reference = models.CharField(max_length=100)
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    mailbox = models.ForeignKey("mailbox.Mailbox", on_delete=models.PROTECT, related_name="+")
    recipients = models.JSONField(default=list)
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    filename = models.CharField(max_length=255)
    mime_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["draft", "number"]
        verbose_name = _("Fassung")
        verbose_name_plural = _("Fassungen")
        constraints = [
            models.UniqueConstraint(fields=["draft", "number"], name="signing_draftversion_unique_number"),
        ]

    def __str__(self) -> str:
        return f"#{self.draft_id} v{self.number}"

    @property
    def document_type_label(self) -> str:
        return document_type_label(self.document_type)

    @property
    def is_pdf(self) -> bool:
        return self.mime_type == "application/pdf"


class ReviewStep(models.Model):
    """One step of a draft's review round, on one version: asked for, sent back with a comment, approved."""

    class Action(models.TextChoices):
        REQUESTED = "requested", _("zur Prüfung vorgelegt")
        RETURNED = "returned", _("zurückgegeben")
        APPROVED = "approved", _("freigegeben")

    draft = models.ForeignKey("signing.Draft", on_delete=models.CASCADE, related_name="review_steps")
    version = models.PositiveIntegerField()
    action = models.CharField(max_length=20, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    via = models.CharField(max_length=200, blank=True)
    # For REQUESTED: who is asked (may be nobody yet when the department has no default reviewer).
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("Prüfschritt")
        verbose_name_plural = _("Prüfschritte")

    def __str__(self) -> str:
        return f"#{self.draft_id} v{self.version}: {self.action}"


class ReviewRule(models.Model):
    """A department (the sending functional mailbox) has this document type reviewed before it is signed."""

    mailbox = models.ForeignKey(
        "mailbox.Mailbox", on_delete=models.CASCADE, related_name="+", verbose_name=_("Abteilung (Postfach)")
    )
    document_type = models.CharField(_("Dokumenttyp"), max_length=30)  # a code of signing.doctypes
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["mailbox", "document_type"]
        verbose_name = _("Prüfregel")
        verbose_name_plural = _("Prüfregeln")
        constraints = [
            models.UniqueConstraint(fields=["mailbox", "document_type"], name="signing_reviewrule_unique"),
        ]
        # Who may review (with a membership of the department's mailbox): senior physicians, granted per user
        # or group by the administration.
        permissions = [("review_draft", _("Entwürfe vor der Signatur prüfen und freigeben"))]

    def __str__(self) -> str:
        return f"{self.mailbox_id}: {self.document_type}"

    @property
    def document_type_label(self) -> str:
        return document_type_label(self.document_type)
