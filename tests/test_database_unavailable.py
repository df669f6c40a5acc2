"""PostgreSQL unreachable (a restart, a failover): every request answers 503 with a short German page or the JSON of
its API, Retry-After, no traceback, and one warning line in the log (kimportal.unavailable). The database is really
unreachable here (tests.unreachable), nothing is mocked."""

from __future__ import annotations

import json
import logging
from functools import partial

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection, connections
from django.db.utils import InterfaceError, OperationalError
from django.test import Client
from django.urls import reverse

from kimportal.asgi import application
from kimportal.unavailable import RETRY_AFTER_SECONDS, database_unreachable
from mailbox.consumers.base import PortalConsumer, db
from tests.mailbox.factories import UserFactory
from tests.signing.kis import error_schema
from tests.unreachable import Outage, on_socket_threads
from tests.unreachable import database_unreachable as unreachable

pytestmark = pytest.mark.django_db(transaction=True)

GERMAN = "Der Dienst ist vorübergehend nicht erreichbar"
AGAIN = "Bitte versuchen Sie es in einigen Minuten erneut."


@pytest.fixture
def signed_in() -> Client:
    browser = Client()
    browser.force_login(UserFactory())
    # The session's read happens in a middleware: Django converts its exception itself and signals it, which the
    # test client would raise again; what counts is the answer (and the log, checked below).
    browser.raise_request_exception = False
    return browser


