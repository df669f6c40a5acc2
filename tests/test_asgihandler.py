"""The ASGI handler reuses its request threads (kimportal.asgihandler)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.core.signals import request_finished

from kimportal.asgihandler import PooledThreadsASGIHandler

pytestmark = pytest.mark.django_db(transaction=True)


def _scope(path: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


async def _get(app, path: str) -> int:
    communicator = ApplicationCommunicator(app, _scope(path))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(10)
    while (await communicator.receive_output(10)).get("more_body"):
        pass
    await communicator.wait(10)
    return start["status"]


def test_requests_one_after_another_run_on_the_same_reused_thread(settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    app = PooledThreadsASGIHandler()
    threads: list[threading.Thread] = []

    def finished(**kwargs):
        threads.append(threading.current_thread())

    request_finished.connect(finished)
    try:
        for _ in range(3):
            assert asyncio.run(_get(app, "/login/")) == 200
    finally:
        request_finished.disconnect(finished)
    assert len(threads) == 3
    # One thread made for the first request and kept: Django's own handler starts and joins one per request.
    assert threads[0] is threads[1] is threads[2]
    assert threads[0].name.startswith("request_") and threads[0].is_alive()
    assert app.executors.made == 1 and len(app.executors.idle) == 1


def test_requests_at_the_same_time_each_get_a_thread_and_give_it_back(settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    app = PooledThreadsASGIHandler()

    async def both() -> list[int]:
        return list(await asyncio.gather(_get(app, "/login/"), _get(app, "/login/")))

    assert asyncio.run(both()) == [200, 200]
    assert app.executors.made == 2 and len(app.executors.idle) == 2
    assert asyncio.run(_get(app, "/login/")) == 200
    assert app.executors.made == 2  # reused, not a third


def test_idle_threads_beyond_the_limit_are_shut_down():
    from kimportal.asgihandler import _Executors

    executors = _Executors(keep=1)
    first, second = executors.take(), executors.take()
    executors.give(first)
    executors.give(second)
    assert executors.idle == [first]
    with pytest.raises(RuntimeError):
        second.submit(lambda: None)  # shut down


def test_the_servers_application_uses_it():
    from kimportal import asgi

    http = asgi.application.application_mapping["http"]
    # The demo and the browser tests wrap it in the static files handler.
    assert isinstance(getattr(http, "application", http), PooledThreadsASGIHandler)


def test_a_request_crosses_between_event_loop_and_its_thread_only_once(settings, monkeypatch):
    """The middleware chain and the view run in one sync call: no trip back to the event loop in between
    (Django's own handler goes thread → loop → thread for its async core around the sync view)."""
    from asgiref import sync

    settings.ALLOWED_HOSTS = ["testserver"]
    app = PooledThreadsASGIHandler()
    calls = {"async_to_sync": 0, "sync_to_async": 0}
    real_async_to_sync, real_sync_to_async = sync.AsyncToSync.__call__, sync.SyncToAsync.__call__

    def async_to_sync(self, *args, **kwargs):
        calls["async_to_sync"] += 1
        return real_async_to_sync(self, *args, **kwargs)

    def sync_to_async(self, *args, **kwargs):
        calls["sync_to_async"] += 1
        return real_sync_to_async(self, *args, **kwargs)

    asyncio.run(_get(app, "/login/"))  # warm: the first request of a process sets things up
    monkeypatch.setattr(sync.AsyncToSync, "__call__", async_to_sync)
    monkeypatch.setattr(sync.SyncToAsync, "__call__", sync_to_async)
    assert asyncio.run(_get(app, "/login/")) == 200
    assert calls["async_to_sync"] == 0
    # Django's request_started receivers, the chain, and closing the response (request_finished): Django's own
    # handler makes seven such calls and one the other way.
    assert calls["sync_to_async"] == 3
