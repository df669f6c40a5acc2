"""Received messages, their attachments, per-user read state, and the Dienstkennung labels."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.functional import Promise, cached_property
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render
from mailbox.models.display import Badge, PresentUser
from mailbox.models.kimresults import (
    LARGE_MESSAGE_REFUSED,
    SecurityAssessment,
    assess_security,
    error_explanations,
    split_cm_note,
)
from mailbox.models.mailboxes import Mailbox, member_roles

if TYPE_CHECKING:
    from mailbox.models.collaboration import AssignmentPeriod, Note


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


class MessageQuerySet(models.QuerySet["Message"]):
    def visible_to(self, user: Any) -> MessageQuerySet:
        if not user.is_authenticated:
            return self.none()
        # The ids first (within a request read once, kimportal.requestscope; in sockets and tasks read now, from a
        # query compiled once): a subquery here cost more to compile than the extra round trip.
        return self.filter(mailbox_id__in=list(member_roles(user)))


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
    # A DSN or CM error mail matched to a sent message (mailbox.services.dsn): it lives on that message's timeline
    # and is no inbox row. A flag, not a join: lists filter it on their index scan.
    is_delivery_report = models.BooleanField(default=False)
    # What the parser had to work around, each kept untranslated (kimportal.texts; a row from before keeps its
    # German sentence), shown as parse_problem_texts.
    parse_problems = models.JSONField(default=list, blank=True)
    # Attachments (not inline images); immutable after ingest, kept here so lists need no join. Stored up to
    # ATTACHMENT_COUNT_MAX (a hostile mail can have more parts): where the number is shown, a message at it is counted.
    attachment_count = models.PositiveSmallIntegerField(default=0)
    ATTACHMENT_COUNT_MAX = 32_767

    # Work state. One responsible person at most: a single column, so the database enforces it.
    state = models.CharField(max_length=20, choices=State.choices, default=State.NEW, db_index=True)
    due_at = models.DateTimeField(null=True, blank=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_messages"
    )
    # Bumped by every change a colleague should see before acting (conflict guard).
    version = models.PositiveIntegerField(default=1)
    # The read-lock: valid while claim_expires_at is in the future; no cron releases it. Its columns are in no
    # index (migration 0023), so that taking, renewing and releasing it are PostgreSQL HOT updates: the row's new
    # version goes on the same page and no index of this wide table is touched.
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="claimed_messages",
        db_index=False,
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # Which page load took or last re-took the lease, and when. A reload's new page takes it over
    # before the old page's socket closes; the old page must not release it then.
    claim_page = models.CharField(max_length=40, blank=True)
    claim_renewed_at = models.DateTimeField(null=True, blank=True)
    # Controlling (dashboards, SLA): when a processor first took the read-lock, and when the message
    # last became "erledigt" (None while it is not done). Stored here so the figures are aggregates
    # over this table, not a replay of the audit trail.
    first_claimed_at = models.DateTimeField(null=True, blank=True)
    done_at = models.DateTimeField(null=True, blank=True)
    # The SLA breach was notified to the owners (once per message).
    sla_notified_at = models.DateTimeField(null=True, blank=True)
    # Retention: a legal hold keeps the content past the mailbox's retention period; once the period
    # ran out, bodies, attachments and the raw message are deleted and this says when.
    legal_hold = models.BooleanField(_("Aufbewahrungssperre"), default=False)
    content_deleted_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    # Not columns: the selectors (mailbox.selectors.messages, mailbox.livecache) set these on the rows
    # they hand to templates, each only where that page needs it.
    is_read: bool
    badge: Badge | None
    present: list[PresentUser]
    url: str
    role: str | None
    attachment_list: list[Attachment]  # the detail page's: the first ones listed (selectors.ATTACHMENTS_SHOWN)
    attachments_more: bool  # the message lists more attachments than attachment_list holds
    attachment_total: int  # how many it lists: attachment_count, or counted when that stopped at its limit
    note_list: list[Note]
    assignment_history: list[AssignmentPeriod]
    readers: list[tuple[str, str, str, datetime]]  # first name, last name, username, read at

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["mailbox", "uidl"], name="message_unique_uidl")]
        indexes = [
            models.Index(fields=["mailbox", "-received_at", "-id"], name="message_mailbox_recent"),
            models.Index(fields=["assignee", "state"], name="message_assignee_state"),
            # Counters and "open" views only look at messages not done: a small partial index. With the id in it,
            # the navigation's counts (on every page) are index-only scans and the "open" list is in index order.
            models.Index(
                fields=["mailbox", "-received_at", "-id"],
                condition=~models.Q(state="done"),
                name="message_open_by_mailbox",
            ),
            # The dashboards' flow figures (done in the last days): without it they read every message ever done.
            models.Index(
                fields=["mailbox", "done_at"], condition=models.Q(state="done"), name="message_done_by_mailbox"
            ),
            # Retention looks only at done messages whose content is still there.
            models.Index(
                fields=["mailbox", "done_at"],
                condition=models.Q(state="done", content_deleted_at__isnull=True),
                name="message_retention_due",
            ),
        ]

    def __str__(self) -> str:
        return self.subject or f"<{self.uidl}>"

    def claim_active(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return bool(self.claimed_by_id and self.claim_expires_at and self.claim_expires_at > now)

    @cached_property
    def security(self) -> SecurityAssessment:
        """The security state from the CM's result headers; the rule is in docs/security-headers.md."""
        return assess_security(
            self.decryption_results,
            self.integrity_results,
            kim_error_codes=self.kim_error_codes,
            dienstkennung=self.dienstkennung,
        )

    @property
    def has_security_warning(self) -> bool:
        return self.security.is_warning

    @property
    def is_error_mail(self) -> bool:
        return bool(self.kim_error_codes)

    @property
    def error_explanations(self) -> list[tuple[str, Promise]]:
        return error_explanations(self.kim_error_codes)

    @property
    def parse_problem_texts(self) -> list[str]:
        """The parse problems in the active language."""
        return [render(problem) for problem in self.parse_problems]

    @property
    def is_large_message_refused(self) -> bool:
        return LARGE_MESSAGE_REFUSED in self.kim_error_codes

    @cached_property
    def text_and_cm_note(self) -> tuple[str, str]:
        """(letter text, the CM's Vermerk). Only mail that carries CM results has a Vermerk: in any
        other mail the same words were written by the sender and stay part of the text."""
        if not (self.decryption_results or self.integrity_results):
            return self.text_body, ""
        return split_cm_note(self.text_body)


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
    # Indexed with the message (Meta): one index serves both the user's reads and deleting a user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="message_reads", db_index=False
    )
    read_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "user"], name="message_read_unique")]
        # A user's reads in message order: the navigation counts the open ones per mailbox by an index-only join.
        indexes = [models.Index(fields=["user", "message"], name="message_read_by_user")]

    def __str__(self) -> str:
        return f"{self.user} read {self.message_id}"
