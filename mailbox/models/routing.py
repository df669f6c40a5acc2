"""Routing rules per mailbox: new mail matched by Dienstkennung, sender or subject is assigned, set or filed.

Rules run in order inside the transaction that stores the messages (mailbox.services.routing), so a
message is routed exactly once, by the rules as they stood when it was stored.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from mailbox.models.mailboxes import Mailbox
from mailbox.models.messages import Message


class MailboxQueue(models.Model):
    """A named sub-queue ("Ablage") of a mailbox, e.g. "Aufnahme": messages are filed into one, the inbox filters."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="queues")
    name = models.CharField(_("Ablage"), max_length=80)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["mailbox", "name"], name="mailbox_queue_unique_name")]
        verbose_name = _("Ablage")
        verbose_name_plural = _("Ablagen")

    def __str__(self) -> str:
        return self.name


class QueuedMessage(models.Model):
    """The queue a message is filed in (at most one): a row of its own, so the message table stays as it is."""

    message = models.OneToOneField(Message, on_delete=models.CASCADE, primary_key=True, related_name="queue_entry")
    queue = models.ForeignKey(MailboxQueue, on_delete=models.CASCADE, related_name="entries")
    rule = models.ForeignKey("RoutingRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    filed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.message_id} in {self.queue_id}"


class RoutingRule(models.Model):
    """If every filled condition matches a new message: assign it, set its state and/or file it into a queue."""

    class Assign(models.TextChoices):
        NOBODY = "", _("niemandem zuweisen")
        USER = "user", _("einer bestimmten Person")
        ROUND_ROBIN = "round_robin", _("reihum an anwesende Mitglieder")
        LEAST_OPEN = "least_open", _("an das anwesende Mitglied mit der wenigsten offenen Arbeit")

    POOL_MODES = (Assign.ROUND_ROBIN, Assign.LEAST_OPEN)

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="routing_rules")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(_("Name"), max_length=100)
    is_active = models.BooleanField(_("aktiv"), default=True)

    # Conditions: every filled one must match; at least one is filled (constraint below).
    dienstkennung = models.CharField(_("Dienstkennung"), max_length=200, blank=True)
    sender_address = models.CharField(_("Absenderadresse"), max_length=320, blank=True)
    sender_domain = models.CharField(_("Absenderdomäne"), max_length=255, blank=True)
    telematik_id = models.CharField(_("Telematik-ID des Absenders"), max_length=128, blank=True)
    subject_words = models.CharField(_("Wörter im Betreff"), max_length=300, blank=True)

    # Actions.
    assign = models.CharField(_("Zuweisen"), max_length=20, choices=Assign.choices, blank=True, default="")
    assign_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A group in use by a rule cannot be deleted: with SET_NULL the rule quietly handed mail to every member.
    assign_group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    set_state = models.CharField(_("Status setzen"), max_length=20, choices=Message.State.choices, blank=True)
    queue = models.ForeignKey(MailboxQueue, null=True, blank=True, on_delete=models.SET_NULL, related_name="rules")
    stop_after_match = models.BooleanField(_("danach keine weiteren Regeln"), default=True)

    # The round-robin cursor: whom this rule gave the last message. Written only by routing, under a row
    # lock (SELECT … FOR UPDATE) in the storing transaction, so two workers never hand out the same turn.
    last_assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    # Set by the rules list (mailbox.selectors.routing.rule_list): the rule's person can no longer work the mailbox.
    person_gone: bool

    class Meta:
        ordering = ["mailbox", "position", "id"]
        indexes = [models.Index(fields=["mailbox", "position"], name="routing_rule_mailbox_position")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(
                    dienstkennung="", sender_address="", sender_domain="", telematik_id="", subject_words=""
                ),
                name="routing_rule_has_a_condition",
            ),
        ]
        verbose_name = _("Verteilregel")
        verbose_name_plural = _("Verteilregeln")

    def __str__(self) -> str:
        return f"{self.position}. {self.name}"

    @property
    def is_pool(self) -> bool:
        return self.assign in self.POOL_MODES
