"""The page-wide socket of every page: the rows the page shows, new mail, counts, account status,
notifications."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from channels.layers import get_channel_layer
from django.db.models import QuerySet

from kimportal.channel_layer import LogCut
from mailbox import selectors
from mailbox.consumers.base import (
    CHANGED,
    MAX_ROWS_PER_FRAME,
    MAX_WATCHED_ROWS,
    NEW,
    NO_ROLE,
    PRESENCE,
    Budget,
    PortalConsumer,
    counts_delay,
    db,
    frame,
    ids,
    rows_delay,
)
from mailbox.events import live_log, mailbox_group, message_group, user_group
from mailbox.livecache import MISSING, RenderMemo, row_data, row_data_ready
from mailbox.models import Message, member_mailbox_ids
from mailbox.permissions import Action, can
from mailbox.selectors.fetching import fetch_failures_for_user
from mailbox.selectors.messages import MessageFilter, apply_filter

log = logging.getLogger(__name__)

# How far before a list's read its socket replays events (clocks of several servers differ by milliseconds under NTP;
# an event replayed twice only draws a row again).
REPLAY_MARGIN_SECONDS = 0.2
# A list read longer ago than this replays from the database instead (the short logs keep a minute).
REPLAY_WITHIN_SECONDS = 50.0
_REPLAY_KINDS = {"message.changed": CHANGED, "presence.changed": PRESENCE}
# Catch-ups (replays or database reads) one socket may ask for within the window: a page load asks once, a list
# swapped by a filter or a page link once more each.
CATCH_UP_BURST = 10
CATCH_UP_WINDOW_SECONDS = 10.0

# The list views whose first page shows new mail on top (mailbox.views.lists._is_plain).
_NEW_VIEWS = ("all", "open", "unassigned")

# Rows rendered for one event, shared by the sockets of this process (language x read state).
_rows: RenderMemo[str] = RenderMemo(ttl=2.0)
# Whose draft an outgoing.changed event is about (None: not a draft), read once per event and process.
_drafts: RenderMemo[int | None] = RenderMemo(ttl=2.0)
# Rows a socket of this process is rendering, by the events' rows: the sockets that flush the same event at the
# same moment (all that show its row) wait for that one and take the rows ready-made instead of each taking a
# thread hop only to find the memo computing them.
_rendering: dict[tuple, asyncio.Future[None]] = {}


def _draft_author(seq: str | None, outgoing_id: int) -> int | None:
    from mailbox.models import OutgoingMessage

    def read() -> int | None:
        draft = OutgoingMessage.objects.filter(pk=outgoing_id, state=OutgoingMessage.State.DRAFT)
        return draft.values_list("author_id", flat=True).first()

    return _drafts.get((seq, outgoing_id), read)


class InboxConsumer(PortalConsumer):
    async def connect(self) -> None:
        # One hop: the session's user and the mailboxes whose groups the socket joins.
        user, mailbox_ids = await db(self._connect_db)()
        if not await self._authenticated(user):
            return
        await self._join(*(mailbox_group(pk) for pk in mailbox_ids), user_group(self.user.pk))
        self._start_page_wide()
        await self.accept()

    def _start_page_wide(self) -> None:
        """The page-wide part's state, once the user is known and the socket has joined its mailboxes' groups."""
        self.counts_pending = False
        self.pending_rows: dict[int, tuple[dict, int]] = {}
        self.pending_counts = False
        self.rows_scheduled = False
        # The rows the page shows (their changes come through their message groups) and the mailboxes whose
        # new mail it shows on top. Until the page says (a "watch" frame), new mail of all its mailboxes.
        self.watched: set[int] = set()
        self.new_for: set[int] | None = None
        # The newest message the shown list knew when it was rendered ("since"), and the new rows this socket sent
        # (an ordered set, bounded, with when each was queued): what arrived before the socket listened is sent once,
        # and only once.
        self.since: int | None = None
        self.announced: dict[int, float] = {}
        # When the shown list was read ("at"): what changed after it was replayed once.
        self.at: float | None = None
        # When this socket last caught up (a log read or a query): bounded per window.
        self.catch_ups = Budget(CATCH_UP_BURST, CATCH_UP_WINDOW_SECONDS)

    def _connect_db(self) -> tuple[Any, list[int]]:
        user = self._connect_user()
        if user is None or not user.is_authenticated:
            return user, []
        return user, selectors.mailbox_ids_for_user(user)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The page speaks when its list changed ("watch": the rows it shows, "new": the mailboxes whose new
        mail it shows on top) and after a reconnect ("resync"), which re-checks the session before it sends.

        A "watch" frame sends nothing of the mailbox (only how many rows the socket follows) and joining a row's
        group reveals nothing: every event is checked against the session and the user's role before it is
        sent. So a page load's watch frame costs no access check (two per message read in the load bench). Its
        "since" (the newest message the list knew) costs one query on the primary key's newest end: the rows of mail
        stored after it go the way of new-mail events, checked as they are."""
        data = frame(text_data)
        if "watch" in data or "new" in data:
            since = str(data.get("since", "")).strip()
            known = int(since) if since.isdigit() and len(since) <= 18 else None  # a bigint at most
            view = str(data.get("view", ""))
            await self._watch(
                ids(data.get("watch")),
                ids(data.get("new")),
                known,
                view if view in _NEW_VIEWS else "all",
                _read_at(data.get("at")),
            )
        if data.get("resync"):
            if await self._check() is NO_ROLE:
                return
            await self._send(await db(self._render_nav)(0))

    async def _watch(
        self, rows: set[int], new_for: set[int], since: int | None = None, view: str = "all", at: float | None = None
    ) -> None:
        # The number of rows is bounded like a page.
        rows = set(sorted(rows)[:MAX_WATCHED_ROWS])
        own = self._own_groups()
        await self._leave_groups(
            *(g for g in (message_group(pk) for pk in sorted(self.watched - rows)) if g not in own)
        )
        await self._join(*(message_group(message_id) for message_id in sorted(rows - self.watched)))
        self.watched, self.new_for = rows, new_for
        await self._send(f'<span id="live-watching" hidden hx-swap-oob="true" data-rows="{len(rows)}"></span>')
        wants_replay = at is not None and at != self.at
        wants_catch_up = since is not None and since != self.since and bool(new_for)
        if (wants_replay or wants_catch_up) and not self.catch_ups.take():
            # A page swaps its list a few times a minute; a client asking again and again (each a log read or a query)
            # gets its rows' live changes still, and no more catching up until the window allows.
            self.at, self.since = at, since
            return
        # Subscribed now (Redis confirmed it): what was sent between the list's read and this moment is in the short
        # logs, and what is sent from now on arrives.
        if at is not None and wants_replay:
            if self.at is not None:
                self._forget_announced(since=at - REPLAY_MARGIN_SECONDS, shown=rows)
            self.at = at
            if await self._replay(at, rows, new_for if since is not None else set(), view):
                self.since = since
                return
            # The logs cannot tell what came after this list's read: the database does, even for a list that knew
            # the same newest message as the one before it.
            wants_catch_up = since is not None and bool(new_for)
        if since is not None and wants_catch_up:
            self.since = since
            await self._catch_up(since, new_for, rows, view)

    def _own_groups(self) -> set[str]:
        """Groups the socket keeps whatever rows its page shows (a message page's message: MessageConsumer)."""
        return set()

    def _forget_announced(self, *, since: float, shown: set[int]) -> None:
        """The page swapped its list (a page link, a filter, a search) for one read at `since`: the new rows sent after
        that went to the list before it, if they reached the page before the swap, and are gone with it. The new
        list's catch-up sends them again, unless it shows them (portal.js does not add a row the page has twice)."""
        for message_id, queued in list(self.announced.items()):
            if queued >= since and message_id not in shown:
                del self.announced[message_id]

    async def _replay(self, at: float, shown: set[int], new_for: set[int], view: str) -> bool:
        """The list was read at `at`, before this socket listened: the events of its mailboxes sent since then (a
        colleague's claim of a shown row, mail stored meanwhile, also mail whose transaction began earlier and
        committed later than the read) are handled as if they had arrived live. False when the logs cannot tell
        (another channel layer, Redis failing, or a read too long ago): the caller reads the database instead."""
        if time.time() - at > REPLAY_WITHIN_SECONDS:
            return False
        layer: Any = get_channel_layer()
        if not hasattr(layer, "recent"):
            return False
        mailbox_ids = sorted(int(g.split(".", 1)[1]) for g in self.joined if g.startswith("mailbox."))
        try:
            async with asyncio.timeout(2):
                events = await layer.recent([live_log(pk) for pk in mailbox_ids], at - REPLAY_MARGIN_SECONDS - 1)
        except LogCut as cut:
            # A burst filled the window beyond one read (its newest left out, the mail among it), or Redis may have
            # restarted since the read (the logs lost what was written before).
            log.info("the short event logs cannot tell (%s); the list catches up from the database", cut)
            return False
        except Exception:
            log.warning("the short event logs could not be read; the list catches up from the database", exc_info=True)
            return False
        arrived: dict[int, int] = {}
        counts = False
        for event in events:
            if float(event.get("at", 0)) < at - REPLAY_MARGIN_SECONDS or event.get("mailbox_id") not in mailbox_ids:
                continue
            kind = event.get("type")
            if kind in ("message.created", "messages.created"):
                counts = True
                if event["mailbox_id"] in new_for:
                    for message_id in event.get("message_ids") or [event.get("message_id")]:
                        if isinstance(message_id, int) and message_id not in shown:
                            arrived[message_id] = event["mailbox_id"]
            elif kind in _REPLAY_KINDS and event.get("message_id") in shown:
                self._queue(event, event["message_id"], _REPLAY_KINDS[kind])
                counts = counts or bool(event.get("counts"))
            elif kind == "counts.changed":
                counts = True
        fresh = {pk: mailbox for pk, mailbox in arrived.items() if pk not in self.announced}
        if fresh:
            # As the database catch-up: of the list's view, and only while the user is a member.
            for message_id, mailbox_id in sorted(await db(self._of_view)(sorted(fresh), view))[-MAX_ROWS_PER_FRAME:]:
                self._queue({"mailbox_id": mailbox_id, "message_id": message_id}, message_id, NEW)
        if counts:
            self._counts_soon()
        return True

    def _of_view(self, message_ids: list[int], view: str) -> list[tuple[int, int]]:
        """Which of these messages the list's view shows, in mailboxes the user is still a member of."""
        qs: QuerySet[Message] = Message.objects.filter(
            mailbox_id__in=member_mailbox_ids(self.user), is_delivery_report=False, pk__in=message_ids
        )
        return list(apply_filter(qs, self.user, MessageFilter(view=view)).values_list("pk", "mailbox_id"))

    async def _catch_up(self, since: int, new_for: set[int], shown: set[int], view: str) -> None:
        """The list was rendered before this socket listened: mail stored in between was told to nobody (a letter
        nobody reads in a shared inbox). Its rows are queued as its message_created events would have been, and
        pass the same access check; the rows the page shows and those this socket already sent are left out."""
        arrived = await db(self._arrived_since)(since, new_for, shown, view)
        fresh = [(message_id, mailbox_id) for message_id, mailbox_id in arrived if message_id not in self.announced]
        # Oldest first: each row is prepended, so the newest ends on top as in the list.
        for message_id, mailbox_id in sorted(fresh):
            self._queue({"mailbox_id": mailbox_id, "message_id": message_id}, message_id, NEW)
        if fresh:
            self._counts_soon()

    def _arrived_since(self, since: int, mailbox_ids: set[int], shown: set[int], view: str) -> list[tuple[int, int]]:
        """The newest messages of the list's view after `since` in these mailboxes, as far as the user is still a
        member: one query over the primary key's newest end. The view matters: "since" is the newest row the list
        showed, and mail stored earlier that its view leaves out (done, assigned) is no news."""
        limit = MAX_ROWS_PER_FRAME + sum(1 for message_id in shown if message_id > since)
        qs: QuerySet[Message] = Message.objects.filter(
            mailbox_id__in=member_mailbox_ids(self.user), is_delivery_report=False
        )
        qs = apply_filter(
            qs.filter(mailbox_id__in=sorted(mailbox_ids), pk__gt=since), self.user, MessageFilter(view=view)
        )
        found = qs.order_by("-pk").values_list("pk", "mailbox_id")[:limit]
        return [(message_id, mailbox_id) for message_id, mailbox_id in found if message_id not in shown][
            :MAX_ROWS_PER_FRAME
        ]

    async def memberships_changed(self, event: dict) -> None:
        """Follow membership changes without a reload: join new mailboxes' groups, leave old ones."""
        if await self._check() is NO_ROLE:
            return
        mailbox_ids = await db(selectors.mailbox_ids_for_user)(self.user)
        wanted = {mailbox_group(pk) for pk in mailbox_ids} | {user_group(self.user.pk)}
        wanted |= {message_group(message_id) for message_id in self.watched} | self._own_groups()
        await self._leave_groups(*sorted(set(self.joined) - wanted))
        await self._join(*sorted(wanted - set(self.joined)))
        await self._send(await db(self._render_nav)(0))

    async def message_created(self, event: dict) -> None:
        # A row the catch-up sent already (its event came late, after the query had found the message) is not
        # prepended twice.
        if self._shows_new(event["mailbox_id"]) and event["message_id"] not in self.announced:
            self._queue(event, event["message_id"], NEW)
        self._counts_soon()

    async def messages_created(self, event: dict) -> None:
        """A fetch round stored several messages: their rows ride in one frame, with one count refresh."""
        if self._shows_new(event["mailbox_id"]):
            # Oldest first: each row is prepended, so the newest ends on top as in the list.
            for message_id in sorted(event["message_ids"])[-MAX_ROWS_PER_FRAME:]:
                if message_id not in self.announced:
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
        if await self._check(event["mailbox_id"]) in (NO_ROLE, None):
            return
        await self._send(await db(self._render_nav)(event["mailbox_id"]))

    async def user_notified(self, event: dict) -> None:
        if await self._check() is NO_ROLE:
            return
        await self._send(await db(self._render_notifications)())

    async def counters_changed(self, event: dict) -> None:
        self._counts_soon()

    async def outgoing_changed(self, event: dict) -> None:
        """A sent message, draft or outbox entry of one of the user's mailboxes changed. Only ids travel: the page
        (compose.js) re-reads the timeline or list it shows through its own view, the user's selectors decide."""
        if not can(await self._check(event["mailbox_id"]), Action.READ):
            return
        outgoing_id, mailbox_id = int(event["outgoing_id"]), int(event["mailbox_id"])
        seq = "".join(c for c in str(event.get("seq", ""))[:40] if c.isalnum())
        # A draft is its author's alone: colleagues' pages do not follow its autosaves (one read per event).
        author = await db(_draft_author)(event.get("seq"), outgoing_id)
        if author is not None and author != self.user.pk:
            return
        await self._send(
            f'<span id="outgoing-live" hidden hx-swap-oob="true" data-outgoing="{outgoing_id}" '
            f'data-mailbox="{mailbox_id}" data-seq="{seq}"></span>'
        )

    def _queue(self, event: dict, message_id: int, kind: int, *, counts: bool = False) -> None:
        """Rows wait a moment before they are sent: a burst (a claim and the presence that follows, a fetch
        round) becomes one access check and one frame. The newest event of a row decides its data; the
        strongest kind (new > changed > presence) decides how it is shown."""
        previous = self.pending_rows.get(message_id)
        strongest = max(kind, previous[1]) if previous else kind
        if kind == NEW:
            self.announced[message_id] = time.time()
            if len(self.announced) > MAX_WATCHED_ROWS:
                del self.announced[next(iter(self.announced))]
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
            if role is NO_ROLE:
                return
            readable[mailbox_id] = can(role, Action.READ)
        rows = [(mid, event, kind) for mid, (event, kind) in pending.items() if readable.get(event["mailbox_id"])]
        if not rows:
            return
        await self._send(await self._rows_html(rows))
        if counts:
            self._counts_soon()

    async def _rows_html(self, rows: list[tuple[int, dict, int]]) -> str:
        """The first socket of this process renders an event's rows (in a thread: it reads the database); the
        others wait for it and find them ready (another audience, a language or read state, renders its own)."""
        html = self._rows_ready(rows)
        if html is not None:
            return html
        key = tuple((event.get("seq"), message_id, kind) for message_id, event, kind in rows)
        if any(seq is None for seq, _message_id, _kind in key):  # never shared (RenderMemo)
            return await db(self._render_rows)(rows)
        loop = asyncio.get_running_loop()
        first = _rendering.get(key)
        if first is not None and first.get_loop() is loop:
            await asyncio.wait([first])
            html = self._rows_ready(rows)
            return html if html is not None else await db(self._render_rows)(rows)
        mine = _rendering[key] = loop.create_future()
        try:
            return await db(self._render_rows)(rows)
        finally:
            if _rendering.get(key) is mine:
                del _rendering[key]
            mine.set_result(None)

    def _render_rows(self, rows: list[tuple[int, dict, int]]) -> str:
        return "".join(self._render_row(event, kind, message_id) for message_id, event, kind in rows)

    def _rows_ready(self, rows: list[tuple[int, dict, int]]) -> str | None:
        """The rows' HTML if every piece is already in this process's memo, else None (nothing computed)."""
        parts = []
        for message_id, event, kind in rows:
            data = row_data_ready(event, message_id)
            if data is MISSING:
                return None
            if data is None:  # gone: _render_row renders nothing either
                continue
            _message, readers = data
            html = _rows.peek(self._row_key(event, message_id, kind, self.user.pk in readers))
            if html is MISSING:
                return None
            parts.append(html)
        return "".join(parts)

    def _row_key(self, event: dict, message_id: int, kind: int, is_read: bool) -> tuple:
        return (event.get("seq"), message_id, kind, self.language, is_read)

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

        return _rows.get(self._row_key(event, message_id, kind, is_read), render)

    def _counts_soon(self) -> None:
        """Refresh this user's counts after a short pause; events meanwhile ride along."""
        if self.counts_pending:
            return
        self.counts_pending = True
        asyncio.get_running_loop().call_later(counts_delay(), lambda: asyncio.ensure_future(self._flush_counts()))

    async def _flush_counts(self) -> None:
        self.counts_pending = False
        if self.closed or await self._check() is NO_ROLE:
            return
        await self._send(await db(self._render_nav)(0))

    def _nav_context(self, mailbox_id: int | None = None) -> dict:
        mailboxes = list(selectors.mailbox_list_for_user(self.user))
        return {
            "mailboxes": mailboxes,
            "mailbox": next((m for m in mailboxes if m.pk == mailbox_id), None),
            "counters": selectors.user_counters(self.user),
            "fetch_failures": fetch_failures_for_user(self.user, mailbox_id) if mailbox_id else [],
        }

    def _render_nav(self, mailbox_id: int) -> str:
        return self._render("mailbox/partials/_live_nav.html", self._nav_context(mailbox_id))

    def _render_notifications(self) -> str:
        counters = selectors.user_counters(self.user)
        return self._render("mailbox/partials/_notification_badge.html", {"counters": counters, "oob": True})


def _read_at(value: Any) -> float | None:
    """A list's "at" (seconds since the epoch, as the server wrote it), or None: not a number, or not now-ish."""
    try:
        at = float(str(value)[:20])
    except ValueError:
        return None
    return at if math.isfinite(at) and abs(time.time() - at) < 86_400 else None
