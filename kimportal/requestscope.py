"""Values read once per HTTP request and never kept beyond it (the signed-in user's mailbox roles).

A page asks "may this user see this?" half a dozen times (the list, the counters, the navigation, the
role for the buttons); each asked PostgreSQL again, with a subquery that cost more to build than to run.
Within one request the answer cannot usefully change, so it is read once. Sockets and tasks run outside
any scope and read every time: a member removed while a socket stays open loses access at once. Writes
that change an answer (memberships, users, groups, mailboxes) clear the scope they run in.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_values: ContextVar[dict[Hashable, Any] | None] = ContextVar("kimportal_request_scope", default=None)


@contextmanager
def bound(var: ContextVar[T], value: T) -> Iterator[None]:
    """`var` holds `value` inside the block (in this thread or task, and what it starts) and what it held before
    after it, however the block ends."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def request_scope() -> AbstractContextManager[None]:
    return bound(_values, {})


def in_scope() -> bool:
    return _values.get() is not None


def scoped(key: Hashable, compute: Callable[[], T]) -> T:
    """compute() once per request for this key; outside a request, every time."""
    values = _values.get()
    if values is None:
        return compute()
    if key not in values:
        values[key] = compute()
    return values[key]


def scope_clear() -> None:
    values = _values.get()
    if values is not None:
        values.clear()


class RequestScopeMiddleware:
    """Opens the scope for the whole request (the middleware chain and the view run in one thread)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        with request_scope():
            return self.get_response(request)
