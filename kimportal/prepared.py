"""ORM queries compiled once per process, run many times with other values.

Building and compiling a queryset costs more Python than running it: the navigation's counters took 1.6 ms of
CPU per page to compile a query PostgreSQL answered in 0.1 ms, and a page asks half a dozen such questions. A
PreparedQuery keeps the ORM as the one definition of the question: it builds the queryset once per shape with
stand-in values, compiles it, remembers where the stand-ins ended up among the SQL parameters, and from then
on only binds the real values.

For querysets of values (values_list): rows come as tuples, through the converters Django would apply. Arguments
are ints or strings (ids, keys) or lists of them. A list must be used as an IN set: it is padded to a power of two
with its last element, and each padded length is its own shape (an empty list too: the ORM drops or empties
what it filters).
A parameter the ORM transformed so that its stand-in cannot be found is refused when the shape is compiled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import QuerySet

# Stand-ins: negative integers (ids are positive), distinct per position, and inside a 32-bit id's range: the ORM
# turns a comparison with a value its field cannot hold into a constant (auth_user's AutoField is 32-bit).
_BASE = -2_000_000_000

Scalar = int | str
Value = Scalar | Sequence[Scalar]


class _Slot(tuple[int, int]):
    """Where a stand-in came from: (argument index, element index; -1 for a scalar)."""


class _Shape:
    __slots__ = ("converters", "empty", "slots", "sql")

    def __init__(self, sql: str, slots: list[Any], empty: bool, converters: list[tuple[int, list[Any], Any]]) -> None:
        self.sql = sql
        self.slots = slots  # per SQL parameter: the _Slot of a stand-in, or the constant itself
        self.empty = empty  # the ORM found the query can match nothing (an empty IN list)
        self.converters = converters  # (column, the backend's converters, expression): dates on SQLite, …


def _stand_in(kind: type, index: int, element: int) -> Scalar:
    number = _BASE - 100_000 * index - 1 - element
    return number if kind is int else f"\x1fprepared{number}\x1f"


def _kind(value: Scalar) -> type:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"prepared query: {type(value).__name__} values are not supported (ints and strings are)")
    return int if isinstance(value, int) else str


MAX_SHAPES = 64


def _bound(args: tuple[Value, ...], slot: _Slot) -> Scalar:
    argument, element = slot
    value = args[argument]
    if element < 0:
        assert isinstance(value, (int, str))
        return value
    assert not isinstance(value, (int, str))
    return value[element]


def _padded(values: Sequence[Scalar]) -> list[Scalar]:
    size = 1 << (len(values) - 1).bit_length()
    return [*values, *([values[-1]] * (size - len(values)))]


class PreparedQuery:
    def __init__(self, build: Callable[..., QuerySet[Any, Any]]) -> None:
        """`build` takes the arguments (ints, strings, or lists of them) and returns the queryset (values_list
        or values)."""
        self._build = build
        self._shapes: dict[tuple[Any, ...], _Shape] = {}
        self._lock = threading.Lock()

    def rows(self, *args: Value, using: str = "default") -> list[tuple[Any, ...]]:
        # Lists are IN sets: padded with their last element to the next power of two, a few shapes cover every
        # length (a socket batch asks for 1 to 200 users) and repeating a member changes no IN.
        args = tuple(a if isinstance(a, (int, str)) or not a else _padded(a) for a in args)
        shape = self._shape(args, using)
        if shape.empty:
            return []
        params: list[Any] = [_bound(args, slot) if isinstance(slot, _Slot) else slot for slot in shape.slots]
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(shape.sql, params)
            rows = cursor.fetchall()
        if not shape.converters:
            return [tuple(row) for row in rows]
        converted = []
        for row in rows:
            values = list(row)
            for column, functions, expression in shape.converters:
                for function in functions:
                    values[column] = function(values[column], expression, connection)
            converted.append(tuple(values))
        return converted

    def _shape(self, args: tuple[Value, ...], using: str) -> _Shape:
        # A shape: per argument its kind and (for a list) its length; a list's elements share one kind.
        layout = tuple(
            (_kind(a), -1) if isinstance(a, (int, str)) else (_kind(a[0]) if a else int, len(a)) for a in args
        )
        key = (connections[using].vendor, layout)
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._compile(layout, using)
            with self._lock:
                if len(self._shapes) >= MAX_SHAPES:  # a bound, whatever callers pass
                    self._shapes.pop(next(iter(self._shapes)))
                self._shapes[key] = shape
        return shape

    def _compile(self, layout: tuple[tuple[type, int], ...], using: str) -> _Shape:
        where: dict[Scalar, _Slot] = {}
        stand_ins: list[Value] = []
        for index, (kind, length) in enumerate(layout):
            if length < 0:
                value = _stand_in(kind, index, -1)
                where[value] = _Slot((index, -1))
                stand_ins.append(value)
            else:
                values = [_stand_in(kind, index, element) for element in range(length)]
                where.update({value: _Slot((index, element)) for element, value in enumerate(values)})
                stand_ins.append(values)
        queryset = self._build(*stand_ins)
        compiler = queryset.query.get_compiler(using=using)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return _Shape("", [], empty=True, converters=[])
        slots = [where.get(p, p) if type(p) in (int, str) else p for p in params]
        missing = set(where.values()) - {slot for slot in slots if isinstance(slot, _Slot)}
        if missing:
            raise ValueError(f"prepared query: stand-ins {sorted(missing)} not among the compiled parameters")
        # The converters Django applies to these columns when it runs the query itself (Python values, not the
        # driver's: datetimes and booleans on SQLite).
        found = compiler.get_converters([column for column, _, _ in compiler.select])
        converters = [(column, functions, expression) for column, (functions, expression) in found.items()]
        return _Shape(sql, slots, empty=False, converters=converters)
