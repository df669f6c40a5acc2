"""Django's PostgreSQL backend (ENGINE "kimportal.pgpool"), whose connection pool drains dead connections at once.

After PostgreSQL restarts (an upgrade, a failover), every idle pooled connection is dead. With health checks
(CONN_HEALTH_CHECKS) psycopg_pool tests a connection before handing it out and replaces a dead one, but it waits
0, 1, 2, 4 … s between failed checks within one checkout: a pool holding more than about five idle connections at
the restart timed out one request per process (10 s, then an error page) while it drained them one by one. Here the
first failed check tests every idle connection of the pool at once (psycopg_pool's ``check()``: the dead ones fail
at once and are replaced in the background), so the next attempt, which psycopg makes without waiting, gets a
fresh connection.

While PostgreSQL cannot be reached (a restart, a failover), two more things differ from psycopg_pool's defaults:

- **Back at once.** psycopg_pool retries a failed connect with a doubling delay for up to five minutes
  (reconnect_timeout): after a one-minute failover it tried again only after another minute, and every request
  meanwhile waited the pool's 10 s for nothing. Here an attempt gives up after RECONNECT_SECONDS, and the next
  request that waits starts a new one at once: the portal is back within about a second of the database (a refused
  connect costs next to nothing, so trying often during an outage is cheap; one that gets no answer gives up after
  the settings' connect_timeout, KIMPORTAL_PG_CONNECT_TIMEOUT).
- **Answered quickly.** Once an attempt gave up, a checkout waits at most OUTAGE_WAIT_SECONDS (instead of the
  pool's 10 s) until a checkout succeeds again: the 503 page ("vorübergehend nicht erreichbar") comes in two
  seconds, not ten, and requests do not pile up on the threads meanwhile. A pool that is merely full under load is
  not marked: only connects that keep failing mark it. (So does a server refusing connects for "too many clients":
  waiting longer for a connect would not help there either, only a connection another request returns, which the
  short wait still takes.)
"""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import Connection
from psycopg_pool import ConnectionPool

# A connect attempt that keeps failing gives up after this (psycopg_pool: 300 s); the next waiting request starts anew.
RECONNECT_SECONDS = 1.0
# A checkout's wait while the database was found unreachable (and no checkout has succeeded since).
OUTAGE_WAIT_SECONDS = 2.0


class DrainingPool(ConnectionPool):
    """A pool whose failed health check tests all idle connections, instead of finding them dead one per second;
    which reconnects as soon as it is asked and answers quickly during an outage (the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.unreachable = False
        kwargs.setdefault("reconnect_timeout", RECONNECT_SECONDS)
        super().__init__(*args, check=self.check_or_drain, reconnect_failed=self._unreachable, **kwargs)

    def _unreachable(self, pool: ConnectionPool) -> None:
        self.unreachable = True

    def getconn(self, timeout: float | None = None) -> Connection[Any]:
        if self.unreachable:
            timeout = min(self.timeout if timeout is None else timeout, OUTAGE_WAIT_SECONDS)
        conn = super().getconn(timeout)
        self.unreachable = False
        return conn

    def check_or_drain(self, conn: Connection[Any]) -> None:
        try:
            self.check_connection(conn)
        except Exception:
            self.check()
            raise


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        options = self.settings_dict["OPTIONS"].get("pool")
        wanted = options and self.settings_dict["CONN_HEALTH_CHECKS"] and not self.settings_dict.get("CONN_MAX_AGE")
        pools: dict[str, ConnectionPool] = self._connection_pools  # type: ignore[attr-defined]  # Django's, per alias
        if wanted and self.alias != NO_DB_ALIAS and self.alias not in pools:
            # As Django builds its pool (django.db.backends.postgresql.base), with the draining check. Otherwise
            # (no checks, or CONN_MAX_AGE, which Django refuses with a pool) Django's property decides.
            params = self.get_connection_params()
            params["autocommit"] = True  # Django sets what it needs on checkout
            configure = self._configure_connection  # type: ignore[attr-defined]
            pool = DrainingPool(kwargs=params, open=False, configure=configure, **({} if options is True else options))
            pools.setdefault(self.alias, pool)
        return super().pool
