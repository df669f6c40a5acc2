"""The mailbox app's models, one module per subject; import them from here."""

from __future__ import annotations

from mailbox.models.accounts import KimAccount, build_username
from mailbox.models.collaboration import (
    Absence,
    AssignmentPeriod,
    Note,
    Notification,
    Presence,
)
from mailbox.models.fetching import FetchFailure
from mailbox.models.mailboxes import (
    Mailbox,
    MailboxQuerySet,
    Membership,
    member_mailbox_ids,
    member_q,
    member_roles,
    memberships_in_force,
)
from mailbox.models.messages import Attachment, DienstkennungLabel, Message, MessageQuerySet, MessageRead
from mailbox.models.outbox import (
    DeliveryAttempt,
    DeliveryReport,
    OutgoingAttachment,
    OutgoingMessage,
    OutgoingRecipient,
)
from mailbox.models.routing import MailboxQueue, QueuedMessage, RoutingRule

__all__ = [
    "Absence",
    "AssignmentPeriod",
    "Attachment",
    "DeliveryAttempt",
    "DeliveryReport",
    "DienstkennungLabel",
    "FetchFailure",
    "KimAccount",
    "Mailbox",
    "MailboxQuerySet",
    "MailboxQueue",
    "Membership",
    "Message",
    "MessageQuerySet",
    "MessageRead",
    "Note",
    "Notification",
    "OutgoingAttachment",
    "OutgoingMessage",
    "OutgoingRecipient",
    "Presence",
    "QueuedMessage",
    "RoutingRule",
    "build_username",
    "member_mailbox_ids",
    "member_q",
    "member_roles",
    "memberships_in_force",
]
