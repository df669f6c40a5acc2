"""Reads, always starting from the user. Modules by subject; the names most callers use are re-exported.

messages   lists, filters, search, detail, attachments
mailboxes  mailboxes, counters, members, notifications, people
presence   who has a message open
pagination keyset pages
"""

from __future__ import annotations

from mailbox.dienstkennung import badge_for, dienstkennung_badges
from mailbox.models.display import PresentUser
from mailbox.permissions import can, user_role
from mailbox.selectors.mailboxes import (
    absence_list_for_user,
    display_name,
    mailbox_get_for_user,
    mailbox_ids_for_user,
    mailbox_list_for_user,
    mailbox_member_choices,
    mailbox_members,
    mailbox_owners,
    mailbox_queue_choices,
    membership_list,
    notification_list_for_user,
    notification_recipients,
    notifications_visible_to,
    substitute_candidates,
    user_counters,
)
from mailbox.selectors.messages import (
    SORTS,
    MessageFilter,
    attachment_get_for_user,
    attachment_page_for_user,
    detail_url_pattern,
    message_detail_for_user,
    message_detail_lists,
    message_detail_row_for_user,
    message_get_for_user,
    message_list_for_user,
    message_lock_and_role_for_user,
    message_lock_for_user,
    message_out_of_reach,
    message_ref_for_user,
    message_row_for_user,
    note_list_for_user,
)
from mailbox.selectors.outbox import (
    ThreadItem,
    Timeline,
    acknowledgement_for,
    drafts_for_user,
    outgoing_get_for_user,
    outgoing_list_for_user,
    outgoing_timeline,
    sendable_mailboxes_for_user,
    thread_for_user,
)
from mailbox.selectors.pagination import PAGE_SIZE, KeysetPage
from mailbox.selectors.presence import PRESENCE_TTL_SECONDS, presence_for_messages

__all__ = [
    "PAGE_SIZE",
    "PRESENCE_TTL_SECONDS",
    "SORTS",
    "KeysetPage",
    "MessageFilter",
    "PresentUser",
    "ThreadItem",
    "Timeline",
    "absence_list_for_user",
    "acknowledgement_for",
    "attachment_get_for_user",
    "attachment_page_for_user",
    "badge_for",
    "can",
    "detail_url_pattern",
    "dienstkennung_badges",
    "display_name",
    "drafts_for_user",
    "mailbox_get_for_user",
    "mailbox_ids_for_user",
    "mailbox_list_for_user",
    "mailbox_member_choices",
    "mailbox_members",
    "mailbox_owners",
    "mailbox_queue_choices",
    "membership_list",
    "message_detail_for_user",
    "message_detail_lists",
    "message_detail_row_for_user",
    "message_get_for_user",
    "message_list_for_user",
    "message_lock_and_role_for_user",
    "message_lock_for_user",
    "message_out_of_reach",
    "message_ref_for_user",
    "message_row_for_user",
    "note_list_for_user",
    "notification_list_for_user",
    "notification_recipients",
    "notifications_visible_to",
    "outgoing_get_for_user",
    "outgoing_list_for_user",
    "outgoing_timeline",
    "presence_for_messages",
    "sendable_mailboxes_for_user",
    "substitute_candidates",
    "thread_for_user",
    "user_counters",
    "user_role",
]
