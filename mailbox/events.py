"""Real-time events: services call these; they fire only after the transaction commits.

Events carry ids only (plus a sequence id that lets one process render an event once for all its
sockets); consumers re-check access and re-read through user-scoped selectors before rendering.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def mailbox_group(mailbox_id: int) -> str:
    return f"mailbox.{mailbox_id}"


def message_group(message_id: int) -> str:
    return f"message.{message_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def live_log(mailbox_id: int) -> str:
    """The short log of a mailbox's row events (kimportal.channel_layer: kept a minute): a list page rendered before its
    socket listened reads there what changed in between (mailbox.consumers.inbox)."""
    return f"live-log.{mailbox_id}"


# What a list page shows of a mailbox: its new mail, its rows (state, responsibility, lock, presence) and its counts.
LOGGED_EVENTS = frozenset(
    {"message.created", "messages.created", "message.changed", "presence.changed", "counts.changed"}
)


def _group_send(layer: Any, group: str, event: dict) -> Coroutine[Any, Any, None]:
    """The layer's group_send; a mailbox's row events are also kept in its short log where the layer can."""
    if event.get("type") in LOGGED_EVENTS and "mailbox_id" in event and hasattr(layer, "group_send_logged"):
        return layer.group_send_logged(group, event, live_log(int(event["mailbox_id"])))
    return layer.group_send(group, event)


def session_digest(session_key: str) -> str:
    # Sockets compare digests: the session key itself never travels through the channel layer.
    return hashlib.sha256(f"kimportal-session:{session_key}".encode()).hexdigest()[:32]


# How long a sender waits for the channel layer: a hung Redis must not hold up a fetch or a request.
SEND_TIMEOUT_SECONDS = 5.0


class _SenderLoop:
    """One event loop thread per process that sends to a Redis channel layer from sync code.

    async_to_sync() from a plain thread starts a new event loop and thread per call, and
    channels_redis keeps its connections per event loop: every event paid for a new loop, a thread
    and a Redis connection (≈2 ms). Here the loop, and with it the connection pool, is kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child (a Celery worker process) inherits the object but not the thread.
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="events-sender", daemon=True).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            future.result(SEND_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise


_sender = _SenderLoop()


def _keeps_connections_per_loop(layer: object) -> bool:
    # Only channels_redis (and subclasses such as kimportal.channel_layer's): an in-memory layer's queues
    # belong to the loop of the sockets that read them.
    return any(cls.__module__.startswith("channels_redis.") for cls in type(layer).__mro__)


# Events of work done for a socket, kept for its event loop to publish (collected()).
_collecting = threading.local()


@contextmanager
def collected() -> Iterator[list[tuple[str, dict]]]:
    """Events sent on this thread within the block are kept in the list instead of sent: a socket's database work
    (mailbox.consumers.base.db_events) hands them to the socket's event loop, which publishes them itself (publish)
    instead of each waiting for a hop to the sender thread and back."""
    previous = getattr(_collecting, "events", None)
    events: list[tuple[str, dict]] = []
    _collecting.events = events
    try:
        yield events
    finally:
        _collecting.events = previous


async def publish(events: list[tuple[str, dict]]) -> None:
    """Send collected events from the running event loop (as send_to_group would have: failures are logged)."""
    if not events:
        return
    layer = get_channel_layer()
    if layer is None:
        return
    for group, event in events:
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                await _group_send(layer, group, event)
        except Exception:
            log.exception("broadcast to %s failed", group)


def send_to_group(group: str, event: dict) -> None:
    """Send an event to a group now (the broadcast_* functions call it on commit; so do other apps' events)."""
    # When it was sent: a socket that receives it much later has fallen behind and must resync.
    event = {**event, "at": time.time()}
    keep = getattr(_collecting, "events", None)
    if keep is not None:
        keep.append((group, event))
        return
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if _keeps_connections_per_loop(layer):
            _sender.run(_group_send(layer, group, event))
        else:
            async_to_sync(layer.group_send)(group, event)
    except Exception:
        # A lost live update must never undo stored mail; the page shows it on the next load.
        log.exception("broadcast to %s failed", group)


def _seq() -> str:
    return uuid.uuid4().hex


def broadcast_message_created(*, mailbox_id: int, message_id: int) -> None:
    event = {"type": "message.created", "mailbox_id": mailbox_id, "message_id": message_id, "seq": _seq()}
    transaction.on_commit(lambda: send_to_group(mailbox_group(mailbox_id), event))


def broadcast_messages_created(*, mailbox_id: int, message_ids: list[int]) -> None:
    """Several messages stored in one fetch round: one event (and one frame per socket) for all of them."""
    if not message_ids:
        return
    event = {
        "type": "messages.created",
        "mailbox_id": mailbox_id,
        "message_ids": list(message_ids),
        "seq": _seq(),
    }
    transaction.on_commit(lambda: send_to_group(mailbox_group(mailbox_id), event))


def broadcast_account_status(*, mailbox_id: int) -> None:
    transaction.on_commit(
        lambda: send_to_group(mailbox_group(mailbox_id), {"type": "account.status", "mailbox_id": mailbox_id})
    )


def broadcast_message_changed(
    *, mailbox_id: int, message_id: int, lock: bool = False, counts: bool = False, notes: bool = False
) -> None:
    """State, responsibility, notes or the read-lock changed: the pages that show the message re-render it.

    The event goes to the message's own group, which holds its open detail pages and the lists that show
    its row (each inbox socket joins the rows its page displays): a claim in a mailbox of 2,000 messages
    reaches the few pages that show it, not every open inbox. `counts`: the change moves the mailbox's
    counts (a state change), so every member's navigation is refreshed too; a new assignee's own counter
    goes by broadcast_counters_changed to the people concerned only. `notes`: a note was added, the open pages
    show it (their lists re-read the notes).
    """
    event = {
        "type": "message.changed",
        "mailbox_id": mailbox_id,
        "message_id": message_id,
        "lock": lock,
        "counts": counts,
        "notes": notes,
        "seq": _seq(),
    }

    def send() -> None:
        send_to_group(message_group(message_id), event)
        if counts:
            send_to_group(mailbox_group(mailbox_id), {"type": "counts.changed", "mailbox_id": mailbox_id})

    transaction.on_commit(send)


def broadcast_presence(*, mailbox_id: int, message_id: int, origin: str = "") -> None:
    """Who has the message open changed: its detail pages and the lists showing its row follow.

    `origin` is the channel of the page that arrived: it need not redraw itself."""
    event = {
        "type": "presence.changed",
        "mailbox_id": mailbox_id,
        "message_id": message_id,
        "seq": _seq(),
        "origin": origin,
    }
    transaction.on_commit(lambda: send_to_group(message_group(message_id), event))


def broadcast_user_notification(*, user_id: int) -> None:
    transaction.on_commit(lambda: send_to_group(user_group(user_id), {"type": "user.notified", "user_id": user_id}))


def broadcast_counters_changed(*, user_ids: list[int]) -> None:
    """The personal counters ("Mir zugewiesen") of these users changed."""

    def send() -> None:
        for user_id in set(user_ids):
            send_to_group(user_group(user_id), {"type": "counters.changed", "user_id": user_id})

    transaction.on_commit(send)


def broadcast_memberships_changed(*, user_ids: list[int]) -> None:
    """Someone was added to or removed from a mailbox: their open pages re-subscribe or close."""

    def send() -> None:
        for user_id in user_ids:
            send_to_group(user_group(user_id), {"type": "memberships.changed", "user_id": user_id})

    transaction.on_commit(send)


def broadcast_session_ended(*, user_id: int, session_key: str) -> None:
    """A logout: the sockets opened with that session close at once (not at their next event)."""
    event = {"type": "session.ended", "session": session_digest(session_key)}
    transaction.on_commit(lambda: send_to_group(user_group(user_id), event))


def broadcast_outgoing_changed(*, mailbox_id: int, outgoing_id: int) -> None:
    """A sent message, draft or outbox entry changed (state, a recipient's delivery, an attempt): its pages follow."""
    event = {"type": "outgoing.changed", "mailbox_id": mailbox_id, "outgoing_id": outgoing_id, "seq": _seq()}
    transaction.on_commit(lambda: send_to_group(mailbox_group(mailbox_id), event))
