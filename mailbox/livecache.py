"""Per-process memo for live updates: one event's data and HTML, shared by this process's sockets.

Fifty colleagues watching a mailbox get the same event; each socket checks its own user's access (one
query), but the message row is read once and rendered once per audience (language, read state).
Entries live for a few seconds: long enough for one event's fan-out, short enough never to serve a
later state (every event has its own sequence id).
"""

from __future__ import annotations

import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from django.db.models import QuerySet

from kimportal.prepared import PreparedQuery
from mailbox.dienstkennung import badge_for, dienstkennung_badges
from mailbox.models import Message, MessageRead
from mailbox.selectors.messages import LIST_COLUMNS, detail_url_pattern, list_rows
from mailbox.selectors.presence import presence_for_messages

V = TypeVar("V")

MISSING = object()  # RenderMemo.peek: not computed (yet)


class RenderMemo(Generic[V]):
    """A small thread-safe TTL memo that computes each key once: threads asking for a key that is being
    computed wait for that result instead of computing it again (eight socket threads received the same
    event at once and each ran the same row queries)."""

    def __init__(self, *, ttl: float, size: int = 512) -> None:
        self.ttl = ttl
        self.size = size
        self._items: OrderedDict[Any, tuple[float, V]] = OrderedDict()
        self._computing: dict[Any, Future[V]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], V]) -> V:
        if key[0] is None:  # an event without a sequence id is never shared
            return compute()
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
            running = self._computing.get(key)
            if running is None:
                mine: Future[V] = Future()
                self._computing[key] = mine
        if running is not None:
            return running.result(timeout=30)
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                self._computing.pop(key, None)
            mine.set_exception(exc)
            raise
        with self._lock:
            self._items[key] = (time.monotonic() + self.ttl, value)
            self._computing.pop(key, None)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        mine.set_result(value)
        return value

    def peek(self, key: Any) -> Any:
        """The value if it is ready, else MISSING: never computes, never waits (safe on the event loop)."""
        if key[0] is None:
            return MISSING
        with self._lock:
            hit = self._items.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return MISSING
        return hit[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _row_query(message_id: int, mailbox_id: int) -> QuerySet[Message, tuple[Any, ...]]:
    # The list's own columns: the same row the page rendered (built as the list builds its rows), not every text
    # and JSON field. A matched delivery report shows on its sent message's timeline, not as a new inbox row.
    return Message.objects.filter(pk=message_id, mailbox_id=mailbox_id, is_delivery_report=False).values_list(
        *LIST_COLUMNS
    )


def _readers_query(message_id: int) -> QuerySet[MessageRead, tuple[int]]:
    return MessageRead.objects.filter(message_id=message_id).values_list("user_id")


# Read for every live event of a row (once per event and process): compiled once (kimportal.prepared).
_ROW = PreparedQuery(_row_query)
_READERS = PreparedQuery(_readers_query)

_data: RenderMemo[tuple[LiveRow, frozenset[int]] | None] = RenderMemo(ttl=2.0)


class LiveRow:
    """A message row prepared once; `for_reader` gives each audience its own copy with its read state."""

    def __init__(self, message: Message) -> None:
        self.message = message

    def copy_for_reader(self, is_read: bool) -> Message:
        row = copy.copy(self.message)
        row.is_read = is_read
        return row


def row_data(event: dict[str, Any], message_id: int | None = None) -> tuple[LiveRow, frozenset[int]] | None:
    """The row of the event's message (or of `message_id` among the event's) and who has read it, or None
    when it is gone. The caller has checked that its user may read the event's mailbox.
    """
    message_id = message_id if message_id is not None else event["message_id"]

    def load() -> tuple[LiveRow, frozenset[int]] | None:
        found = _ROW.rows(message_id, event["mailbox_id"])
        if not found:
            return None
        [message] = list_rows(found, "default")
        message.badge = badge_for(message.dienstkennung, dienstkennung_badges())
        message.present = presence_for_messages([message.pk]).get(message.pk, [])
        message.url = detail_url_pattern().format(message.pk)
        readers = frozenset(user_id for (user_id,) in _READERS.rows(message.pk))
        return LiveRow(message), readers

    return _data.get(_row_key(event, message_id), load)


def row_data_ready(event: dict[str, Any], message_id: int) -> Any:
    """row_data if this process has it already, else MISSING (see RenderMemo.peek)."""
    return _data.peek(_row_key(event, message_id))


def _row_key(event: dict[str, Any], message_id: int) -> tuple[Any, ...]:
    return (event.get("seq"), "row", message_id)
