"""How far a process's clock is from the database's and Redis's.

Several places compare timestamps that different processes and servers wrote: a list page replays the live events
sent after the server read it (by the senders' clocks, with a margin of 0.2 s: mailbox.consumers.inbox), the short
event logs are read from a start by Redis's clock, and read-locks and fetch leases expire by the time their holder
wrote. chrony keeps clocks within milliseconds; a server whose time service stopped drifts by seconds a day, and
nothing fails loudly: lists silently miss a colleague's change, a lock ends early. The operations page therefore
measures each clock it can reach against PostgreSQL's (the installation's common ground) and warns.

A reading is the other side's time minus the midpoint of the local times around the round trip; half the round trip
bounds its error, and a skew counts only beyond that error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection


@dataclass(frozen=True)
class Reading:
    offset: float  # seconds the other clock is ahead of this process's (negative: behind)
    error: float  # at most this far off: half the round trip

    def beyond(self, limit: float) -> bool:
        """Whether the clocks are surely more than `limit` seconds apart."""
        return abs(self.offset) - self.error > limit


def limit() -> float:
    """The skew the portal tolerates between two clocks: its replay margin."""
    return float(getattr(settings, "KIMPORTAL_CLOCK_SKEW_LIMIT", 0.2))


def _reading(before: float, theirs: float, after: float) -> Reading:
    return Reading(offset=theirs - (before + after) / 2, error=(after - before) / 2)


def database_reading() -> Reading:
    """PostgreSQL's clock (clock_timestamp(): the moment of the call, not of the transaction's start) against ours."""
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            # SQLite (the embedded default) has no clock of its own: it is this machine's.
            return Reading(0.0, 0.0)
        before = time.time()
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        after = time.time()
        (theirs,) = cursor.fetchone()
    return _reading(before, float(theirs), after)


def redis_reading(client: Any) -> Reading:
    """Redis's clock (TIME) against ours, with a redis-py client."""
    before = time.time()
    seconds, micros = client.time()
    after = time.time()
    return _reading(before, seconds + micros / 1_000_000, after)
