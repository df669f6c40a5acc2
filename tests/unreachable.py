"""A PostgreSQL that cannot be reached, for real: the default connection points at a free port on 127.0.0.1 where
nothing listens (connecting is refused at once, as while the server restarts), and back afterwards. The settings
are the ones every thread's connection is made from: a socket's database threads find the database gone too, once
the connections they hold are closed (on each of them: a connection belongs to its thread)."""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_socket_threads(work: Callable[[], object], *, start_all: bool = False, timeout: float = 10) -> None:
    """Run `work` once on each of the sockets' database threads (mailbox.consumers.base) started so far (with
    `start_all`: on as many as the pool may start, started now if not yet).

    Their connections outlive the consumers' calls in tests: Channels' WebsocketCommunicator turns the closing of old
    connections around each call (DatabaseSyncToAsync) into a no-op while the test awaits the socket, so a thread
    keeps the connection a consumer of an earlier test opened. One task per thread, held at a barrier until every
    thread has taken one (idle threads take them all: the pool starts no more); a thread busy for longer than
    `timeout` raises (BrokenBarrierError, TimeoutError)."""
    from mailbox.consumers.base import _db_threads

    count = _db_threads._max_workers if start_all else len(_db_threads._threads)
    if not count:
        return
    barrier = threading.Barrier(count)

    def each() -> None:
        barrier.wait(timeout=timeout)
        work()

    for future in [_db_threads.submit(each) for _ in range(count)]:
        future.result(timeout=2 * timeout)


class Outage:
    """start() and stop() (sync: from async code through sync_to_async). Without `pool_timeout` every connect is
    refused at once (no pool); with it, the production pool's checkout waits that long for a connection it cannot
    make (psycopg_pool's PoolTimeout)."""

    def __init__(self, *, pool_timeout: float | None = None) -> None:
        self.pool_timeout = pool_timeout
        self.saved: dict[str, Any] = {}

    def start(self) -> None:
        connection = connections["default"]
        self.saved = copy.deepcopy(connection.settings_dict)
        connection.close()
        connection.close_pool()  # its idle connections reach the real server; a new pool is made for the dead one
        connection.settings_dict["HOST"] = "127.0.0.1"
        connection.settings_dict["PORT"] = str(free_port())
        options = connection.settings_dict["OPTIONS"]
        if self.pool_timeout is None:
            options.pop("pool", None)
        else:
            options["pool"] = {**options.get("pool", {}), "timeout": self.pool_timeout}
        # After the settings changed: what a socket's thread opens from now on finds the database gone.
        on_socket_threads(connections.close_all)

    def stop(self) -> None:
        connection = connections["default"]
        connection.close()
        on_socket_threads(connections.close_all)  # none keeps what failed during the outage
        connection.close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(self.saved)


@contextmanager
def database_unreachable(*, pool_timeout: float | None = None) -> Iterator[None]:
    outage = Outage(pool_timeout=pool_timeout)
    outage.start()
    try:
        yield
    finally:
        outage.stop()
