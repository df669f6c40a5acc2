"""Drafts waiting for a physician's qualified signature (QES), and the signatures made on them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render
from mailbox.models import member_roles
from signing.doctypes import document_type_label
from signing.texts import scoped_stored


class DraftQuerySet(models.QuerySet["Draft"]):
    def visible_to(self, user: Any) -> DraftQuerySet:
        """Drafts the user may see: as author, intended signer or chosen reviewer, and only while a member of the
        draft's sending mailbox (its department). Someone who leaves the department loses its drafts at once,
        everywhere (lists, pages, files, sockets, actions): having written or been chosen for a draft is not a
        right of its own. A letter is patient data: managers administer (eHBA mappings, workplaces) and read no
        letter that is not theirs, as they read no message without a membership. A draft all of whose people left
        its mailbox is found by the mailbox's owners through signing.services.orphans (take over or withdraw).

        Reads start here (views, consumers, services), so a foreign pk is simply not found (404)."""
        if not getattr(user, "is_authenticated", False) or not user.is_active:
            return self.none()
        # The memberships are read now (once per HTTP request; every time in sockets and tasks).
        return self.filter(
            models.Q(author=user) | models.Q(signer=user) | models.Q(reviewer=user),
            mailbox_id__in=list(member_roles(user)),
        )


class Draft(models.Model):
    """One document (a letter, an eAU …) with its letter's metadata, editable until it is signed.

    `version` grows with every change of document or metadata: the sign form carries the version and the
    document's SHA-256 the physician saw, and a batch refuses a draft that changed since (what is signed is
    what was shown). Issue 12 (review with versions, drafts from the KIS) keeps each version as its own row
    (DraftVersion) and fills source, external_id and review_state; the queue reads them already.
    """

    class State(models.TextChoices):
        DRAFT = "draft", _("Entwurf")
        SIGNING = "signing", _("wird signiert")
        # Signed and checked: waits for the outbox (the send path comes with its own issue; see
        # KIMPORTAL_SIGNING_AUTO_SEND).
        SIGNED = "signed", _("signiert – wartet auf Versand")
        SENT = "sent", _("signiert – im Postausgang")
        FAILED = "failed", _("fehlgeschlagen")
        # Taken back by its author or the KIS before it was signed: out of the queue, its history kept.
        WITHDRAWN = "withdrawn", _("zurückgezogen")

    class Source(models.TextChoices):
        PORTAL = "portal", _("Portal")
        KIS = "kis", _("KIS")

    class Review(models.TextChoices):
        NONE = "none", _("keine Prüfung")
        PENDING = "pending", _("in Prüfung")
        RETURNED = "returned", _("zurückgegeben")
        APPROVED = "approved", _("freigegeben")

    # States in which the draft is in the queue: it may be edited and (again) signed.
    OPEN_STATES = (State.DRAFT, State.FAILED)

    document_type = models.CharField(_("Dokumenttyp"), max_length=30)  # a code of signing.doctypes
    patient_reference = models.CharField(_("Patient"), max_length=100)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="signing_drafts_written"
    )
    signer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="signing_drafts_to_sign",
        verbose_name=_("Unterzeichner"),
    )
    # The KIM addresses the signed letter goes to.
    recipients = models.JSONField(_("Empfänger"), default=list)
    subject = models.CharField(_("Betreff"), max_length=200)
    body = models.TextField(_("Nachrichtentext"), blank=True)
    mailbox = models.ForeignKey(
        "mailbox.Mailbox", on_delete=models.PROTECT, related_name="+", verbose_name=_("Absender-Postfach")
    )
    # The document: a blob in the content-addressed store (mailbox.storage), named by its SHA-256.
    filename = models.CharField(_("Dateiname"), max_length=255)
    mime_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)

    state = models.CharField(_("Status"), max_length=20, choices=State.choices, default=State.DRAFT)
    version = models.PositiveIntegerField(default=1)
    # Why the last signing attempt did not sign it, kept untranslated (kimportal.texts; an older row: its German
    # sentence), shown as last_error_text; and the Konnektor's code.
    last_error = models.JSONField(blank=True, default=str)
    last_error_code = models.IntegerField(null=True, blank=True)

    # Issue 12: drafts from the KIS (idempotent by the KIS's own id) and the review round before signature.
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.PORTAL)
    external_id = models.CharField(max_length=200, blank=True)
    review_state = models.CharField(
        _("Prüfung"), max_length=20, choices=Review.choices, default=Review.NONE, db_index=True
    )
    # Who is asked to review (signing.services.review): a member of the sending mailbox with the permission
    # signing.review_draft, by default the signer. Null while nobody is chosen or no review applies.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="signing_drafts_to_review",
        verbose_name=_("Prüfer"),
    )
    # The version the reviewer approved: only exactly this version may be signed (a change needs approval again).
    approved_version = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)
    signed_at = models.DateTimeField(null=True, blank=True)
    # The message the signed letter left as (KIMPORTAL_SIGNING_AUTO_SEND): its timeline says whether it arrived.
    outgoing = models.ForeignKey(
        "mailbox.OutgoingMessage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = DraftQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("Entwurf")
        verbose_name_plural = _("Entwürfe")
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"],
                condition=~models.Q(external_id=""),
                name="signing_draft_unique_external_id",
            ),
        ]
        indexes = [models.Index(fields=["signer", "state"], name="signing_draft_signer_state")]

    def __str__(self) -> str:
        return f"{self.document_type_label}: {self.subject} ({self.patient_reference})"

    @property
    def document_type_label(self) -> str:
        return document_type_label(self.document_type)

    @property
    def last_error_scoped(self) -> Any:
        """The reason as this draft's readers may see it: a batch stopped for a missing document names that file on its
        own draft only. Rows written before that rule gave every draft of the batch the named reason; read back, they
        keep the name only where it is this draft's own file."""
        return scoped_stored(self.last_error, drafts={self.pk}, filenames={self.filename})

    @property
    def last_error_text(self) -> str:
        return render(self.last_error_scoped)

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @property
    def needs_approval(self) -> bool:
        """Under review and not approved at exactly its current version: not signable."""
        if self.review_state == self.Review.NONE:
            return False
        return self.review_state != self.Review.APPROVED or self.approved_version != self.version

    @property
    def is_pdf(self) -> bool:
        return self.mime_type == "application/pdf"


