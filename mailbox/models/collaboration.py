"""Working a shared mailbox: responsibility history, notes, notifications, presence, absences."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from kimportal.texts import render

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise


class AssignmentPeriod(models.Model):
    """Who was responsible for a message, from when to when (the history shown to users)."""

    message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="assignment_periods")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A person's note as typed, or a rule's reason kept untranslated (kimportal.texts): shown as note_text.
    note = models.JSONField(default=str, blank=True)
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

    @property
    def note_text(self) -> str:
        return render(self.note)


class Note(models.Model):
    """An internal note on a message; never sent to the outside."""

    message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="notes")
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
        SLA_OVERDUE = "sla_overdue", _("Frist überschritten")
        # The signing app's (signing.services): a draft to sign, and the review round before the signature.
        SIGNING_QUEUED = "signing_queued", _("Signatur erbeten")
        REVIEW_REQUESTED = "review_requested", _("Prüfung erbeten")
        REVIEW_RETURNED = "review_returned", _("Entwurf zurückgegeben")
        REVIEW_APPROVED = "review_approved", _("Entwurf freigegeben")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    message = models.ForeignKey("Message", null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Rendered in the reader's language when shown: kind + params. `text` is the German fallback.
    params = models.JSONField(default=dict, blank=True)
    text = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    TEXTS: dict[str, StrPromise] = {
        Kind.MENTION: _("%(name)s hat Sie in einer Notiz zu „%(subject)s“ erwähnt."),
        Kind.ASSIGNED: _("%(name)s hat Ihnen „%(subject)s“ zugewiesen."),
        Kind.LOCK_BROKEN: _("%(name)s hat Ihre Sperre auf „%(subject)s“ aufgehoben."),
        Kind.WORK_RETURNED: _(
            "%(name)s kann „%(mailbox)s“ nicht mehr bearbeiten: %(count)s offene Nachrichten sind wieder unzugewiesen."
        ),
        Kind.SLA_OVERDUE: _(
            "„%(mailbox)s“: %(count)s Nachrichten sind länger als %(hours)s Arbeitsstunden unbearbeitet."
        ),
        Kind.SIGNING_QUEUED: _("%(name)s bittet um Ihre Signatur: %(subject)s (%(patient)s)"),
        Kind.REVIEW_REQUESTED: _("%(name)s bittet Sie, „%(subject)s“ vor der Signatur zu prüfen."),
        Kind.REVIEW_RETURNED: _("%(name)s hat „%(subject)s“ zur Überarbeitung zurückgegeben."),
        Kind.REVIEW_APPROVED: _("%(name)s hat „%(subject)s“ zur Signatur freigegeben."),
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
        # A parameter that is a stored text (a routing rule's name and reason) is translated too.
        values = {"subject": "", "mailbox": "", "count": 0, **{k: render(v) for k, v in self.params.items()}}
        try:
            text = str(template) % values
        except (TypeError, ValueError):
            return self.text
        return f"{text} – {values['note']}" if values.get("note") else text


class Presence(models.Model):
    """One open page (socket) of a user on a message. Stale rows are ignored after PRESENCE_TTL and purged."""

    message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="presences")
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
