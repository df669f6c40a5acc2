"""Keyset ("seek") pagination for message lists.

OFFSET makes page 1,500 walk 75,000 rows; a cursor that names the last row shown lets the database
start right there, so every page costs the same. Pages are numbered only for display ("Nachrichten
51–100"); the cursor decides what is shown. A bare `?page=N` (an old bookmark) still works by OFFSET.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode

from django.db.models import Model, Q, QuerySet
from django.utils.dateparse import parse_datetime

PAGE_SIZE = 50
MAX_PAGE = 10_000

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool
    kind: type = str  # how a cursor value is read back: str, int or datetime


def _encode(values: list[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(cursor: str, keys: list[SortKey]) -> list[Any] | None:
    """The key values of a cursor, or None when it is malformed (then the list starts at the top)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    # RecursionError: "[[[[…" nested deeper than the decoder goes, a hostile URL rather than a server error.
    except (ValueError, binascii.Error, UnicodeError, RecursionError):
        return None
    if not isinstance(values, list) or len(values) != len(keys):
        return None
    decoded: list[Any] = []
    for key, value in zip(keys, values, strict=True):
        if key.kind is datetime:
            try:
                parsed = parse_datetime(value) if isinstance(value, str) else None
            except ValueError:  # well-formed but impossible, e.g. a UTC offset of +99:00
                return None
            if parsed is None or parsed.tzinfo is None:
                return None
            decoded.append(parsed)
        elif key.kind is int:
            if not isinstance(value, int) or isinstance(value, bool):
                return None
            decoded.append(value)
        else:
            # JSON's \u escapes can spell what no text column holds: NUL (PostgreSQL refuses it) or a lone surrogate
            # (not UTF-8).
            if not isinstance(value, str) or "\x00" in value or not _is_utf8(value):
                return None
            decoded.append(value)
    return decoded


def _is_utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _beyond(keys: list[SortKey], values: list[Any], *, forward: bool) -> Q:
    """Rows strictly after (forward) or before the row with these key values in the list's order."""
    condition = Q()
    equal_so_far = Q()
    for key, value in zip(keys, values, strict=True):
        after = key.descending == forward  # descending + forward → smaller values come next
        step = Q(**{f"{key.field}__{'lt' if after else 'gt'}": value})
        condition |= equal_so_far & step
        equal_so_far &= Q(**{key.field: value})
    first = keys[0]
    # The same bound on the leading key alone lets the database use the index as a range.
    lead = Q(**{f"{first.field}__{'lte' if first.descending == forward else 'gte'}": values[0]})
    return lead & condition


def order_by(keys: list[SortKey], *, reverse: bool = False) -> list[str]:
    return [("-" if key.descending != reverse else "") + key.field for key in keys]


@dataclass
class KeysetPage(Generic[M]):
    """One page of a list without COUNT(*): one extra row tells whether more exist in that direction."""

    object_list: list[M]
    number: int
    size: int
    has_next: bool
    has_previous: bool
    keys: list[SortKey] = field(repr=False, default_factory=list)

    @classmethod
    def fetch(
        cls,
        qs: QuerySet[M],
        keys: list[SortKey],
        *,
        page: int | str = 1,
        after: str = "",
        before: str = "",
        size: int = PAGE_SIZE,
    ) -> KeysetPage[M]:
        try:
            number = max(1, min(int(page), MAX_PAGE))
        except (TypeError, ValueError):
            number = 1
        if before and (values := _decode(before, keys)) is not None:
            rows = list(
                qs.filter(_beyond(keys, values, forward=False)).order_by(*order_by(keys, reverse=True))[: size + 1]
            )
            more_newer = len(rows) > size
            rows = list(reversed(rows[:size]))
            # Going back to the top of the list starts at page 1 again, whatever the URL said.
            number = number if more_newer and number > 1 else 1
            return cls(rows, number, size, has_next=True, has_previous=more_newer, keys=keys)
        if after and (values := _decode(after, keys)) is not None:
            rows = list(qs.filter(_beyond(keys, values, forward=True)).order_by(*order_by(keys))[: size + 1])
            return cls(rows[:size], max(number, 2), size, has_next=len(rows) > size, has_previous=True, keys=keys)
        qs = qs.order_by(*order_by(keys))
        start = (number - 1) * size
        rows = list(qs[start : start + size + 1])
        return cls(rows[:size], number, size, has_next=len(rows) > size, has_previous=number > 1, keys=keys)

    def __iter__(self) -> Iterator[M]:
        return iter(self.object_list)

    def _cursor(self, row: M) -> str:
        return _encode([getattr(row, key.field) for key in self.keys])

    @property
    def has_other_pages(self) -> bool:
        return self.has_next or self.has_previous

    @property
    def next_query(self) -> str:
        """Query-string part for the older page (next in the list's order)."""
        if not self.has_next or not self.object_list:
            return ""
        return urlencode({"page": self.number + 1, "after": self._cursor(self.object_list[-1])})

    @property
    def previous_query(self) -> str:
        if not self.has_previous:
            return ""
        if self.number <= 2 or not self.object_list:
            return urlencode({"page": 1})
        return urlencode({"page": self.number - 1, "before": self._cursor(self.object_list[0])})

    @property
    def first_index(self) -> int:
        return (self.number - 1) * self.size + 1 if self.object_list else 0

    @property
    def last_index(self) -> int:
        return (self.number - 1) * self.size + len(self.object_list)
