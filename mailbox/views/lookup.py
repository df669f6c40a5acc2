"""Objects by id through the user's selectors: a foreign id is a 404, never a 403 that confirms it exists."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import Http404

from mailbox import selectors
from mailbox.models import Mailbox, Message

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def mailbox_or_404(user: User, pk: int) -> Mailbox:
    try:
        return selectors.mailbox_get_for_user(user, pk)
    except Mailbox.DoesNotExist as exc:
        raise Http404 from exc


def message_or_404(user: User, pk: int) -> Message:
    try:
        return selectors.message_get_for_user(user, pk)
    except Message.DoesNotExist as exc:
        raise Http404 from exc