class Signature(models.Model):
    """A QES made on one version of a draft, checked locally before it is used."""

    class Format(models.TextChoices):
        PADES = "pades", _("PAdES (signiertes PDF)")
        CADES = "cades", _("CAdES (abgesetzte Signatur, .p7s)")

    draft = models.ForeignKey(Draft, on_delete=models.CASCADE, related_name="signatures")
    batch_item = models.OneToOneField(
        "signing.BatchItem", null=True, blank=True, on_delete=models.SET_NULL, related_name="signature"
    )
    format = models.CharField(max_length=10, choices=Format.choices)
    # The signed PDF (PAdES) or the detached CMS (CAdES), in the blob store.
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    # What was signed: the draft's version and document digest at the time.
    document_version = models.PositiveIntegerField()
    document_sha256 = models.CharField(max_length=64)
    signer_certificate = models.BinaryField()  # DER of the card's C.QES certificate
    signed_at = models.DateTimeField(default=timezone.now)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Empty when the local check passed; else why it did not (the signature is then not used).
    verification_error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-signed_at", "-id"]
        verbose_name = _("Signatur")
        verbose_name_plural = _("Signaturen")

    def __str__(self) -> str:
        return f"{self.get_format_display()} #{self.draft_id} v{self.document_version}"

    @property
    def verified(self) -> bool:
        return self.verified_at is not None and not self.verification_error

    @property
    def download_name(self) -> str:
        if self.format == self.Format.PADES:
            return self.draft.filename
        return f"{self.draft.filename}.p7s"
