"""Message rows rendered once per distinct look, not once per viewer and page view.

The inbox shows the same fifty rows to everyone on shift, and every live update re-sends rows: rendering
each row through the template engine was a third of an inbox page's CPU. A row's HTML is a pure function
of the values in ROW_INPUTS plus the active language and time zone, so those values are the cache key:
a changed message, a new reader or a new presence makes a new key, never a stale row. The cache is per
process and bounded (least recently used rows go first). tests/mailbox/test_rowcache.py checks that every
value the template reads is among ROW_INPUTS.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from django.template.loader import get_template
from django.utils import timezone, translation
from django.utils.safestring import SafeString

ROW_TEMPLATE = "mailbox/partials/_message_row.html"

# Every attribute path of the message the row template reads (callables are called, as the template does).
ROW_INPUTS: tuple[str, ...] = (
    "pk",
    "url",
    "is_read",
    "state",
    "from_name",
    "from_address",
    "badge",
    "security.state",
    "is_error_mail",
    "is_large_message_refused",
    "is_malformed",
    "subject",
    "attachment_count",
    "assignee_id",
    "assignee.get_full_name",
    "assignee.username",
    "claimed_by_id",
    "claim_active",
    "claimed_by.get_full_name",
    "claimed_by.username",
    "claimed_at",
    "present",
    "mailbox.display_name",
    "received_at",
)
MAX_ROWS = 4096

_rows: OrderedDict[tuple[Any, ...], SafeString] = OrderedDict()
_lock = threading.Lock()


def _value(message: Any, path: str) -> Any:
    value = message
    for part in path.split("."):
        if value is None:
            return None
        value = getattr(value, part)
        if callable(value):
            value = value()
    if isinstance(value, list):
        return tuple(value)
    return value


def reference_key(message: Any) -> tuple[Any, ...]:
    """The values of ROW_INPUTS, read path by path: the definition row_values must agree with (tested)."""
    return tuple(_value(message, path) for path in ROW_INPUTS)


def row_values(m: Any) -> tuple[Any, ...]:
    """reference_key(m), written out: walking 24 paths generically for every row of every page cost 2 ms of
    a 12 ms inbox page. The order is ROW_INPUTS'; tests/mailbox/work/test_rowcache.py compares the two."""
    assignee = m.assignee
    claimed_by = m.claimed_by
    mailbox = m.mailbox
    present = m.present
    return (
        m.pk,
        m.url,
        m.is_read,
        m.state,
        m.from_name,
        m.from_address,
        m.badge,
        m.security.state,
        m.is_error_mail,
        m.is_large_message_refused,
        m.is_malformed,
        m.subject,
        m.attachment_count,
        m.assignee_id,
        None if assignee is None else assignee.get_full_name(),
        None if assignee is None else assignee.username,
        m.claimed_by_id,
        m.claim_active(),
        None if claimed_by is None else claimed_by.get_full_name(),
        None if claimed_by is None else claimed_by.username,
        m.claimed_at,
        tuple(present) if isinstance(present, list) else present,
        None if mailbox is None else mailbox.display_name,
        m.received_at,
    )


def row_key(message: Any, *, oob: bool) -> tuple[Any, ...]:
    return (translation.get_language(), timezone.get_current_timezone_name(), oob, *row_values(message))


def _cached(key: tuple[Any, ...], message: Any, oob: bool) -> SafeString:
    with _lock:
        cached = _rows.get(key)
        if cached is not None:
            _rows.move_to_end(key)
            return cached
    # Rendered outside the lock: two threads may render the same row once each; both results are equal.
    # The template escapes what it shows; its output is safe HTML.
    html = SafeString(get_template(ROW_TEMPLATE).render({"message": message, "oob": oob}))
    with _lock:
        _rows[key] = html
        while len(_rows) > MAX_ROWS:
            _rows.popitem(last=False)
    return html


def message_row_html(message: Any, *, oob: bool = False) -> SafeString:
    return _cached(row_key(message, oob=oob), message, oob)


def message_rows_html(messages: Iterable[Any]) -> SafeString:
    """The rows of a list page, joined: the language and time zone are read once for the page."""
    context = (translation.get_language(), timezone.get_current_timezone_name(), False)
    return SafeString("".join([_cached((*context, *row_values(m)), m, False) for m in messages]))


def clear() -> None:
    with _lock:
        _rows.clear()
