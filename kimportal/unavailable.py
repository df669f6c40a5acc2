"""PostgreSQL cannot be reached (a restart during an update, a failover): every request answers 503 with a short
German page, or JSON where JSON is spoken, a Retry-After header and one warning line in the log, not Django's 500
page with a traceback per request.

Where the error is caught: a view's (and its template's) in DatabaseUnavailableMiddleware.process_exception. The
middleware that read the session and the signed-in user before the view (IdleLogoutMiddleware is the first to touch
request.user) raise it outside any view; Django turns an exception of a middleware into a response right around
that middleware (convert_exception_to_response), so no middleware further out ever sees it, and no wrapping of
get_response could. Those reach handler500 (kimportal.errorpages.server_error), which answers the same.

The answer needs no database: a plain template rendered without the request (no context processors, no user), and
request.user is replaced by AnonymousUser so the middleware on the way back (PrivatePagesMiddleware) ask nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.db.utils import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import override
from psycopg import pq
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)

# A restart or failover takes seconds to a minute: browsers, monitors and a KIS may ask again after this.
RETRY_AFTER_SECONDS = 30

# SQLSTATE classes of a server that is not there for anyone: 08 connection exceptions; 57P01-57P03 the server
# shutting down, crashed, or not accepting connections yet ("the database system is starting up").
_UNAVAILABLE_STATES = ("08", "57P01", "57P02", "57P03")

_MARK = "_kimportal_database_unavailable"
_VERDICT = "_kimportal_database_unreachable"


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached now, not that a query failed: a refused or lost
    connection, a server shutting down or starting up, no pooled connection within the pool's timeout. A deadlock,
    a statement timeout or a lock not granted (OperationalError too, with a SQLSTATE of its own) stay errors of the
    request: they are a fault to look into, not a restart to wait out. So do psycopg's errors without SQLSTATE on a
    connection that is fine (more than 65,535 parameters in one query, a cursor used after closing): a bug answered
    "try again later" without a traceback would never be found.

    An error judged already where its query ran (judge_where_raised) keeps that verdict."""
    verdict = getattr(exc, _VERDICT, None)
    if verdict is not None:
        return bool(verdict)
    if not isinstance(exc, (InterfaceError, OperationalError)):
        return False
    cause = exc.__cause__
    if not type(cause).__module__.startswith("psycopg"):
        return False  # another backend's (SQLite's "database is locked" in the demo): as before
    if isinstance(cause, PoolTimeout):
        return True
    state = getattr(cause, "sqlstate", None)
    if state is not None:
        return isinstance(exc, OperationalError) and state.startswith(_UNAVAILABLE_STATES)
    return _connection_gone(cause)


def _connection_gone(cause: BaseException | None) -> bool:
    """The connection the error came from is broken or closed (refused at connect, lost during a query), or cannot
    be told healthy. Only a connection of this thread that is open and sound marks the error as a fault of the code:
    judged in a thread that holds none (an event loop's, whose queries ran in another), an error counts as an outage
    (its thread judges it with judge_where_raised)."""
    pgconn = getattr(cause, "pgconn", None)
    if pgconn is not None and pgconn.status == pq.ConnStatus.BAD:
        return True
    raw = connection.connection  # this thread's: the one a view or middleware used
    return raw is None or bool(raw.closed or raw.broken)


def judge_where_raised(exc: BaseException) -> None:
    """Judge `exc` now, in the thread whose connection ran the query, and keep the verdict on it: a socket's database
    thread raises it to the consumer's event loop, whose thread holds no connection to judge by (there a bug, a
    cursor used after closing, would count as an outage: 1013 and no traceback)."""
    setattr(exc, _VERDICT, database_unreachable(exc))


def outage_text(exc: BaseException) -> str:
    """The error's first line for the log ("connection failed: … Connection refused")."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def unavailable_response(request: HttpRequest, exc: BaseException) -> HttpResponse:
    """The 503 answer; the first for a request logs one warning line (no traceback)."""
    if not getattr(request, _MARK, False):
        setattr(request, _MARK, True)
        log.warning("database unavailable, %s %s answered 503: %s", request.method, request.path, outage_text(exc))
    # Nothing on the way back asks for the session's user (the lookup would fail again).
    request.user = AnonymousUser()
    response: HttpResponse
    if _speaks_json(request):
        with override("de"):  # as the KIS API's texts: German, for the person reading the caller's log
            detail = _(
                "Der Dienst ist vorübergehend nicht erreichbar (Datenbank). Bitte versuchen Sie es in einigen "
                "Minuten erneut."
            )
        response = JsonResponse(
            {"code": "unavailable", "detail": detail}, status=503, json_dumps_params={"ensure_ascii": False}
        )
    else:
        response = HttpResponse(loader.get_template("503.html").render({}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    # Django logs every 5xx answer as an error (with the exception's traceback when it converted one): the warning
    # above says it once.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _speaks_json(request: HttpRequest) -> bool:
    """The KIS API, /health/ and the page's session check answer JSON; so does whatever asks for JSON only."""
    path = request.path
    if path.startswith(reverse("kisapi:not-found", kwargs={"rest": ""})):
        return True
    if path in (reverse("health"), reverse("session-status")):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


class DatabaseUnavailableMiddleware:
    """Near the top of MIDDLEWARE: a view that cannot reach the database answers 503 (see the module's docstring
    for the middleware's own reads)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if database_unreachable(exception):
            return unavailable_response(request, exception)
        return None