def _one_warning_and_no_traceback(caplog: pytest.LogCaptureFixture, path: str) -> None:
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert problems == []
    warnings = [r for r in caplog.records if r.name == "kimportal.unavailable"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert path in warnings[0].getMessage()


def _assert_page(response, *, text: str = GERMAN, again: str = AGAIN) -> str:
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert text in html and again in html
    assert "Traceback" not in html and "OperationalError" not in html and "127.0.0.1" not in html
    return html


def test_a_signed_in_page_answers_503_in_german(signed_in, caplog):
    inbox = reverse("mailbox:inbox")
    with unreachable(), caplog.at_level(logging.INFO):
        response = signed_in.get(inbox)
    html = _assert_page(response)
    assert 'lang="de"' in html and 'href="/"' in html
    _one_warning_and_no_traceback(caplog, inbox)
    # Back up: the same session works again.
    assert signed_in.get(inbox).status_code == 200


def test_an_htmx_request_answers_503_too(signed_in, caplog):
    with unreachable(), caplog.at_level(logging.INFO):
        response = signed_in.get(reverse("mailbox:inbox"), headers={"HX-Request": "true"})
    _assert_page(response)
    _one_warning_and_no_traceback(caplog, reverse("mailbox:inbox"))


def test_a_view_that_finds_the_database_gone_answers_503(caplog):
    # No session: the middleware read nothing, the view's sign-in is the first query.
    browser = Client()
    with unreachable(), caplog.at_level(logging.INFO):
        response = browser.post(reverse("login"), {"username": "anna", "password": "pw-secret-123"})
    _assert_page(response)
    _one_warning_and_no_traceback(caplog, reverse("login"))


def test_in_english_the_page_is_english(signed_in):
    signed_in.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    with unreachable():
        response = signed_in.get(reverse("mailbox:inbox"))
    _assert_page(response, text="The service is temporarily unavailable", again="Please try again in a few minutes.")


def test_the_kis_api_answers_its_own_json(caplog):
    path = reverse("kisapi:drafts")
    with unreachable(), caplog.at_level(logging.INFO):
        response = Client().get(path, headers={"Authorization": "Bearer some-token"})
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    body = json.loads(response.content)
    error_schema().validate(body)  # the API's error shape, code listed in openapi.yaml
    assert body["code"] == "unavailable" and GERMAN in body["detail"]
    _one_warning_and_no_traceback(caplog, path)


def test_the_pages_session_check_answers_json(signed_in):
    with unreachable():
        response = signed_in.get(reverse("session-status"), headers={"X-Portal-Background": "1"})
    assert response.status_code == 503 and response["Content-Type"] == "application/json"
    assert json.loads(response.content)["code"] == "unavailable"


def test_the_production_pool_waiting_in_vain_answers_503_too(signed_in):
    # The pool (kimportal.pgpool) cannot make a connection: its checkout gives up after its timeout (PoolTimeout).
    with unreachable(pool_timeout=0.5):
        assert connection.pool is not None
        response = signed_in.get(reverse("mailbox:inbox"))
    _assert_page(response)


def test_a_query_that_fails_on_a_reachable_database_is_no_outage():
    # A statement timeout (an OperationalError too) is a fault of the request: it stays a 500 and a traceback.
    with pytest.raises(OperationalError) as failed, connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 1")
        try:
            cursor.execute("SELECT pg_sleep(1)")
        finally:
            cursor.execute("RESET statement_timeout")
    assert not database_unreachable(failed.value)
    with unreachable(), pytest.raises(OperationalError) as refused:
        connection.ensure_connection()
    assert database_unreachable(refused.value)


def test_a_bug_on_a_reachable_database_is_no_outage():
    # psycopg's errors without SQLSTATE are not all about the connection: a query with too many parameters (a long
    # pk__in list) or a cursor used after closing is a fault of the code, to be seen with its traceback, not a 503.
    with pytest.raises(OperationalError) as too_many, connection.cursor() as cursor:
        cursor.execute("SELECT 1 WHERE 1 IN (" + ", ".join(["%s"] * 70_000) + ")", list(range(70_000)))
    assert not database_unreachable(too_many.value)
    with connection.cursor() as cursor:
        pass
    with pytest.raises(InterfaceError) as closed:
        cursor.execute("SELECT 1")
    assert not database_unreachable(closed.value)
    with connection.cursor() as cursor:  # the connection is fine all along
        cursor.execute("SELECT 1")


def test_a_connection_lost_during_a_request_is_an_outage():
    # The server went away under an open connection (a restart, a failover): the next query finds it gone.
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    try:
        with pytest.raises((OperationalError, InterfaceError)) as lost, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert database_unreachable(lost.value)
    finally:
        connection.close()


def test_a_broken_connection_judged_from_another_thread_is_an_outage():
    # A socket consumer judges the error in its event loop's thread, which holds no connection: its query ran in a
    # database thread whose connection had broken (the shape CI met: psycopg's "the connection is closed", no
    # SQLSTATE, no pgconn). Judged by the loop thread's missing connection, it was taken for a bug and raised.
    import threading

    import psycopg

    error = OperationalError("the connection is closed")
    error.__cause__ = psycopg.OperationalError("the connection is closed")
    judged: list[bool] = []
    loop_thread = threading.Thread(target=lambda: judged.append(database_unreachable(error)))
    loop_thread.start()
    loop_thread.join()
    assert judged == [True]


def _session_cookie() -> str:
    browser = Client()
    browser.force_login(UserFactory())
    return browser.cookies[settings.SESSION_COOKIE_NAME].value


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws/inbox/", "/ws/message/1/", "/ws/signing/queue/"])
async def test_a_socket_is_closed_with_try_again_later(path, caplog):
    # Not an error of the application (a traceback, then 1011): 1013, on which the browser reconnects after a while.
    key = await database_sync_to_async(_session_cookie)()
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode()), (b"origin", b"http://localhost")]
    # The sockets' threads hold connections from before, as earlier sockets of a test run leave them: the outage
    # ends those too (they reached the server and would answer the consumer's reads).
    every_thread_connected = partial(on_socket_threads, lambda: connection.ensure_connection(), start_all=True)
    await sync_to_async(every_thread_connected)()
    outage = Outage()
    await sync_to_async(outage.start)()
    try:
        socket = WebsocketCommunicator(application, path, headers=headers)
        with caplog.at_level(logging.INFO):
            connected, _ = await socket.connect(timeout=5)
            assert connected
            assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 1013}
        await socket.wait(timeout=5)
    finally:
        await sync_to_async(outage.stop)()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert any("socket closed with 1013" in r.getMessage() for r in caplog.records)


def _too_many_parameters() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 WHERE 1 IN (" + ", ".join(["%s"] * 70_000) + ")", list(range(70_000)))


def _cursor_used_after_closing() -> None:
    with connection.cursor() as cursor:
        pass
    cursor.execute("SELECT 1")


class _BuggyConsumer(PortalConsumer):
    """A socket whose connect runs faulty database work on the sockets' database threads, as a consumer's would."""

    bugs = {"/too-many/": _too_many_parameters, "/closed-cursor/": _cursor_used_after_closing}

    async def connect(self) -> None:
        await db(self.bugs[self.scope["path"]])()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", list(_BuggyConsumer.bugs))
async def test_a_bug_in_a_sockets_database_work_is_no_outage(path, caplog):
    # Errors without SQLSTATE on a sound connection: judged on the event loop's thread, which holds no connection,
    # they counted as an outage (1013, no traceback). Raised, the server logs the traceback and closes with 1011.
    socket = WebsocketCommunicator(_BuggyConsumer.as_asgi(), path)
    try:
        with caplog.at_level(logging.INFO), pytest.raises((OperationalError, InterfaceError)):
            await socket.connect(timeout=5)
    finally:
        await sync_to_async(on_socket_threads)(connections.close_all)
    assert not any("1013" in r.getMessage() for r in caplog.records)
