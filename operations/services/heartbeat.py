"""Reading and writing the Celery heartbeat stamps (see operations.tasks)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from django.conf import settings

from operations.services import clock
from operations.services.store import store

log = logging.getLogger(__name__)

HEARTBEAT_TASK = "operations.tasks.operations_heartbeat"
BEAT_KEY = "heartbeat:beat"
WORKER_KEY = "heartbeat:worker"


def interval() -> float:
    return float(settings.KIMPORTAL_HEARTBEAT_SECONDS)


def stale_after() -> float:
    """A stamp older than this means the process is gone: three missed beats, at least 45 s."""
    return max(3 * interval(), 45.0)


def stamp_beat(now: float | None = None) -> None:
    try:
        store().set(BEAT_KEY, {"at": time.time() if now is None else now}, timeout=24 * 3600)
    except Exception:  # never let monitoring break beat's publishing
        log.warning("could not stamp beat's heartbeat", exc_info=True)


def stamp_worker(hostname: str, now: float | None = None) -> None:
    """The worker's stamp, with how far its clock is from the database's (operations.services.clock)."""
    stamp: dict[str, object] = {"at": time.time() if now is None else now, "host": hostname}
    try:
        reading = clock.database_reading()
    except Exception:  # the stamp says the worker lives; its clock is a detail
        log.warning("could not read the database's clock for the worker's heartbeat", exc_info=True)
    else:
        # As the other clocks are judged: the worker's offset from the database's clock.
        stamp.update(clock_offset=-reading.offset, clock_error=reading.error)
    store().set(WORKER_KEY, stamp, timeout=24 * 3600)


@dataclass(frozen=True)
class Stamp:
    at: float | None  # epoch seconds of the last stamp, None: never
    host: str = ""
    clock_offset: float | None = None  # seconds the worker's clock was ahead of the database's, None: not read
    clock_error: float = 0.0

    def age(self, now: float) -> float | None:
        """Seconds since the stamp, by the database's clock where the stamp measured its own against it: a worker
        whose clock is behind would read as long dead while it beats, one ahead as alive long after it died."""
        if self.at is None:
            return None
        return max(0.0, now - (self.at - (self.clock_offset or 0.0)))


def read_stamps() -> tuple[Stamp, Stamp]:
    """(beat, worker) as the store has them."""
    values = store().get_many([BEAT_KEY, WORKER_KEY])
    beat, worker = values.get(BEAT_KEY) or {}, values.get(WORKER_KEY) or {}
    offset = worker.get("clock_offset")
    return Stamp(beat.get("at")), Stamp(
        worker.get("at"),
        str(worker.get("host", "")),
        float(offset) if isinstance(offset, int | float) else None,
        float(worker.get("clock_error") or 0.0),
    )
