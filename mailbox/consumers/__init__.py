"""Live updates as htmx out-of-band swaps.

InboxConsumer (every page): new mail, changed rows, counts, account status, notifications.
MessageConsumer (detail page): all of the above, and presence ("viewing"/"writing"), the read-lock panel,
heartbeat: one socket per page.

Events carry ids only. Every socket starts from its user: before anything is sent, its session, account
and membership are checked — batched with the other sockets of the process that ask at the same moment
(mailbox.liveaccess), so 200 open inboxes cost three queries per event, not 200. List rows wait a moment
(KIMPORTAL_LIVE_ROWS_DELAY) so a burst becomes one check and one frame; a row is rendered once per
audience (language, read or not) per process and event (mailbox.livecache); per-user counts follow after
a pause (KIMPORTAL_LIVE_COUNTS_DELAY). Database work runs on a thread pool of its own.
"""

from __future__ import annotations

from mailbox.consumers.inbox import InboxConsumer
from mailbox.consumers.message import MessageConsumer

__all__ = ["InboxConsumer", "MessageConsumer"]
