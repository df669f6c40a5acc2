"""Live updates as htmx out-of-band swaps.

InboxConsumer (every page): new mail, changed rows, counts, account status, notifications.
MessageConsumer (detail page): presence ("viewing"/"writing"), the read-lock panel, heartbeat.

Events carry ids only. Every socket starts from its user: before anything is sent, its session, account
and membership are checked — batched with the other sockets of the process that ask at the same moment
(mailbox.liveaccess), so 200 open inboxes cost three queries per event, not 200. List rows wait a moment
(KIMPORTAL_LIVE_ROWS_DELAY) so a burst becomes one check and one frame; a row is rendered once per
audience (language, read or not) per process and event (mailbox.livecache); per-user counts follow after
a pause (KIMPORTAL_LIVE_COUNTS_DELAY). Database work runs on a thread pool of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from mailbox import selectors
from mailbox.events import mailbox_group, message_group, session_digest, user_group
from mailbox.liveaccess import Ask, batcher
from mailbox.livecache import RenderMemo, row_data
from mailbox.permissions import Action, can

log = logging.getLogger(__name__)

# A page sends a heartbeat every 20 s and a "writing" toggle now and then; beyond this many frames in
# the window, frames are not processed one by one: the newest state is applied when the window allows.
FRAME_BURST = 5
FRAME_WINDOW_SECONDS = 2.0

# Rows rendered for one event, shared by the sockets of this process (language x read state).
_rows: RenderMemo[str] = RenderMemo(ttl=2.0)
# A fetch round of hundreds of mails sends the newest rows live; the rest appear on the next page load.
MAX_ROWS_PER_FRAME = 50
# A list shows at most a page of rows; a socket follows at most this many.
MAX_WATCHED_ROWS = 200

# Socket database work runs on a small thread pool of its own, not on the one thread that Channels'
# default (thread-sensitive) database_sync_to_async shares among all sockets of a process.
_db_threads = ThreadPoolExecutor(
    max_workers=int(getattr(settings, "KIMPORTAL_SOCKET_DB_THREADS", 8)), thread_name_prefix="socket-db"
)


def db(func: Any) -> Any:
    """Run a sync ORM function from a consumer on the socket thread pool (connections closed after use)."""
    return database_sync_to_async(func, thread_sensitive=False, executor=_db_threads)


def _language_from_scope(scope: Mapping[str, Any]) -> str:
    cookies = scope.get("cookies") or {}
    lang = cookies.get(settings.LANGUAGE_COOKIE_NAME, "")
    return lang if lang in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def live_lag_limit() -> float:
    return float(getattr(settings, "KIMPORTAL_LIVE_LAG_LIMIT", 15.0))


def rows_delay() -> float:
    return float(getattr(settings, "KIMPORTAL_LIVE_ROWS_DELAY", 0.15))


# How a queued row is shown; a stronger kind wins when events for one row meet in a burst.
PRESENCE, CHANGED, NEW = 1, 2, 3


def counts_delay() -> float:
    return float(getattr(settings, "KIMPORTAL_LIVE_COUNTS_DELAY", 0.5))


_NO_ROLE = object()


def _frame(text_data: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text_data or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _ids(value: Any) -> set[int]:
    """Ids from a form value ("12,15,17") or a list; anything else is ignored."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return {int(item) for item in items if str(item).strip().isdigit()}


