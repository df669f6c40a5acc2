from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"

# The simulated Konnektor's fixtures serve the konnektor, signing and browser tests alike; the simulated Account
# Manager's serve the operations tests (client, UI) and tisim's own.
pytest_plugins = ["tests.fixtures.konnektor_sim", "tests.fixtures.accountmanager_sim"]


@pytest.fixture(autouse=True)
def _blob_dir(settings, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("blobs")
    settings.KIMPORTAL_BLOB_DIR = path
    return path


def pytest_collection_modifyitems(config, items) -> None:
    # Playwright's sync API keeps an event loop running in the main thread for the whole browser
    # session; async tests (Channels) must run before it starts.
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(autouse=True)
def _german_by_default():
    """A request in English (set_language) leaves English active on this thread; each test starts German."""
    from django.utils import translation

    translation.activate("de")
    yield
    translation.deactivate()


@pytest.fixture
def kept_logs() -> None:
    """The channel layer's short event logs have been kept for a minute, as on a Redis that has run for a while: a list
    read just now is replayed from them (the logs of a Redis started just now cannot tell what was sent before)."""
    import time

    import redis
    from django.conf import settings

    from kimportal.channel_layer import LOG_SINCE_KEY

    layer = settings.CHANNEL_LAYERS["default"]
    if not layer["BACKEND"].startswith("kimportal.channel_layer."):
        return
    client = redis.Redis.from_url(layer["CONFIG"]["hosts"][0])
    try:
        run = client.info("server")["run_id"]
        client.set(layer["CONFIG"].get("prefix", "asgi") + LOG_SINCE_KEY, f"{run} {time.time() - 60!r}")
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def _close_database_pools(django_db_setup, django_db_blocker):
    """The psycopg pool keeps idle connections; close them before the test database is dropped."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        _close_socket_thread_connections()
        for conn in connections.all():
            if getattr(conn, "pool", None) is not None:
                conn.close_pool()


def _close_socket_thread_connections() -> None:
    """A consumer's database work can end after its test did (the test does not wait for a check or a render still
    running when the socket closes); its cleanup then found the database blocked and the thread kept its connection,
    which the pool cannot close (it is checked out) and which keeps the test database from being dropped. Each of the
    socket threads closes its own (tests.unreachable.on_socket_threads)."""
    import sys

    if "mailbox.consumers.base" not in sys.modules:
        return
    from django.db import connections

    from tests.unreachable import on_socket_threads

    # Best effort: a thread still busy after the timeouts leaves the old warning, never a failing teardown.
    with contextlib.suppress(Exception):
        on_socket_threads(connections.close_all)
