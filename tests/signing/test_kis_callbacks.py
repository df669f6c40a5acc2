"""Callbacks to the KIS: a state change the client did not see in a response becomes one callback, delivered to a
real local HTTP server with a valid HMAC signature, retried with backoff after a failure, given up in the end; the
body names ids and states only."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation

from signing.api import callbacks
from signing.api.callbacks import SIGNATURE_HEADER, backoff, callback_deliver, callbacks_due, callbacks_sweep
from signing.api.services import kis_client_create
from signing.models import Draft, KisCallback, KisDraft
from signing.tasks import kis_callbacks_due
from tests.mailbox.factories import UserFactory
from tests.signing.kis import Api, kis_mailbox, submission  # noqa: F401

pytestmark = pytest.mark.django_db

HTTP_STATUS = "Antwort mit HTTP-Status %(status)s."
HTTP_500 = {"msgid": HTTP_STATUS, "params": {"status": 500}}


@pytest.fixture(autouse=True)
def _receiver_on_this_host(settings) -> None:
    """The test receivers listen on 127.0.0.1, closed to callbacks by default (test_kis_callback_addresses)."""
    settings.KIMPORTAL_KIS_CALLBACK_ALLOW_LOOPBACK = True


@dataclass
class Receiver:
    """A KIS's callback endpoint: answers with the queued statuses (then 200) and keeps what it got."""

    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.received.append(({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/kim/callback"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _tasks_in_place() -> Iterator[None]:
    """The dispatcher's deliveries run in this process (eager), as a worker would run them."""
    from kimportal.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def issued(manager, mailbox, physician, assistant, receiver):
    return kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[mailbox], callback_url=receiver.url)


@pytest.fixture
def api(issued) -> Api:
    return Api(Client(), issued.token)


def _verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers[SIGNATURE_HEADER.lower()].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_nothing_is_announced_that_the_response_already_said(api):
    api.submit(submission("KIS-1"))
    api.replace("KIS-1", submission("KIS-1", subject="Zweite Fassung"))
    assert callbacks_sweep() == []
    assert not KisCallback.objects.exists()


def test_a_state_change_is_delivered_with_a_valid_hmac_and_no_patient_data(api, issued, receiver):
    api.submit(submission("KIS-1"))
    draft = Draft.objects.get()
    Draft.objects.filter(pk=draft.pk).update(state=Draft.State.SIGNED)
    kis_callbacks_due.apply()  # the beat's task: sweep, then deliver what is due
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert _verify(issued.secret, headers, body)
    assert not _verify("ein anderes Geheimnis", headers, body)
    payload = json.loads(body)
    assert payload["event"] == "draft.changed" and payload["document_id"] == "KIS-1"
    assert (payload["draft_id"], payload["state"], payload["review_state"], payload["version"]) == (
        draft.pk,
        "signed",
        "none",
        1,
    )
    assert set(payload) == {
        "event",
        "sequence",
        "document_id",
        "draft_id",
        "version",
        "state",
        "review_state",
        "occurred_at",
    }
    # Patient and letter stay in the portal: the callback names ids and states only.
    for secret_word in ("Fall 4711", "Muster", "Entlassbrief", "praxis@"):
        assert secret_word.encode() not in body
    callback = KisCallback.objects.get()
    assert callback.state == KisCallback.State.DELIVERED and callback.attempts == 1
    assert headers["x-kim-portal-delivery"] == str(callback.pk)
    # Nothing changed since: no second callback.
    kis_callbacks_due.apply()
    assert len(receiver.received) == 1


def test_the_callback_matches_the_documented_schema(api, receiver):
    from openapi_schema_validator import OAS30Validator
    from yaml import safe_load

    from signing.api.views import OPENAPI_FILE

    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SENT)
    kis_callbacks_due.apply()
    spec = safe_load(OPENAPI_FILE.read_text())
    schema = {"$ref": "#/components/schemas/Callback", "components": spec["components"]}
    OAS30Validator(schema).validate(json.loads(receiver.received[0][1]))
    # A final state is announced once; the sweep no longer looks at the draft.
    assert KisDraft.objects.get().finished


def test_a_failed_delivery_is_retried_with_backoff(api, receiver, settings):
    settings.KIMPORTAL_KIS_CALLBACK_RETRY_SECONDS = 30.0
    receiver.statuses = [500, 503]
    api.submit(submission("KIS-1"))
    Draft.objects.update(review_state=Draft.Review.APPROVED)
    [callback_id] = callbacks_sweep()
    before = timezone.now()
    assert callback_deliver(callback_id) == KisCallback.State.PENDING
    callback = KisCallback.objects.get()
    assert callback.attempts == 1 and callback.last_error == HTTP_500
    assert callback.next_attempt_at >= before + timedelta(seconds=30)
    # Not due yet: neither the dispatcher nor a stray task posts it again.
    assert callbacks_due() == []
    assert callback_deliver(callback_id) == "skipped"
    # Due: the second attempt fails too, and waits twice as long.
    KisCallback.objects.update(next_attempt_at=timezone.now())
    before = timezone.now()
    assert callback_deliver(callback_id) == KisCallback.State.PENDING
    callback.refresh_from_db()
    assert callback.attempts == 2 and callback.next_attempt_at >= before + timedelta(seconds=60)
    KisCallback.objects.update(next_attempt_at=timezone.now())
    assert callbacks_due() == [callback_id]
    kis_callbacks_due.apply()
    callback.refresh_from_db()
    assert callback.state == KisCallback.State.DELIVERED and callback.attempts == 3
    assert len(receiver.received) == 3
    assert len({body for _h, body in receiver.received}) == 1  # the same callback each time


def test_a_callback_is_given_up_after_the_last_attempt(api, receiver, settings):
    settings.KIMPORTAL_KIS_CALLBACK_MAX_ATTEMPTS = 2
    receiver.statuses = [500, 500, 500]
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.FAILED, last_error="PIN falsch")
    [callback_id] = callbacks_sweep()
    callback_deliver(callback_id)
    KisCallback.objects.update(next_attempt_at=timezone.now())
    assert callback_deliver(callback_id) == KisCallback.State.FAILED
    assert KisCallback.objects.get().state == KisCallback.State.FAILED
    assert callbacks_due() == []


