"""The psycopg pool (kimportal.settings): after PostgreSQL restarts, no request gets a dead connection."""

from __future__ import annotations

import threading

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.backends.postgresql.base import DatabaseWrapper
from django.urls import reverse

from tests.unreachable import on_socket_threads

WARM = 2
# More than psycopg_pool alone drains within its 10 s checkout timeout (it waits 0, 1, 2, 4 … s between failed
# checks): kimportal.pgpool tests all idle connections at the first failed check.
MANY = 12


def _hold_pooled_connections(count: int) -> None:
    """`count` threads hold a pooled connection at the same time, so the pool keeps `count` idle ones afterwards."""
    together = threading.Barrier(count)
    failures: list[BaseException] = []

    def work() -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
            together.wait(timeout=10)
        except BaseException as error:
            failures.append(error)
        finally:
            connections["default"].close()  # back to the pool, as at the end of a request or a task

    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def _terminate_the_other_backends_of_the_test_database() -> int:
    """What a PostgreSQL restart does to every pooled connection: the server end goes away while it idles."""
    connection = connections["default"]
    params = connection.get_connection_params()
    own = {key: params[key] for key in ("dbname", "host", "port", "user", "password") if params.get(key)}
    with psycopg.connect(**own, autocommit=True) as admin:
        assert admin.execute("SELECT current_database()").fetchone() == (connection.settings_dict["NAME"],)
        # The timeout makes each call wait until that backend has exited.
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    # The sockets' threads keep their connections in tests (tests.unreachable.on_socket_threads): dead now, they
    # would fail the next socket's reads, in a later test.
    on_socket_threads(connections.close_all)
    return sum(1 for (terminated,) in rows if terminated)


@pytest.mark.django_db(transaction=True)
def test_after_the_servers_connections_are_gone_every_request_still_succeeds(client):
    connection = connections["default"]
    assert isinstance(connection, DatabaseWrapper)
    assert connection.pool is not None  # the tests run on the production pool settings
    client.force_login(get_user_model().objects.create_user("anna"))
    connection.close()
    connection.close_pool()  # a new pool, without the idle connections earlier tests left
    _hold_pooled_connections(WARM)
    assert connection.pool.get_stats()["pool_available"] >= WARM

    assert _terminate_the_other_backends_of_the_test_database() >= WARM

    client.raise_request_exception = False
    statuses = []
    for _ in range(WARM + 1):
        statuses.append(client.get(reverse("mailbox:inbox")).status_code)
        connection.close()  # as the end of a request does outside the test client: next time, a pooled one
    assert statuses == [200] * (WARM + 1)


@pytest.mark.django_db(transaction=True)
def test_a_pool_full_of_dead_connections_is_drained_at_once(client):
    """A daytime restart finds many idle connections: the first request gets a fresh one (psycopg alone found them
    dead one at a time, waiting longer each time, and the request failed after the pool's 10 s)."""
    connection = connections["default"]
    client.force_login(get_user_model().objects.create_user("anna"))
    connection.close()
    connection.close_pool()
    _hold_pooled_connections(MANY)
    assert connection.pool.get_stats()["pool_available"] >= MANY

    assert _terminate_the_other_backends_of_the_test_database() >= MANY

    client.raise_request_exception = False
    assert client.get(reverse("mailbox:inbox")).status_code == 200
    connection.close()
    stats = connection.pool.get_stats()
    assert stats["connections_lost"] >= MANY - 1, stats  # every dead one found by the first request's checkout
