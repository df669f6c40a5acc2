"""The signed-in user of a websocket, read on the sockets' database threads with the compiled user query.

Channels' AuthMiddlewareStack (cookies, session, user) reads the session and the user with its default
database_sync_to_async: for websocket scopes that is ONE thread per process, shared by every socket connect of
the process (and every consumer's thread-sensitive database call): under load, connects queued there. This
stack gives the consumers the same scope: "cookies" (as Django's request.COOKIES), "session" (the session
store of the cookie's key) and "user" (the user or AnonymousUser), read with kimportal.sessions.session_user:
the request's user, as PortalAuthenticationMiddleware reads it (session hash, inactive accounts, other backends
through Django's get_user, which also flushes a session whose password hash no longer matches).

The user is read where the socket first reaches the database, not here: a socket with a session cookie gets a
SessionUser, which its consumer resolves on its database thread together with its own first work (a message
page's socket checks the message and joins its presence in the same hop: one thread hop per connect, not two).
Touching it on the event loop before that is a database read in async code, which Django refuses: a consumer
that forgets to resolve it fails closed. mailbox.consumers.base.scope_user() resolves it from async code (one
hop), resolved_user() on a database thread.

A socket never saves its session (Channels saves it only with an HTTP response), so send is not wrapped.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, parse_cookie
from django.utils.functional import LazyObject, empty

from kimportal.sessions import session_user


class _SessionOnly:
    """What get_user reads of a request: its session."""

    __slots__ = ("session",)

    def __init__(self, session: Any) -> None:
        self.session = session


def _cookies(scope: dict[str, Any]) -> dict[str, str]:
    # As channels.sessions.CookieMiddleware.
    for name, value in scope["headers"]:
        if name == b"cookie":
            return parse_cookie(value.decode("latin1"))
    return {}


def _user(session: Any) -> Any:
    user = session_user(cast(HttpRequest, _SessionOnly(session)))
    # The flags read with the user (kimportal.sessions.user_flag) answer for one request; a socket lives for hours
    # and asks the database whenever it needs one (a revoked manager permission counts at once).
    vars(user).pop("_portal_flags", None)
    return user


class SessionUser(LazyObject):
    """The user of a socket's session, read on first use (a database read: on a database thread)."""

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.__dict__["_session"] = session

    def _setup(self) -> None:
        self._wrapped = _user(self.__dict__["_session"])


def resolved_user(value: Any) -> Any:
    """The user itself (a SessionUser read now if it was not yet): on a database thread, never on the event loop."""
    if isinstance(value, SessionUser):
        if value._wrapped is empty:
            value._setup()
        return value._wrapped
    return value


def user_ready(value: Any) -> bool:
    """Whether the user can be used on the event loop without a database read."""
    return not isinstance(value, SessionUser) or value._wrapped is not empty


class WebsocketAuthMiddleware:
    """scope["cookies"], scope["session"] and scope["user"] for the inner application (a websocket router)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.session_store = import_module(settings.SESSION_ENGINE).SessionStore

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        cookies = _cookies(scope)
        key = cookies.get(settings.SESSION_COOKIE_NAME)
        session = self.session_store(key)
        # Without a session cookie there is no one to read (the store would not query either).
        user = SessionUser(session) if key else AnonymousUser()
        return await self.inner(dict(scope, cookies=cookies, session=session, user=user), receive, send)
