"""Request and socket counters for /metrics: how many requests each view answered, with which status and how fast,
and how many live sockets are open or were refused, summed over every worker process of the server.

gunicorn runs several worker processes, and Prometheus scrapes one of them per scrape: counters kept in a process
would show that process alone and jump between scrapes. With PROMETHEUS_MULTIPROC_DIR set (deploy/gunicorn.conf.py
sets it for its workers and clears it when the server starts), prometheus_client keeps every process's values in
small memory-mapped files there, and the scrape sums them (prometheus_client.multiprocess). Without it (the demo,
tests, one process) the values live in the process.

Labels stay few: the view's URL name (not the path, which holds ids), the method (unknown ones as "other") and the
status code. The duration is the time to the response object: a streamed download's bytes are not in it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from django.http import HttpRequest, HttpResponseBase
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "kimportal_http_requests",
    "HTTP requests answered, by view (URL name), method and status",
    ["view", "method", "status"],
    registry=None,
)
DURATION = Histogram(
    "kimportal_http_request_duration_seconds",
    "Time from the request to the response (gematik's guidance: 0.1 s for interactions, 1 s for lists)",
    ["view"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=None,
)
SOCKETS_OPEN = Gauge(
    "kimportal_websockets_open",
    "Live sockets open now, by kind",
    ["kind"],
    registry=None,
    multiprocess_mode="livesum",
)
SOCKETS_REFUSED = Counter(
    "kimportal_websocket_refusals",
    "Live sockets closed at once, by kind and close code "
    "(4401 signed out, 4404 no access, 4429 too many, 1013 worker full or database unavailable)",
    ["kind", "code"],
    registry=None,
)
METRICS = (REQUESTS, DURATION, SOCKETS_OPEN, SOCKETS_REFUSED)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _Shared:
    """The values of every process (multiprocess mode) or of this one, as one collector of the scrape's registry."""

    def collect(self) -> Iterable[Metric]:
        path = multiprocess_dir()
        if path is None:
            for metric in METRICS:
                yield from metric.collect()
            return
        registry = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(registry, path=path)
        with _directory_lock(path, exclusive=False):  # never between an archive's update and its source's removal
            metrics = list(registry.collect())
        yield from metrics


# The kinds whose values outlive their process (a counter never goes back); gauges leave with it.
_KEPT = ("counter", "histogram")


@contextlib.contextmanager
def _directory_lock(path: str, *, exclusive: bool) -> Iterator[None]:
    with open(Path(path) / ".lock", "a+b") as handle:  # not *.db: the collector reads only those
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_ended(pid: int, path: str) -> None:
    """A worker process ended: its counters and histograms are added to one archive file per kind and its own
    files removed, so a server whose workers are replaced (a HUP reload, a crashed or timed-out worker) keeps a
    handful of files instead of one set per worker it ever started — every scrape reads them all. The sums a
    scrape sees do not change: a scrape waits while a worker's values move (a shared lock on the directory)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # its open-socket gauge leaves the sums
    # Runs in gunicorn's master: an error here (a full disk, a damaged file) would stop the server. The worker's
    # files then stay where they are (still summed) and the log says why.
    try:
        with _directory_lock(path, exclusive=True):
            for kind in _KEPT:
                ended = Path(path) / f"{kind}_{pid}.db"
                if not ended.exists():
                    continue
                archive = MmapedDict(str(Path(path) / f"{kind}_archive.db"))
                try:
                    for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(str(ended)):
                        kept, _ = archive.read_value(key)
                        archive.write_value(key, kept + value, timestamp)
                finally:
                    archive.close()
                ended.unlink()
    except Exception:
        log.exception("the metrics of ended worker %s could not be archived; its files stay", pid)


def register(registry: CollectorRegistry) -> None:
    registry.register(_Shared())  # a collector is anything with collect()


class RequestMetricsMiddleware:
    """First in MIDDLEWARE: counts and times every answer, those of the other middleware (a refused sign-in, the
    concurrency limit's wait) included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.view_name if match is not None else "") or "unmatched"
        method = request.method if request.method in METHODS else "other"
        REQUESTS.labels(view, method, str(response.status_code)).inc()
        DURATION.labels(view).observe(time.perf_counter() - started)
        return response


def socket_opened(kind: str) -> None:
    SOCKETS_OPEN.labels(kind).inc()


def socket_closed(kind: str) -> None:
    SOCKETS_OPEN.labels(kind).dec()


def socket_refused(kind: str, code: int) -> None:
    SOCKETS_REFUSED.labels(kind, str(code)).inc()
