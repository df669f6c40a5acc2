"""What every live socket shares: authentication, the batched access check, lag detection, the thread pool
for database work, and sending that tolerates a client that just left."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.typing import WebSocketDisconnectEvent
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import translation

from kimportal import requestmetrics
from kimportal.unavailable import database_unreachable, judge_where_raised, outage_text
from kimportal.wsauth import resolved_user, user_ready
from mailbox import events
from mailbox.events import session_digest
from mailbox.liveaccess import Ask, batcher

log = logging.getLogger(__name__)

# A page sends a heartbeat every 20 s and a "writing" toggle now and then; beyond this many frames in
# the window, frames are not processed one by one: the newest state is applied when the window allows.
FRAME_BURST = 5
FRAME_WINDOW_SECONDS = 2.0

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
    """Run a sync ORM function from a consumer on the socket thread pool (connections closed after use). Its error is
    judged there (outage or bug), where the connection it used is (kimportal.unavailable)."""
    return database_sync_to_async(_judged(func), thread_sensitive=False, executor=_db_threads)


def _judged(func: Any) -> Any:
    @functools.wraps(func)
    def judging(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            judge_where_raised(exc)
            raise

    return judging


async def scope_user(scope: Mapping[str, Any]) -> Any:
    """The scope's user, read on the sockets' database threads if it was not yet (kimportal.wsauth)."""
    value = scope.get("user")
    if user_ready(value):
        return resolved_user(value)
    return await db(resolved_user)(value)


def db_events(func: Any) -> Any:
    """As db(), and the events its transactions send on commit are published from the socket's event loop afterwards
    (mailbox.events.collected): no hop to the event sender's thread and back per event, and the database thread is
    free again before Redis answers. They are published when the function raised, too (what committed happened)."""

    judging = _judged(func)

    def collecting(*args: Any, **kwargs: Any) -> tuple[Any, list[tuple[str, dict]], BaseException | None]:
        with events.collected() as sent:
            try:
                return judging(*args, **kwargs), sent, None
            except Exception as exc:
                return None, sent, exc

    run = db(collecting)

    async def call(*args: Any, **kwargs: Any) -> Any:
        result, sent, error = await run(*args, **kwargs)
        await events.publish(sent)
        if error is not None:
            raise error
        return result

    return call


def language_from_scope(scope: Mapping[str, Any]) -> str:
    cookies = scope.get("cookies") or {}
    lang = cookies.get(settings.LANGUAGE_COOKIE_NAME, "")
    return lang if lang in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def live_lag_limit() -> float:
    return float(getattr(settings, "KIMPORTAL_LIVE_LAG_LIMIT", 15.0))


def rows_delay() -> float:
    return float(getattr(settings, "KIMPORTAL_LIVE_ROWS_DELAY", 0.05))


# How a queued row is shown; a stronger kind wins when events for one row meet in a burst.
PRESENCE, CHANGED, NEW = 1, 2, 3


def counts_delay() -> float:
    return float(getattr(settings, "KIMPORTAL_LIVE_COUNTS_DELAY", 0.5))


NO_ROLE = object()

# The sockets each session holds open in this process. A browser holds one per open page, so the limit allows
# dozens of tabs; a script opening thousands with one cookie (each costing memory, subscriptions and events) is
# refused instead. Per process: nginx's per-address limits would hurt a terminal server, where a whole ward shares
# one address.
_open_per_session: Counter[str] = Counter()


def max_sockets_per_session() -> int:
    return int(getattr(settings, "KIMPORTAL_MAX_SOCKETS_PER_SESSION", 100))


# The sockets this process holds open (counted as _open_per_session counts them). A worker is one event loop: past
# its share of a server's users (docs/deploy.md) every further socket slows every page and socket it serves, so a
# socket beyond the limit is refused with 1013 ("try again later"), on which the browser backs off and reconnects,
# perhaps to a less busy worker.
_open_in_process = 0


def max_sockets_per_worker() -> int:
    return int(getattr(settings, "KIMPORTAL_MAX_SOCKETS_PER_WORKER", 1000))


class Budget:
    """At most `burst` uses within `window` seconds: a socket's frames, its catch-ups."""

    def __init__(self, burst: int, window: float) -> None:
        self.burst, self.window = burst, window
        self.used: list[float] = []

    def take(self) -> bool:
        """Use one if the window allows (True), else nothing (False)."""
        now = time.monotonic()
        self.used = [t for t in self.used if now - t < self.window]
        if len(self.used) >= self.burst:
            return False
        self.used.append(now)
        return True

    def free_in(self) -> float:
        """Seconds until the oldest use leaves the window."""
        return self.window - (time.monotonic() - self.used[0]) if self.used else 0.0

    def note(self) -> None:
        """A use made anyway (what waited for the window)."""
        self.used.append(time.monotonic())


