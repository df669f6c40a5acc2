"""Sent mail: drafts, the durable outbox, delivery attempts and per-recipient delivery state.

A message is stored before anything is sent (state "queued", its MIME bytes in the blob store and its
Message-ID fixed), so a retry sends the very same bytes. How a message is never lost and never sent
twice, also when a worker dies in the middle of SMTP, is described in docs/sending.md.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render
from mailbox.models.mailboxes import Mailbox, member_roles
from mailbox.models.messages import Message


class OutgoingMessageQuerySet(models.QuerySet["OutgoingMessage"]):
    def visible_to(self, user: Any) -> OutgoingMessageQuerySet:
        if not user.is_authenticated:
            return self.none()
        # As MessageQuerySet.visible_to: every member of the mailbox sees what it sent (the "Gesendet" view).
        return self.filter(mailbox_id__in=list(member_roles(user)))


class OutgoingMessage(models.Model):
    """A message written in the portal: a draft until it is queued, then the outbox entry until delivered."""

    class Kind(models.TextChoices):
        NEW = "new", _("Neue Nachricht")
        REPLY = "reply", _("Antwort")
        REPLY_ALL = "reply_all", _("Antwort an alle")
        FORWARD = "forward", _("Weiterleitung")
        ACKNOWLEDGEMENT = "acknowledgement", _("Eingangsbestätigung")

    class State(models.TextChoices):
        DRAFT = "draft", _("Entwurf")
        QUEUED = "queued", _("in Warteschlange")
        # Queued, but its mailbox or KIM account is switched off: kept, not sent, until it is on again.
        HELD = "held", _("zurückgehalten")
        SENDING = "sending", _("wird gesendet")
        SENT = "sent", _("versendet")
        DELIVERED = "delivered", _("zugestellt")
        PARTIALLY_DELIVERED = "partially_delivered", _("teilweise zugestellt")
        FAILED = "failed", _("fehlgeschlagen")
        UNCERTAIN = "uncertain", _("Zustellung ungewiss")

    # States in which the message is out of the sender's hands; only a DSN or a person changes them further.
    FINAL_STATES = (State.DELIVERED, State.PARTIALLY_DELIVERED, State.FAILED)

    mailbox = models.ForeignKey(Mailbox, on_delete=models.PROTECT, related_name="outgoing")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="outgoing_messages"
    )
    # A draft whose author can no longer work the mailbox (left it, lost the role, account switched off): the
    # mailbox's owners see it and delete it or take it over (mailbox.services.compose.outgoing_drafts_return).
    author_left_at = models.DateTimeField(null=True, blank=True)
    kind = models.CharField(_("Art"), max_length=20, choices=Kind.choices, default=Kind.NEW)
    # The received message this answers or forwards (reply, reply-all, forward, acknowledgement).
    in_reply_to = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="outgoing_replies"
    )
    # The header values, fixed when the draft is started: the thread is followed by them, not by the row.
    in_reply_to_header = models.CharField(max_length=998, blank=True)
    references = models.TextField(blank=True)

    subject = models.TextField(_("Betreff"), blank=True)
    body = models.TextField(_("Text"), blank=True)
    dienstkennung = models.CharField(_("Dienstkennung"), max_length=200, default="KIM-Mail;Default;V1.0")
    to = models.JSONField(_("An"), default=list, blank=True)
    cc = models.JSONField(_("Kopie"), default=list, blank=True)
    # RFC 3461: ask the Fachdienst for delivery status notifications (gematik: request them, e.g. for eAU).
    request_dsn = models.BooleanField(_("Zustellbestätigung anfordern"), default=True)

    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT, db_index=True)
    # Assigned when queued; a UUID on a fixed pseudo-domain: unique, no host name, no personal data (gematik).
    message_id = models.CharField(max_length=200, blank=True)
    # The exact bytes handed to the CM (blob store), built once when queued: every attempt sends these.
    raw_sha256 = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    # The last failure or uncertainty, translated when shown (kimportal.texts; a row from before keeps its German
    # sentence). The outbox and the timeline show it as last_error_text.
    last_error = models.JSONField(default=str, blank=True)
    next_try_at = models.DateTimeField(null=True, blank=True)
    # Attempts made before the latest "Erneut senden": a person's decision to send again starts a new round, whose
    # backoff begins at 30 s and whose limit is MAX_ATTEMPTS tries again (mailbox.services.outbox).
    tries_before = models.PositiveIntegerField(default=0, db_default=0)

    # Only one worker delivers a message at a time; a dead worker's lease runs out (see docs/sending.md).
    lease_token = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    # Bumped by every change a colleague should see before acting (conflict guard, as on Message).
    version = models.PositiveIntegerField(default=1)
    # A failed or uncertain send is somebody's job: claimed like a received message.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="claimed_outgoing"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = OutgoingMessageQuerySet.as_manager()

    # Not columns: selectors set these on the rows they hand to templates.
    attachment_list: list[OutgoingAttachment]
    recipient_list: list[OutgoingRecipient]

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["message_id"], condition=~models.Q(message_id=""), name="outgoing_unique_message_id"
            ),
        ]
        indexes = [
            models.Index(fields=["mailbox", "state", "-created_at"], name="outgoing_mailbox_state"),
            models.Index(
                fields=["next_try_at"], condition=models.Q(state__in=["queued", "sending"]), name="outgoing_due"
            ),
        ]
        verbose_name = _("Ausgehende Nachricht")
        verbose_name_plural = _("Ausgehende Nachrichten")

    def __str__(self) -> str:
        return self.subject or f"<{self.message_id or self.pk}>"

    @property
    def is_draft(self) -> bool:
        return self.state == self.State.DRAFT

    @property
    def recipients(self) -> list[str]:
        return [*self.to, *self.cc]

    @property
    def content_hash(self) -> str:
        """A fingerprint of what a text save writes (sender, recipients, Dienstkennung, subject, text): a page's save
        is a conflict only when these changed since the page loaded them, not when a file was added meanwhile."""
        fields = [self.mailbox_id, self.dienstkennung, self.subject, self.body, list(self.to), list(self.cc)]
        fields.append(self.request_dsn)
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()[:32]

    @property
    def is_uncertain(self) -> bool:
        return self.state == self.State.UNCERTAIN

    @property
    def last_error_text(self) -> str:
        return render(self.last_error)


class OutgoingAttachment(models.Model):
    """A file of a draft (blob store). A forwarded original is a complete message/rfc822 attachment."""

    outgoing = models.ForeignKey(OutgoingMessage, on_delete=models.CASCADE, related_name="attachments")
    position = models.PositiveIntegerField()
    filename = models.CharField(max_length=500)
    content_type = models.CharField(max_length=200)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # The original of a forward: sent as message/rfc822, inline (gematik: never as quoted text).
    is_forwarded_original = models.BooleanField(default=False)

    class Meta:
        ordering = ["outgoing", "position"]
        constraints = [
            models.UniqueConstraint(fields=["outgoing", "position"], name="outgoing_attachment_unique_position")
        ]

    def __str__(self) -> str:
        return self.filename


class OutgoingRecipient(models.Model):
    """Delivery state of one recipient: versendet → zugestellt / fehlgeschlagen (from DSNs and CM error mails)."""

    class State(models.TextChoices):
        QUEUED = "queued", _("in Warteschlange")
        SENT = "sent", _("versendet")
        DELIVERED = "delivered", _("zugestellt")
        DELAYED = "delayed", _("verzögert")
        FAILED = "failed", _("fehlgeschlagen")
        UNCERTAIN = "uncertain", _("ungewiss")

    class Field(models.TextChoices):
        TO = "to", _("An")
        CC = "cc", _("Kopie")

    outgoing = models.ForeignKey(OutgoingMessage, on_delete=models.CASCADE, related_name="recipient_rows")
    address = models.CharField(max_length=320)
    field = models.CharField(max_length=2, choices=Field.choices, default=Field.TO)
    state = models.CharField(max_length=20, choices=State.choices, default=State.QUEUED)
    # For the timeline, translated when shown (kimportal.texts); status_code is the RFC 3463 code (5.1.1) or the CM's
    # error code (4004).
    reason = models.JSONField(default=str, blank=True)
    status_code = models.CharField(max_length=40, blank=True)
    # The DSN or CM error mail this state came from (a received message of the same mailbox).
    report = models.ForeignKey(Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["outgoing", "id"]
        constraints = [
            models.UniqueConstraint(fields=["outgoing", "address"], name="outgoing_recipient_unique_address")
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.state})"

    @property
    def reason_text(self) -> str:
        return render(self.reason)


class DeliveryAttempt(models.Model):
    """One SMTP dialogue with the CM for an outgoing message.

    ``final_dot_at`` is committed *before* the end-of-data sequence is written to the socket: an attempt
    with it and without an answer may have been delivered, and is never repeated automatically.
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", _("läuft")
        SENT = "sent", _("vom Clientmodul angenommen")
        TEMPORARY = "temporary", _("vorübergehender Fehler")
        PERMANENT = "permanent", _("dauerhafter Fehler")
        UNCERTAIN = "uncertain", _("Ergebnis unbekannt")
        ABORTED = "aborted", _("abgebrochen vor dem Versand")

    outgoing = models.ForeignKey(OutgoingMessage, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    final_dot_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.RUNNING)
    smtp_code = models.PositiveIntegerField(null=True, blank=True)
    smtp_text = models.TextField(blank=True)
    # Translated when shown (kimportal.texts), as OutgoingMessage.last_error.
    error = models.JSONField(default=str, blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["outgoing", "number"]
        constraints = [models.UniqueConstraint(fields=["outgoing", "number"], name="delivery_attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.outgoing_id}: {self.outcome}"

    @property
    def error_text(self) -> str:
        return render(self.error)


class DeliveryReport(models.Model):
    """A received DSN or CM error mail that was matched to a sent message (so it is no ordinary inbox mail)."""

    class Kind(models.TextChoices):
        DSN = "dsn", _("Zustellbenachrichtigung")
        ERROR_MAIL = "error_mail", _("Fehlermeldung des Clientmoduls")

    message = models.OneToOneField(Message, on_delete=models.CASCADE, related_name="delivery_report")
    outgoing = models.ForeignKey(OutgoingMessage, on_delete=models.CASCADE, related_name="reports")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.kind} for {self.outgoing_id}"
