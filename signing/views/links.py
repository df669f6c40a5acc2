"""Where signing's notifications lead (mailbox.extensions' notification links): the draft's page. The link is
built from the notification's params without a query; the draft page reads through the user's selector, so a
user who may not (or no longer) see the draft gets 404 there and the notifications page reveals nothing more
than the notification's own text."""

from __future__ import annotations

from django.urls import reverse

from mailbox.models import Notification

SIGNING_NOTIFICATION_KINDS = (
    Notification.Kind.SIGNING_QUEUED,
    Notification.Kind.REVIEW_REQUESTED,
    Notification.Kind.REVIEW_RETURNED,
    Notification.Kind.REVIEW_APPROVED,
)


def notification_draft_link(notification: Notification) -> str | None:
    draft = (notification.params or {}).get("draft") if isinstance(notification.params, dict) else None
    # bool is an int in Python; a draft id is a positive int (JSON may hold anything).
    if isinstance(draft, bool) or not isinstance(draft, int) or draft <= 0:
        return None
    return reverse("signing:draft-detail", args=[draft])
