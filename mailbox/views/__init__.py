"""Views by page: lists, one message and its work, files, people. Thin: a form parses, one service writes."""

from __future__ import annotations

from mailbox.views.files import attachment_download, message_html, message_raw
from mailbox.views.lists import inbox, mailbox_fetch_now, mailbox_messages, mine
from mailbox.views.people import (
    absence_end,
    absences,
    mailbox_member_remove,
    mailbox_members_view,
    notifications,
    notifications_read,
)
from mailbox.views.work import (
    message_assign,
    message_attachments,
    message_break_lock_view,
    message_claim_view,
    message_detail,
    message_note,
    message_release_view,
    message_state,
    message_take,
    message_unassign,
)

__all__ = [
    "absence_end",
    "absences",
    "attachment_download",
    "inbox",
    "mailbox_fetch_now",
    "mailbox_member_remove",
    "mailbox_members_view",
    "mailbox_messages",
    "message_assign",
    "message_attachments",
    "message_break_lock_view",
    "message_claim_view",
    "message_detail",
    "message_html",
    "message_note",
    "message_raw",
    "message_release_view",
    "message_state",
    "message_take",
    "message_unassign",
    "mine",
    "notifications",
    "notifications_read",
]