def frame(text_data: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text_data or "{}")
    # RecursionError: "[[[[…" nested deeper than the decoder goes must not end the socket's consumer.
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def ids(value: Any) -> set[int]:
    """Ids from a form value ("12,15,17") or a list; anything else is ignored."""
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else []
    return {int(item) for item in items if str(item).strip().isdigit()}


class PortalConsumer(AsyncWebsocketConsumer):
    joined: list[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The groups this socket is in (a consumer may join one before it knows its user: MessageConsumer).
        self.joined = []

    @property
    def metrics_kind(self) -> str:
        """The socket's kind in /metrics: "inbox" for InboxConsumer."""
        return type(self).__name__.removesuffix("Consumer").lower()

    async def websocket_connect(self, message: Any) -> None:
        # Before the socket's session is read or a group joined: a full worker spends nothing on it. Connects still
        # in their first hop are not counted yet; the limit may be passed by those few.
        if _open_in_process >= max_sockets_per_worker():
            log.warning("socket refused: this process holds %s sockets", _open_in_process)
            self.closed = True
            requestmetrics.socket_refused(self.metrics_kind, 1013)
            # Accepted, then closed: refused during its handshake the browser would see 1006, not "try again later".
            await self.accept()
            await self.close(code=1013)
            return
        try:
            await super().websocket_connect(message)
        except Exception as exc:
            if not database_unreachable(exc):
                raise
            # PostgreSQL restarting (kimportal.unavailable): "try again later" (1013), on which the browser backs off
            # and reconnects, instead of an error of the application per connect (a traceback, then 1011/1006).
            log.warning("database unavailable, %s socket closed with 1013: %s", self.metrics_kind, outage_text(exc))
            self.closed = True
            requestmetrics.socket_refused(self.metrics_kind, 1013)
            if not getattr(self, "accepted", False):
                await self.accept()
            await self.close(code=1013)

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        self.accepted = True
        await super().accept(subprotocol, headers)

    async def _authenticate(self) -> bool:
        """Read the socket's user (one hop; see _connect_user for doing it within the consumer's own first hop)."""
        return await self._authenticated(await scope_user(self.scope))

    def _connect_user(self) -> Any:
        """The socket's user, on a database thread: a consumer whose connect reaches the database anyway reads it
        there (kimportal.wsauth) and passes it to _authenticated."""
        return resolved_user(self.scope.get("user"))

    async def _authenticated(self, user: Any) -> bool:
        if user is None or not user.is_authenticated:
            # Signed out (logged out elsewhere, expired): accepted, then closed with 4401, as at the socket limit.
            # Refused during the handshake, the browser sees 1006 and htmx reconnects with backoff for as long as the
            # tab is open; 4401 after the handshake it takes as final, and the page tells the user to sign in again
            # (portal.js). The socket counts for no session; a group it joined is left when it ends.
            self.closed = True
            requestmetrics.socket_refused(self.metrics_kind, 4401)
            await self.accept()
            await self.close(code=4401)
            return False
        self.user = user
        self.language = language_from_scope(self.scope)
        self.session_key = getattr(self.scope.get("session"), "session_key", None)
        self.closed = False
        holder = self.session_key or f"user-{user.pk}"
        if _open_per_session[holder] >= max_sockets_per_session():
            log.warning(
                "socket refused: session of user %s holds %s sockets in this process",
                user.pk,
                max_sockets_per_session(),
            )
            self.closed = True
            requestmetrics.socket_refused(self.metrics_kind, 4429)
            # Accepted, then closed: a socket refused during its handshake reaches the browser as 1006, on which
            # htmx reconnects again and again; 4429 after the handshake it takes as final.
            await self.accept()
            await self.close(code=4429)
            return False
        global _open_in_process
        _open_per_session[holder] += 1
        _open_in_process += 1
        self.counted_for = holder
        requestmetrics.socket_opened(self.metrics_kind)
        return True

    def _uncount(self) -> None:
        global _open_in_process
        holder = getattr(self, "counted_for", None)
        if holder is None:
            return
        self.counted_for = None
        _open_in_process -= 1
        requestmetrics.socket_closed(self.metrics_kind)
        _open_per_session[holder] -= 1
        if _open_per_session[holder] <= 0:
            del _open_per_session[holder]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # However the socket ends (closed by either side, the worker stopping), it no longer counts.
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._uncount()
            # A handler that raised ends the consumer without websocket_disconnect: its groups are left here, or the
            # process would keep the dead socket as a member (and stay subscribed for it) for as long as it runs.
            joined = list(getattr(self, "joined", None) or [])
            if joined and getattr(self, "channel_layer", None) is not None:
                with contextlib.suppress(Exception):
                    await self._leave_groups(*joined)

    async def websocket_receive(self, message: Any) -> None:
        # A socket this side closed (refused at the limit, its session ended) takes no more frames: a client may have
        # sent some before it saw the close, and a refused socket never set up what they would act on.
        if getattr(self, "closed", False):
            return
        await super().websocket_receive(message)

    async def _join(self, *groups: str) -> None:
        new = [group for group in dict.fromkeys(groups) if group not in self.joined]
        if not new:
            return
        # The Redis layer takes a page's worth of groups at once (kimportal.channel_layer).
        add_many = getattr(self.channel_layer, "group_add_many", None)
        if add_many is not None:
            await add_many(new, self.channel_name)
        else:
            for group in new:
                await self.channel_layer.group_add(group, self.channel_name)
        self.joined.extend(new)

    async def _leave_groups(self, *groups: str) -> None:
        gone = [group for group in dict.fromkeys(groups) if group in self.joined]
        if not gone:
            return
        discard_many = getattr(self.channel_layer, "group_discard_many", None)
        if discard_many is not None:
            await discard_many(gone, self.channel_name)
        else:
            for group in gone:
                await self.channel_layer.group_discard(group, self.channel_name)
        for group in gone:
            self.joined.remove(group)

    async def disconnect(self, code: int) -> None:
        self.closed = True
        await self._leave_groups(*getattr(self, "joined", []))

    async def websocket_disconnect(self, message: WebSocketDisconnectEvent) -> None:
        # As channels', without its closing of old database connections on the thread-sensitive sync thread
        # afterwards: one hop per closing socket, queued on the process's one such thread (see dispatch).
        # db()'s calls close their thread's connections themselves.
        for group in self.groups or ():
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()

    async def _close(self, code: int) -> None:
        self.closed = True
        await self.close(code=code)

    async def _refuse(self, code: int) -> None:
        """Refuse a socket in its connect (4404: what it is about is not, or no longer, the user's to see): accepted,
        then closed, as an ended session is. Refused during the handshake, the browser would see 1006 and htmx would
        reconnect for as long as the tab is open (an ex-member's message page); the page says so (portal.js)."""
        self.closed = True
        requestmetrics.socket_refused(self.metrics_kind, code)
        await self.accept()
        await self.close(code=code)

    def _render(self, template: str, context: dict) -> str:
        with translation.override(self.language):
            return render_to_string(template, {"user": self.user, **context})

    async def _check(self, mailbox_id: int | None = None) -> Any:
        """The user's role in the mailbox (or True without one); NO_ROLE after closing an ended session.

        Logged out elsewhere, session expired, account deactivated: stop sending patient data. The
        check is batched with the other sockets of this process that ask at the same moment.
        """
        answer = await batcher(db).check(Ask(self.user.pk, self.session_key, mailbox_id))
        if not answer.valid:
            await self._close(4401)
            return NO_ROLE
        return answer.role if mailbox_id is not None else True

    async def _send(self, html: str) -> None:
        if html and not self.closed:
            try:
                await self.send(text_data=html)
            except OSError:
                # The client went away while a delayed update was on its way (uvicorn's ClientDisconnected).
                self.closed = True
            except RuntimeError as exc:
                # The client went away while this socket connected: uvicorn skips an accept on a connection already
                # closing, then refuses its first frame ("Expected ASGI message 'websocket.accept' … but got
                # 'websocket.send'"). Its disconnect follows and releases what the connect joined.
                if not (getattr(self, "accepted", False) and "Expected ASGI message 'websocket.accept'" in str(exc)):
                    raise
                log.info("%s socket: the client left during its connect", self.metrics_kind)
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
        # channels' AsyncConsumer.dispatch first closes old database connections on the thread-sensitive sync
        # thread: one thread hop per event and socket, all queued on that one thread (a claim on a row fifty
        # pages show was fifty hops). These sockets reach the database only through db(), whose calls close
        # their thread's connections before and after (DatabaseSyncToAsync): there is nothing to close here.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def layer_overflow(self, event: dict) -> None:
        """The channel layer dropped events this socket could not take in time (its queue was full): what the
        page shows may be stale. Closing with 1013 makes the browser reconnect and reload it."""
        if not self.closed:
            log.warning("socket %s fell behind (its queue overflowed): closing it to resync", self.channel_name)
            await self._close(1013)

    async def layer_lost(self, event: dict) -> None:
        """The channel layer's connection to Redis broke or was made again: events may be lost
        (kimportal.channel_layer). Closing with 1012 ("service restart") makes the browser reconnect, once Redis is
        there, and reload what the page shows."""
        if not self.closed:
            await self._close(1012)

    async def session_ended(self, event: dict) -> None:
        """The user logged out (in any tab): every socket of that session closes at once."""
        if self.session_key and event.get("session") == session_digest(self.session_key):
            await self._close(4401)
