"""ORM queries compiled once per process, run many times with other values.

Building and compiling a queryset costs more Python than running it: the navigation's counters took 1.6 ms of
CPU per page to compile a query PostgreSQL answered in 0.1 ms, and a page asks half a dozen such questions. A
PreparedQuery keeps the ORM as the one definition of the question: it builds the queryset once per shape with
stand-in values, compiles it, remembers where the stand-ins ended up among the SQL parameters, and from then
on only binds the real values.

For querysets of values (values_list): rows come as tuples, through the converters Django would apply. Arguments
are ints, strings (ids, keys) or aware datetimes, or lists of them. A list must be used as an IN set: it is padded to
a power of two with its last element, and each padded length is its own shape (an empty list too: the ORM drops or
empties what it filters).
A parameter the ORM transformed so that its stand-in cannot be found is refused when the shape is compiled.

PreparedUpdate does the same for an UPDATE (a queryset and its update values), and returns columns of the rows it
changed (UPDATE … RETURNING, on PostgreSQL and SQLite ≥ 3.35): deciding a conditional write and reading what it
wrote in one statement.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import QuerySet
from django.db.models.sql import UpdateQuery

# Stand-ins: negative integers (ids are positive), distinct per position, and inside a 32-bit id's range: the ORM
# turns a comparison with a value its field cannot hold into a constant (auth_user's AutoField is 32-bit).
_BASE = -2_000_000_000

Scalar = int | str | datetime
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


# Datetime stand-ins: aware, distinct per position, in a year no data has.
_EPOCH = datetime(1901, 1, 1, tzinfo=UTC)


def _stand_in(kind: type, index: int, element: int) -> Scalar:
    number = _BASE - 100_000 * index - 1 - element
    if kind is datetime:
        return _EPOCH + timedelta(seconds=index, microseconds=element + 1)
    return number if kind is int else f"\x1fprepared{number}\x1f"


def _kind(value: Scalar) -> type:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("prepared query: datetimes must be aware")
        return datetime
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(
            f"prepared query: {type(value).__name__} values are not supported (ints, strings and datetimes are)"
        )
    return int if isinstance(value, int) else str


def _adapted(value: Any, connection: Any) -> Any:
    """A value as the ORM passes it to the driver: datetimes as the backend stores them (a string on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value) if isinstance(value, datetime) else value


MAX_SHAPES = 64


def _bound(args: tuple[Value, ...], slot: _Slot) -> Scalar:
    argument, element = slot
    value = args[argument]
    if element < 0:
        assert isinstance(value, (int, str, datetime))
        return value
    assert not isinstance(value, (int, str, datetime))
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
        args = tuple(a if isinstance(a, (int, str, datetime)) or not a else _padded(a) for a in args)
        shape = self._shape(args, using)
        if shape.empty:
            return []
        connection = connections[using]
        params: list[Any] = [
            _adapted(_bound(args, slot), connection) if isinstance(slot, _Slot) else slot for slot in shape.slots
        ]
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
            (_kind(a), -1) if isinstance(a, (int, str, datetime)) else (_kind(a[0]) if a else int, len(a)) for a in args
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
        connection = connections[using]
        where: dict[Any, _Slot] = {}  # a stand-in as the compiled parameters hold it: its slot
        stand_ins: list[Value] = []
        for index, (kind, length) in enumerate(layout):
            if length < 0:
                value = _stand_in(kind, index, -1)
                where[_adapted(value, connection)] = _Slot((index, -1))
                stand_ins.append(value)
            else:
                values = [_stand_in(kind, index, element) for element in range(length)]
                where.update({_adapted(value, connection): _Slot((index, e)) for e, value in enumerate(values)})
                stand_ins.append(values)
        try:
            sql, params, converters = self._sql(stand_ins, using)
        except EmptyResultSet:
            return _Shape("", [], empty=True, converters=[])
        slots = [where.get(p, p) if type(p) in (int, str, datetime) else p for p in params]
        missing = set(where.values()) - {slot for slot in slots if isinstance(slot, _Slot)}
        if missing:
            raise ValueError(f"prepared query: stand-ins {sorted(missing)} not among the compiled parameters")
        return _Shape(sql, slots, empty=False, converters=converters)

    def _sql(self, stand_ins: list[Value], using: str) -> tuple[str, Sequence[Any], list[tuple[int, list[Any], Any]]]:
        compiler = self._build(*stand_ins).query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        # The converters Django applies to these columns when it runs the query itself (Python values, not the
        # driver's: datetimes and booleans on SQLite).
        found = compiler.get_converters([column for column, _, _ in compiler.select])
        return sql, params, [(column, functions, expression) for column, (functions, expression) in found.items()]