def test_an_unreachable_endpoint_is_a_failed_attempt(api, issued, settings):
    settings.KIMPORTAL_KIS_CALLBACK_TIMEOUT = 2.0
    type(issued.client).objects.filter(pk=issued.client.pk).update(callback_url="http://127.0.0.1:9/nirgends")
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNING)
    [callback_id] = callbacks_sweep()
    assert callback_deliver(callback_id) == KisCallback.State.PENDING
    assert KisCallback.objects.get().last_error


def test_a_redirect_is_not_followed(api, receiver):
    receiver.statuses = [302]
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNING)
    [callback_id] = callbacks_sweep()
    assert callback_deliver(callback_id) == KisCallback.State.PENDING
    assert KisCallback.objects.get().last_error == {"msgid": HTTP_STATUS, "params": {"status": 302}}


def test_without_a_callback_url_nothing_is_sent(api, issued, receiver):
    type(issued.client).objects.filter(pk=issued.client.pk).update(callback_url="")
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNED)
    assert callbacks_sweep() == []
    assert not receiver.received
    # … and the change counts as seen: a URL set later does not replay the past.
    assert KisDraft.objects.get().announced_state == "signed"


def test_a_withdrawal_in_the_portal_is_announced(api, assistant, receiver):
    from signing.services.drafts import draft_withdraw

    api.submit(submission("KIS-1"))
    draft_withdraw(user=assistant, draft=Draft.objects.get(), reason="doppelt")
    kis_callbacks_due.apply()
    assert json.loads(receiver.received[0][1])["state"] == "withdrawn"


def test_backoff_doubles_up_to_an_hour(settings):
    settings.KIMPORTAL_KIS_CALLBACK_RETRY_SECONDS = 30.0
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 8, 20)] == [30, 60, 120, 3600, 3600]