class _PortalConsumer(AsyncWebsocketConsumer):
    joined: list[str]

    async def _authenticate(self) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return False
        self.user = user
        self.language = _language_from_scope(self.scope)
        self.joined = []
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.closed = False
        return True

    async def _join(self, *groups: str) -> None:
        for group in groups:
            if group in self.joined:
                continue
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)

    async def _leave_group(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)
        self.joined.remove(group)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        for group in list(getattr(self, "joined", [])):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def _close(self, code: int) -> None:
        self.closed = True
        await self.close(code=code)

    def _render(self, template: str, context: dict) -> str:
        with translation.override(self.language):
            return render_to_string(template, {"user": self.user, **context})

    async def _check(self, mailbox_id: int | None = None) -> Any:
        """The user's role in the mailbox (or True without one); _NO_ROLE after closing an ended session.

        Logged out elsewhere, session expired, account deactivated: stop sending patient data. The
        check is batched with the other sockets of this process that ask at the same moment.
        """
        answer = await batcher(db).check(Ask(self.user.pk, self.session_key, mailbox_id))
        if not answer.valid:
            await self._close(4401)
            return _NO_ROLE
        return answer.role if mailbox_id is not None else True

    async def _send(self, html: str) -> None:
        if html and not self.closed:
            try:
                await self.send(text_data=html)
            except OSError:
                # The client went away while a delayed update was on its way (uvicorn's ClientDisconnected).
                self.closed = True

    async def dispatch(self, message: dict) -> None:
        """Every event passes here first: a socket that fell behind is closed so that it resyncs.

        The channel layer drops what a slow socket cannot take (its queue is bounded); events that
        arrive long after they were sent say that this socket is behind. Closing with 1013 ("try again later") makes the
        browser reconnect and reload what it shows, instead of showing a silently stale list.
        """
        sent = message.get("at")
        if isinstance(sent, (int, float)) and time.time() - sent > live_lag_limit():
            if not self.closed:
                log.warning("socket %s is %.1f s behind: closing it to resync", self.channel_name, time.time() - sent)
                await self._close(1013)
            return
        await super().dispatch(message)

    async def session_ended(self, event: dict) -> None:
        """The user logged out (in any tab): every socket of that session closes at once."""
        if self.session_key and event.get("session") == session_digest(self.session_key):
            await self._close(4401)