class PreparedUpdate(PreparedQuery):
    """An UPDATE compiled once per shape that returns `returning` (the model's own fields) of each row it changed.

    `build` takes the arguments and returns the queryset to update and the update's values, as QuerySet.update
    takes them. rows() runs it and returns the changed rows' values (converted as the ORM converts them): its
    length is what update() would have returned. Only where the database returns rows from an UPDATE
    (supported()); elsewhere the caller updates and reads as usual.
    """

    def __init__(
        self, build: Callable[..., tuple[QuerySet[Any, Any], dict[str, Any]]], returning: Sequence[str]
    ) -> None:
        super().__init__(build)  # type: ignore[arg-type]  # build returns the queryset with its values
        self.returning = tuple(returning)

    @staticmethod
    def supported(using: str = "default") -> bool:
        connection = connections[using]
        # MariaDB returns rows from an INSERT but not from an UPDATE: only the backends known to.
        return connection.vendor in ("postgresql", "sqlite") and connection.features.can_return_columns_from_insert

    def _sql(self, stand_ins: list[Value], using: str) -> tuple[str, Sequence[Any], list[tuple[int, list[Any], Any]]]:
        queryset, values = self._build(*stand_ins)
        # What QuerySet.update() runs, compiled instead of executed.
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(values)
        query.annotations = {}
        connection = connections[using]
        compiler = query.get_compiler(using=using)
        sql, params = compiler.as_sql()
        if not sql or query.related_updates:
            raise ValueError("prepared update: only an update of the model's own table can be prepared")
        returning, converters = _returning(queryset.model, self.returning, connection)
        return sql + returning, params, converters


class PreparedDelete(PreparedQuery):
    """A DELETE compiled once per shape that returns `returning` (the model's own fields) of each row it removed.

    `build` takes the arguments and returns the queryset whose rows go. The DELETE is the one statement of
    QuerySet._raw_delete: no cascades, no signals. For a model nothing refers to and no receiver watches (a
    caller's promise). Only where the database returns rows from a DELETE (PreparedUpdate.supported()).
    """

    def __init__(self, build: Callable[..., QuerySet[Any, Any]], returning: Sequence[str]) -> None:
        super().__init__(build)
        self.returning = tuple(returning)

    supported = staticmethod(PreparedUpdate.supported)

    def _sql(self, stand_ins: list[Value], using: str) -> tuple[str, Sequence[Any], list[tuple[int, list[Any], Any]]]:
        from django.db.models.sql import DeleteQuery

        queryset = self._build(*stand_ins)
        query = queryset.query.clone()
        query.__class__ = DeleteQuery
        connection = connections[using]
        sql, params = query.get_compiler(using=using).as_sql()
        if not sql:
            raise ValueError("prepared delete: only a delete from the model's own table can be prepared")
        returning, converters = _returning(queryset.model, self.returning, connection)
        return sql + returning, params, converters


def _returning(model: Any, names: Sequence[str], connection: Any) -> tuple[str, list[tuple[int, list[Any], Any]]]:
    """The RETURNING clause of `names` (the model's own fields) and the converters of the returned columns."""
    meta = model._meta
    columns = [meta.get_field(name).get_col(meta.db_table) for name in names]
    clause = " RETURNING " + ", ".join(connection.ops.quote_name(column.target.column) for column in columns)
    converters = []
    for index, column in enumerate(columns):
        functions = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if functions:
            converters.append((index, functions, column))
    return clause, converters
