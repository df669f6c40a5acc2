"""Notifications: stored per user (kind + parameters, rendered in the reader's language), pushed live."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone, translation

from mailbox import events
from mailbox.models import Message, Notification

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def notify(users: Sequence[User], *, kind: str, message: Message | None, actor: Any, params: dict[str, Any]) -> None:
    # German text kept for the admin and exports; the UI renders params in the reader's language.
    with translation.override("de"):
        fallback = Notification(kind=kind, params=params).display_text
    for user in users:
        Notification.objects.create(
            user=user, kind=kind, message=message, actor=actor, params=params, text=fallback[:500]
        )
        events.broadcast_user_notification(user_id=user.pk)


@transaction.atomic
def notifications_mark_read(*, user: Any, ids: list[int] | None = None) -> int:
    qs = Notification.objects.filter(user=user, read_at__isnull=True)
    if ids is not None:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=timezone.now())