class InboxConsumer(_PortalConsumer):
    async def connect(self) -> None:
        if not await self._authenticate():
            return
        mailbox_ids = await db(selectors.mailbox_ids_for_user)(self.user)
        await self._join(*(mailbox_group(pk) for pk in mailbox_ids), user_group(self.user.pk))
        self.counts_pending = False
        self.pending_rows: dict[int, tuple[dict, int]] = {}
        self.pending_counts = False
        self.rows_scheduled = False
        # The rows the page shows (their changes come through their message groups) and the mailboxes whose
        # new mail it shows on top. Until the page says (a "watch" frame), new mail of all its mailboxes.
        self.watched: set[int] = set()
        self.new_for: set[int] | None = None
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page speaks when its list changed ("watch": the rows it shows, "new": the mailboxes whose new
        mail it shows on top) and after a reconnect ("resync"). Any frame re-checks the session."""
        if await self._check() is _NO_ROLE:
            return
        data = _frame(text_data)
        if "watch" in data or "new" in data:
            await self._watch(_ids(data.get("watch")), _ids(data.get("new")))
        if data.get("resync"):
            await self._send(await db(self._render_nav)(0))

    async def _watch(self, rows: set[int], new_for: set[int]) -> None:
        # Joining a row's group reveals nothing: every event is checked against the user's role before it
        # is sent. The number of rows is bounded like a page.
        rows = set(sorted(rows)[:MAX_WATCHED_ROWS])
        for message_id in self.watched - rows:
            await self._leave_group(message_group(message_id))
        await self._join(*(message_group(message_id) for message_id in sorted(rows - self.watched)))
        self.watched, self.new_for = rows, new_for
        await self._send(f'<span id="live-watching" hidden hx-swap-oob="true" data-rows="{len(rows)}"></span>')

    async def memberships_changed(self, event: dict) -> None:
        """Follow membership changes without a reload: join new mailboxes' groups, leave old ones."""
        if await self._check() is _NO_ROLE:
            return
        mailbox_ids = await db(selectors.mailbox_ids_for_user)(self.user)
        wanted = {mailbox_group(pk) for pk in mailbox_ids} | {user_group(self.user.pk)}
        wanted |= {message_group(message_id) for message_id in self.watched}
        for group in set(self.joined) - wanted:
            await self._leave_group(group)
        await self._join(*sorted(wanted - set(self.joined)))
        await self._send(await db(self._render_nav)(0))

    async def message_created(self, event: dict) -> None:
        if self._shows_new(event["mailbox_id"]):
            self._queue(event, event["message_id"], NEW)
        self._counts_soon()

    async def messages_created(self, event: dict) -> None:
        """A fetch round stored several messages: their rows ride in one frame, with one count refresh."""
        if self._shows_new(event["mailbox_id"]):
            # Oldest first: each row is prepended, so the newest ends on top as in the list.
            for message_id in sorted(event["message_ids"])[-MAX_ROWS_PER_FRAME:]:
                self._queue(event, message_id, NEW)
        self._counts_soon()

    def _shows_new(self, mailbox_id: int) -> bool:
        return self.new_for is None or mailbox_id in self.new_for

    async def message_changed(self, event: dict) -> None:
        if event["message_id"] in self.watched:
            self._queue(event, event["message_id"], CHANGED)

    async def presence_changed(self, event: dict) -> None:
        if event["message_id"] in self.watched:
            self._queue(event, event["message_id"], PRESENCE)

    async def counts_changed(self, event: dict) -> None:
        self._counts_soon()

    async def account_status(self, event: dict) -> None:
        if await self._check(event["mailbox_id"]) in (_NO_ROLE, None):
            return
        await self._send(await db(self._render_nav)(event["mailbox_id"]))

    async def user_notified(self, event: dict) -> None:
        if await self._check() is _NO_ROLE:
            return
        await self._send(await db(self._render_notifications)())

    async def counters_changed(self, event: dict) -> None:
        self._counts_soon()

    def _queue(self, event: dict, message_id: int, kind: int, *, counts: bool = False) -> None:
        """Rows wait a moment before they are sent: a burst (a claim and the presence that follows, a fetch
        round) becomes one access check and one frame. The newest event of a row decides its data; the
        strongest kind (new > changed > presence) decides how it is shown."""
        previous = self.pending_rows.get(message_id)
        strongest = max(kind, previous[1]) if previous else kind
        self.pending_rows[message_id] = (event, strongest)
        self.pending_counts = self.pending_counts or counts
        if not self.rows_scheduled:
            self.rows_scheduled = True
            asyncio.get_running_loop().call_later(rows_delay(), lambda: asyncio.ensure_future(self._flush_rows()))

    async def _flush_rows(self) -> None:
        pending, self.pending_rows, self.rows_scheduled = self.pending_rows, {}, False
        counts, self.pending_counts = self.pending_counts, False
        if self.closed or not pending:
            return
        readable: dict[int, bool] = {}
        for mailbox_id in sorted({event["mailbox_id"] for event, _kind in pending.values()}):
            role = await self._check(mailbox_id)
            if role is _NO_ROLE:
                return
            readable[mailbox_id] = can(role, Action.READ)
        rows = [(mid, event, kind) for mid, (event, kind) in pending.items() if readable.get(event["mailbox_id"])]
        if not rows:
            return
        await self._send(await db(self._render_rows)(rows))
        if counts:
            self._counts_soon()

    def _render_rows(self, rows: list[tuple[int, dict, int]]) -> str:
        return "".join(self._render_row(event, kind, message_id) for message_id, event, kind in rows)

    def _render_row(self, event: dict, kind: int, message_id: int) -> str:
        # Access was checked for this socket; the row's data is read once per event and process.
        data = row_data(event, message_id)
        if data is None:
            return ""
        message, readers = data
        is_read = self.user.pk in readers

        def render() -> str:
            row = message.copy_for_reader(is_read)
            if kind == PRESENCE:
                context = {"message": row, "oob": True, "compact": True}
                return self._render("mailbox/partials/_presence.html", context)
            template = (
                "mailbox/partials/_live_new_message.html"
                if kind == NEW
                else "mailbox/partials/_live_changed_message.html"
            )
            return self._render(template, {"message": row})

        return _rows.get((event.get("seq"), message_id, kind, self.language, is_read), render)

    def _counts_soon(self) -> None:
        """Refresh this user's counts after a short pause; events meanwhile ride along."""
        if self.counts_pending:
            return
        self.counts_pending = True
        asyncio.get_running_loop().call_later(counts_delay(), lambda: asyncio.ensure_future(self._flush_counts()))

    async def _flush_counts(self) -> None:
        self.counts_pending = False
        if self.closed or await self._check() is _NO_ROLE:
            return
        await self._send(await db(self._render_nav)(0))

    def _nav_context(self, mailbox_id: int | None = None) -> dict:
        mailboxes = list(selectors.mailbox_list_for_user(self.user))
        return {
            "mailboxes": mailboxes,
            "mailbox": next((m for m in mailboxes if m.pk == mailbox_id), None),
            "counters": selectors.user_counters(self.user),
        }

    def _render_nav(self, mailbox_id: int) -> str:
        return self._render("mailbox/partials/_live_nav.html", self._nav_context(mailbox_id))

    def _render_notifications(self) -> str:
        counters = selectors.user_counters(self.user)
        return self._render("mailbox/partials/_notification_badge.html", {"counters": counters, "oob": True})


