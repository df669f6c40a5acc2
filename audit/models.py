"""The tamper-evident trail: one append-only, hash-chained row per auditable act.

References to users, mailboxes and messages are plain integer columns with readable snapshots beside them, not
foreign keys: the trail imports no app, and deleting a user or a message never changes or breaks it.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, Self

from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import F, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Upper
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from audit.labels import action_label

_BY_OBJECT = ("actor", "mailbox", "message")


def _ids(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {
        (f"{key}_id" if key in _BY_OBJECT else key): (getattr(value, "pk", value) if key in _BY_OBJECT else value)
        for key, value in kwargs.items()
    }


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """The trail names users, mailboxes and messages by id, not by foreign key; `filter(message=m)`,
    `filter(actor=user)` and `filter(mailbox=box)` still read naturally and compare the objects' ids."""

    def filter(self, *args: Any, **kwargs: Any) -> Self:
        return super().filter(*args, **_ids(kwargs))

    def exclude(self, *args: Any, **kwargs: Any) -> Self:
        return super().exclude(*args, **_ids(kwargs))


class AuditEvent(models.Model):
    # Position in the chain, 1, 2, 3 … Set once when the writer's transaction commits (PostgreSQL: a deferred
    # trigger; SQLite: the writer itself); unique, so two writers can never both take the same place.
    seq = models.BigIntegerField(null=True, blank=True, unique=True, editable=False)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=60, db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_username = models.CharField(max_length=150, blank=True)
    mailbox_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    mailbox_address = models.CharField(max_length=254, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    message_subject = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)
    # SHA-256 over the canonical content (audit.chain.content_hash), over the predecessor's hash and over
    # this event's own link (predecessor hash, seq, content hash).
    content_hash = models.CharField(max_length=64, editable=False)
    prev_hash = models.CharField(max_length=64, blank=True, editable=False)
    hash = models.CharField(max_length=64, blank=True, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            # "What did this person do": a name's events in seq order, so that the search's page and the export's
            # batch read only that name's rows (audit.selectors), however long the trail has grown.
            models.Index(Upper("actor_username"), F("seq"), name="audit_actor_name_seq"),
            # A failed sign-in has no actor, only the name that was tried.
            models.Index(
                Upper(KT("details__username")),
                F("seq"),
                name="audit_tried_name_seq",
                condition=Q(actor_id__isnull=True),
            ),
        ]
        verbose_name = _("Audit-Ereignis")
        verbose_name_plural = _("Audit-Ereignisse")

    def __str__(self) -> str:
        return f"#{self.seq} {self.at:%Y-%m-%d %H:%M:%S} {self.actor_username or '-'} {self.action}"

    @cached_property
    def actor(self) -> Any:
        """The user, while they exist (the trail itself keeps only the id and the name)."""
        return get_user_model().objects.filter(pk=self.actor_id).first() if self.actor_id is not None else None

    @property
    def actor_display(self) -> str:
        """Who: the user's name then, or for a failed sign-in the name that was tried."""
        tried = self.details.get("username") if isinstance(self.details, dict) else None
        return self.actor_username or (str(tried) if tried else "")

    @property
    def action_label(self) -> str:
        return action_label(self.action)


class ChainHead(models.Model):
    """The chain's last link, one row. Appends lock it, so they take their places one after another; and a
    trail cut off at its end no longer matches the head."""

    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"#{self.seq} {self.hash[:12]}"
