"""A PostgreSQL that cannot be reached, for real: the default connection points at a free port on 127.0.0.1 where
nothing listens (connecting is refused at once, as while the server restarts), and back afterwards. The settings
are the ones every thread's connection is made from: a socket's database threads find the database gone too."""

from __future__ import annotations

import copy
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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

    def stop(self) -> None:
        connection = connections["default"]
        connection.close()
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
