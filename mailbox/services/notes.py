"""Internal notes on a message, with @mentions that notify colleagues."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import PortalError
from mailbox.models import Membership, Message, Note, Notification
from mailbox.selectors.mailboxes import display_name, mailbox_members, notification_recipients
from mailbox.services.audit import audit_record
from mailbox.services.guard import bump, guarded, short
from mailbox.services.notifications import notify

MENTION = re.compile(r"(?<![\w.@])@([\w][\w.\-]{0,149})")
MAX_NOTE = 10_000


def mention_names(body: str) -> set[str]:
    """The user names a note's text mentions, lower-cased."""
    # "@anna." at the end of a sentence mentions anna: trailing dots and dashes are punctuation.
    return {m.lower().rstrip(".-") for m in MENTION.findall(body)}


# A note posted again within this many seconds, word for word, is the same note (see note_add).
RESENT_WITHIN_SECONDS = 10


@transaction.atomic
def note_add(*, user: Any, message: Message, body: str) -> Note:
    body = body.strip()
    # Zero-width spaces, joiners and direction marks survive strip(): a note of only those would show as empty.
    if not any(unicodedata.category(c)[0] not in "ZC" for c in body):
        raise PortalError(_("Die Notiz ist leer."))
    if len(body) > MAX_NOTE:
        raise PortalError(_("Die Notiz ist zu lang (höchstens 10.000 Zeichen)."))
    # A note is added, never overwrites: a colleague's note (or other change) meanwhile must not refuse it, as two
    # people writing at once would otherwise lose one note. The row lock puts them one after the other.
    current = guarded(user, message, None)
    # The same note by the same person a moment ago is one note sent twice (a double click on a form without
    # JavaScript posts it twice): the first stands. Behind the row lock, so the second of two at once sees the first.
    moment_ago = timezone.now() - timedelta(seconds=RESENT_WITHIN_SECONDS)
    earlier = Note.objects.filter(message=current, author=user, body=body, created_at__gte=moment_ago).first()
    if earlier is not None:
        return earlier
    note = Note.objects.create(message=current, author=user, body=body)
    names = mention_names(body)
    mentioned = [
        u for u in mailbox_members(current.mailbox_id, min_role=Membership.Role.OBSERVER) if u.username.lower() in names
    ]
    if mentioned:
        note.mentions.set(mentioned)
        recipients = [u for u in notification_recipients(current.mailbox_id, mentioned) if u.pk != user.pk]
        notify(
            recipients,
            kind=Notification.Kind.MENTION,
            message=current,
            actor=user,
            params={"name": display_name(user), "subject": short(current.subject)},
        )
    audit_record(actor=user, action="note.added", message=current, note=note.pk, mentions=[u.pk for u in mentioned])
    bump(current, notes=True)
    return note