class MessageConsumer(_PortalConsumer):
    """One open detail page: presence, heartbeat (renews the user's lease) and the live lock panel."""

    async def connect(self) -> None:
        if not await self._authenticate():
            return
        self.message_id = int(self.scope["url_route"]["kwargs"]["pk"])
        query = parse_qs((self.scope.get("query_string") or b"").decode("ascii", "replace"))
        self.page_token = (query.get("page") or [""])[0][:40]
        self.frames: list[float] = []
        self.pending_writing: bool | None = None
        self.mailbox_id = await db(self._join_presence)()
        if self.mailbox_id is None:
            await self._close(4404)
            return
        await self._join(message_group(self.message_id), user_group(self.user.pk))
        await self.accept()

    def _join_presence(self) -> int | None:
        from mailbox.services.claims import page_token_valid
        from mailbox.services.presence import presence_join

        message = selectors.message_row_for_user(self.user, self.message_id)
        if message is None:
            return None
        # Only a page the server handed out may speak for a page load (its claim, its leave).
        if not page_token_valid(self.page_token, user=self.user, message_id=self.message_id):
            self.page_token = ""
        presence_join(user=self.user, message=message, channel_name=self.channel_name, page_token=self.page_token)
        return message.mailbox_id

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = json.loads(text_data or "{}")
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        writing = str(data.get("writing", "")).lower() in {"1", "true", "on"}
        if data.get("resync"):
            # Reconnected after a drop: show the lock panel as it is now.
            await self._lock_panel()
        if not self._frame_allowed():
            # Too many frames: remember the newest state and apply it when the window allows.
            if self.pending_writing is None:
                delay = FRAME_WINDOW_SECONDS - (time.monotonic() - self.frames[0])
                asyncio.get_running_loop().call_later(
                    max(0.05, delay), lambda: asyncio.ensure_future(self._flush_frame())
                )
            self.pending_writing = writing
            return
        await self._beat(writing)

    def _frame_allowed(self) -> bool:
        now = time.monotonic()
        self.frames = [t for t in self.frames if now - t < FRAME_WINDOW_SECONDS]
        if len(self.frames) >= FRAME_BURST:
            return False
        self.frames.append(now)
        return True

    async def _flush_frame(self) -> None:
        writing, self.pending_writing = self.pending_writing, None
        if writing is None or self.closed:
            return
        self.frames.append(time.monotonic())
        await self._beat(writing)

    async def _beat(self, writing: bool) -> None:
        from mailbox.services.claims import message_heartbeat

        # Every client frame re-checks the session: a logged-out tab renews nothing.
        if await self._check() is _NO_ROLE:
            return
        await db(message_heartbeat)(
            user=self.user, message_id=self.message_id, channel_name=self.channel_name, writing=writing
        )

    async def disconnect(self, code: int) -> None:
        if getattr(self, "mailbox_id", None) is not None:
            from mailbox.services.claims import message_leave

            await db(message_leave)(user=self.user, message_id=self.message_id, channel_name=self.channel_name)
        await super().disconnect(code)

    async def memberships_changed(self, event: dict) -> None:
        """Removed from the mailbox: the page's socket closes (the page shows it is no longer live)."""
        role = await self._check(self.mailbox_id)
        if role is not _NO_ROLE and not can(role, Action.READ):
            await self._close(4403)

    async def message_changed(self, event: dict) -> None:
        await self._lock_panel()

    async def presence_changed(self, event: dict) -> None:
        await self._lock_panel()

    async def user_notified(self, event: dict) -> None:
        return

    async def counters_changed(self, event: dict) -> None:
        return

    async def _lock_panel(self) -> None:
        role = await self._check(self.mailbox_id)
        if role is _NO_ROLE:
            return
        if not can(role, Action.READ):
            await self._close(4403)
            return
        await self._send(await db(self._render_lock)(role))

    def _render_lock(self, role: str) -> str:
        message = selectors.message_row_for_user(self.user, self.message_id)
        if message is None:
            return ""
        message.role = role
        context = {"message": message, "oob": True, "page_token": self.page_token}
        return self._render("mailbox/partials/_lock_panel.html", context)