def test_signature_header_format():
    header = callbacks.signature_header("geheim", b'{"a":1}', 1700000000)
    expected = hmac.new(b"geheim", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


@contextmanager
def _raw_endpoint(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP endpoint that reads the request and answers with ``answer`` (whatever bytes, as slowly as it likes)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        conn, _addr = listener.accept()
        with conn:
            conn.recv(65536)
            try:
                answer(conn)
            except OSError:
                pass
            stop.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/kim/callback"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_the_timeout_bounds_the_whole_delivery_not_each_read(settings):
    """An endpoint that sends its answer a byte at a time (each within the timeout) cannot hold the worker beyond
    it: the lease would end and a second worker post the same callback again."""
    settings.KIMPORTAL_KIS_CALLBACK_TIMEOUT = 1.0
    trickling = threading.Event()

    def trickle(conn: socket.socket) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 40:
            if trickling.wait(0.2):
                return
            conn.sendall(bytes([byte]))

    with _raw_endpoint(trickle) as url:
        started = time.monotonic()
        outcome = callbacks.post(url, b"{}", {"Content-Type": "application/json"})
        elapsed = time.monotonic() - started
        trickling.set()
    assert not outcome.ok
    assert elapsed < 3.0


def test_an_answer_that_is_no_http_is_a_failed_attempt():
    def garbage(conn: socket.socket) -> None:
        conn.sendall(b"HELLO THERE\r\n\r\n")

    with _raw_endpoint(garbage) as url:
        outcome = callbacks.post(url, b"{}", {"Content-Type": "application/json"})
    assert not outcome.ok
    assert outcome.error


# --- the last error in the reader's language (kept untranslated, kimportal.texts) --------------------------------


def _callbacks_page(client, manager, connection_pk: int, *, language: str | None) -> str:
    client.force_login(manager)
    if language is None:
        client.cookies.pop(settings.LANGUAGE_COOKIE_NAME, None)
    else:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    response = client.get(reverse("kis:client", args=[connection_pk]))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def _failed_once(api, receiver, *, worker_language: str) -> KisCallback:
    receiver.statuses = [500]
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNING)
    [callback_id] = callbacks_sweep()
    # The worker runs in a language of its own: what it stores must not depend on that.
    with translation.override(worker_language):
        assert callback_deliver(callback_id) == KisCallback.State.PENDING
    return KisCallback.objects.get(pk=callback_id)


def test_the_last_error_is_shown_in_the_reader_language(api, issued, receiver, manager, client):
    callback = _failed_once(api, receiver, worker_language="de")
    assert callback.last_error == HTTP_500

    english = _callbacks_page(client, manager, issued.client.pk, language="en")
    assert "Answered with HTTP status 500." in english and "Antwort mit HTTP-Status" not in english
    german = _callbacks_page(client, manager, issued.client.pk, language=None)
    assert "Antwort mit HTTP-Status 500." in german and "Answered with" not in german


def test_an_unreachable_endpoint_keeps_the_system_words_as_a_parameter(api, issued, manager, client, settings):
    settings.KIMPORTAL_KIS_CALLBACK_TIMEOUT = 2.0
    type(issued.client).objects.filter(pk=issued.client.pk).update(callback_url="http://127.0.0.1:9/nirgends")
    api.submit(submission("KIS-1"))
    Draft.objects.update(state=Draft.State.SIGNING)
    [callback_id] = callbacks_sweep()
    with translation.override("en"):
        callback_deliver(callback_id)
    stored = KisCallback.objects.get().last_error
    assert stored["msgid"] == "Nicht zugestellt: %(reason)s" and "refused" in stored["params"]["reason"].lower()
    english = _callbacks_page(client, manager, issued.client.pk, language="en")
    assert f"Not delivered: {stored['params']['reason']}" in english


def test_the_admin_shows_the_last_error_translated(api, receiver, client):
    callback = _failed_once(api, receiver, worker_language="en")
    client.force_login(UserFactory(username="admin", is_staff=True, is_superuser=True))
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = html.unescape(client.get(reverse("admin:signing_kiscallback_changelist")).content.decode())
    assert "Answered with HTTP status 500." in page and "msgid" not in page
    detail = client.get(reverse("admin:signing_kiscallback_change", args=[callback.pk]))
    assert "Answered with HTTP status 500." in html.unescape(detail.content.decode())


BEFORE = ("signing", "0012_received_reason_translated_when_shown")
AFTER = ("signing", "0013_kis_callback_error_translated_when_shown")


@pytest.mark.django_db(transaction=True)
def test_rows_written_before_keep_their_sentence_and_the_way_back_writes_german(api, issued, manager, client):
    api.submit(submission("KIS-1"))
    link_pk = KisDraft.objects.get().pk
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("signing", "KisCallback")
    legacy = old.objects.create(client_id=issued.client.pk, link_id=link_pk, payload={}, last_error="HTTP 503")

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert KisCallback.objects.get(pk=legacy.pk).last_error == "HTTP 503"
    KisCallback.objects.create(client_id=issued.client.pk, link_id=link_pk, payload={}, last_error=HTTP_500)
    for language in ("en", "de"):
        assert "HTTP 503" in _callbacks_page(client, manager, issued.client.pk, language=language)

    # Backwards: a stored text becomes the German sentence the code before wrote; a sentence stays as it was.
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("signing", "KisCallback")
    assert sorted(old.objects.values_list("last_error", flat=True)) == ["Antwort mit HTTP-Status 500.", "HTTP 503"]
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
