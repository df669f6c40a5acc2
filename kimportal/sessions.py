"""Django's database sessions (SESSION_ENGINE) and the signed-in user, each read with a query compiled once.

Every request and every socket connect reads its session; the ORM spent more CPU compiling that lookup than
PostgreSQL spent answering it (kimportal.prepared). The table, the data and everything else are Django's own.
The user of the session is read the same way (session_user): a third of what a request costs before its view.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.db import router
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from kimportal.prepared import PreparedQuery


def _session_query(session_key: str) -> QuerySet[Session, tuple[str, datetime]]:
    # The expiry is compared in Python: the query keeps one shape (only ids and keys are bound).
    return Session.objects.filter(session_key=session_key).values_list("session_data", "expire_date")


_SESSION = PreparedQuery(_session_query)


class SessionStore(DatabaseSessionStore):
    def _get_session_from_db(self) -> Any:
        key = self.session_key
        rows = _SESSION.rows(key, using=router.db_for_read(Session)) if key is not None else []
        if key is None or not rows or rows[0][1] <= timezone.now():
            # As Django's store: an unknown or expired key is forgotten (a new one is made on save).
            self._session_key = None
            return None
        data, expires = rows[0]
        return Session(session_key=key, session_data=data, expire_date=expires)


# Yes/no questions about the signed-in user that apps register (user_flag_register), answered by the query that
# reads the user: one round trip instead of one more per question and request.
_USER_FLAGS: dict[str, Callable[[], Any]] = {}


def user_flag_register(name: str, expression: Callable[[], Any]) -> None:
    """Read `expression()` (a boolean expression over the user row, e.g. Exists(... OuterRef("pk") ...)) with
    every signed-in user; user_flag() gives it. Register at start-up (AppConfig.ready)."""
    _USER_FLAGS[name] = expression


def user_flag(user: Any, name: str) -> bool | None:
    """The flag as read with this user object, or None when it was not (a socket's user, a user read elsewhere):
    then the caller asks the database itself."""
    flags = getattr(user, "_portal_flags", None)
    return None if flags is None else flags.get(name)


def _user_query(user_id: int) -> QuerySet[Any, tuple[Any, ...]]:
    User = auth.get_user_model()
    # What ModelBackend.get_user reads: the whole row through the default manager; and the registered flags.
    flags = {f"portal_flag_{i}": expression() for i, expression in enumerate(_USER_FLAGS.values())}
    return User._default_manager.filter(pk=user_id).annotate(**flags).values_list(*_user_columns(), *flags)


@cache
def _user_columns() -> tuple[str, ...]:
    return tuple(f.attname for f in auth.get_user_model()._meta.concrete_fields)


_USER = PreparedQuery(_user_query)


@cache
def _loads_as_model_backend(backend_path: str) -> bool:
    """Whether this backend reads a session's user exactly as ModelBackend does (its get_user and its
    is_active rule): then session_user may read the user itself."""
    backend = import_string(backend_path)
    return (
        isinstance(backend, type)
        and issubclass(backend, ModelBackend)
        and backend.get_user is ModelBackend.get_user
        and backend.user_can_authenticate is ModelBackend.user_can_authenticate
    )


def session_user(request: HttpRequest) -> Any:
    """django.contrib.auth.get_user(request), the usual case read with a query compiled once.

    The usual case: a session of a ModelBackend sign-in whose user exists, may sign in and whose password hash
    still matches the session's. Everything else (no or another backend, a changed password, the fallback
    secrets, a deactivated account) is left to Django's get_user, which reads again and decides as it always has.
    """
    session = request.session
    User = auth.get_user_model()
    try:
        user_id = User._meta.pk.to_python(session[auth.SESSION_KEY])
        backend_path = session[auth.BACKEND_SESSION_KEY]
        session_hash = session[auth.HASH_SESSION_KEY]
    except KeyError:
        return auth.get_user(request)
    if (
        type(user_id) is int
        and isinstance(session_hash, str)
        and backend_path in settings.AUTHENTICATION_BACKENDS
        and _loads_as_model_backend(backend_path)
    ):
        using = router.db_for_read(User)
        names = tuple(_USER_FLAGS)  # before the query: its shape has the flags registered by now
        rows = _USER.rows(user_id, using=using)
        if rows:
            columns = _user_columns()
            user = User.from_db(using, columns, rows[0][: len(columns)])
            flags = rows[0][len(columns) :]
            if len(flags) == len(names):
                user._portal_flags = {  # type: ignore[attr-defined]
                    name: bool(value) for name, value in zip(names, flags, strict=True)
                }
            if ModelBackend().user_can_authenticate(user) and constant_time_compare(
                session_hash, user.get_session_auth_hash()
            ):
                return user
    return auth.get_user(request)
