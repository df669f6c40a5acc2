"""The signed-in user of a websocket, read on the sockets' database threads with the compiled user query.

Channels' AuthMiddlewareStack (cookies, session, user) reads the session and the user with its default
database_sync_to_async: for websocket scopes that is ONE thread per process, shared by every socket connect of
the process (and every consumer's thread-sensitive database call): under load, connects queued there. This
stack gives the consumers the same scope: "cookies" (as Django's request.COOKIES), "session" (the session
store of the cookie's key) and "user" (the user or AnonymousUser), read in one hop on the pool of
mailbox.consumers.base.db() with kimportal.sessions.session_user: the request's user, as
PortalAuthenticationMiddleware reads it (session hash, inactive accounts, other backends through Django's
get_user, which also flushes a session whose password hash no longer matches).

A socket never saves its session (Channels saves it only with an HTTP response), so send is not wrapped.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, parse_cookie

from kimportal.sessions import session_user
from mailbox.consumers.base import db


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


_user_on_socket_threads = db(_user)


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
        user = await _user_on_socket_threads(session) if key else AnonymousUser()
        return await self.inner(dict(scope, cookies=cookies, session=session, user=user), receive, send)
