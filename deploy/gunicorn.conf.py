"""Gunicorn as the process manager for the ASGI app: several uvicorn worker processes per machine.

Why gunicorn + uvicorn: gunicorn is the well-kept process manager (pre-fork, restarts a dead worker,
graceful reloads with HUP, graceful stop with TERM); uvicorn is a fast ASGI server with websockets.
One uvicorn worker per core uses the machine; more machines behind a reverse proxy on the same
PostgreSQL and Redis grow past it (docs/deploy.md). Every setting comes from the environment.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

from uvicorn_worker import UvicornWorker as _UvicornWorker

bind = os.environ.get("KIMPORTAL_BIND", "127.0.0.1:8000")


def _workers() -> int:
    """KIMPORTAL_WEB_WORKERS, default one per core. Zero would start a server that binds its port and serves nothing
    (every request hangs): a value that is not a whole number of at least 1 stops the start, naming the variable."""
    raw = os.environ.get("KIMPORTAL_WEB_WORKERS", "").strip()
    if not raw:
        return multiprocessing.cpu_count()
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if count < 1:
        raise SystemExit(f"KIMPORTAL_WEB_WORKERS must be a whole number of at least 1, not {raw!r}")
    return count


workers = _workers()


class UvicornWorker(_UvicornWorker):
    """uvicorn without permessage-deflate: a live frame is a few kB of HTML on a hospital LAN, where compressing
    it (zlib per frame and socket, on the one event loop thread of a worker) costs more CPU than the bytes it
    saves are worth; browsers then simply send and receive uncompressed frames.

    The protocol implementations are named, not left to "auto" (which falls back silently when a package is
    missing): httptools' C parser for HTTP (h11 is pure Python) and websockets' sans-I/O protocol, whose
    handshake and frames cost the event loop about a fifth less CPU per socket than uvicorn's older
    "websockets" implementation (its own asyncio server protocol: tasks and futures per connection)."""

    CONFIG_KWARGS = {
        **_UvicornWorker.CONFIG_KWARGS,
        "loop": "uvloop",
        "http": "httptools",
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
        # A page sends small frames (the rows it shows: at most 200 ids; a heartbeat): 64 KiB is far above them.
        # uvicorn's default of 16 MiB let one page parse megabytes of JSON on the worker's one event loop, which
        # every socket and page of the worker waits for; a larger frame now closes its socket with 1009.
        "ws_max_size": 64 * 1024,
    }


worker_class = UvicornWorker
# Websockets stay open for hours: no worker timeout for idle sockets, but a hung worker is replaced.
timeout = int(os.environ.get("KIMPORTAL_WEB_TIMEOUT", 60))
# SIGTERM: stop accepting, close sockets (their handlers release read-locks), exit within seconds.
graceful_timeout = int(os.environ.get("KIMPORTAL_WEB_GRACEFUL_TIMEOUT", 10))
keepalive = 5
backlog = 2048
# Behind nginx on the same host: trust its X-Forwarded-* headers only from loopback.
forwarded_allow_ips = os.environ.get("KIMPORTAL_FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = os.environ.get("KIMPORTAL_ACCESS_LOG") or None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "warning").lower()
proc_name = "kimportal-web"


def post_worker_init(worker: object) -> None:
    """The worker has loaded the portal (Django, its apps, templates' libraries): the hundreds of thousands of
    objects that stay for the process's life leave the garbage collector's view (gc.freeze). Every full
    collection walked all of them again — about 50–90 ms each, a pause of every request and socket of the
    worker — and a page's collections cost a third of what they did (measured in-process over 600 pages)."""
    gc.collect()
    gc.freeze()


# Request and socket counters of every worker, summed on each scrape of /metrics (kimportal.requestmetrics):
# prometheus_client's multiprocess mode keeps each worker's values in files of one directory. The server sets it
# before it starts its workers, so they import prometheus_client with it: PROMETHEUS_MULTIPROC_DIR if the
# environment names one (systemd's RuntimeDirectory, say), else a directory of its own, removed when it stops.
_METRICS_DIR_MADE = "KIMPORTAL_METRICS_DIR_MADE"


def on_starting(server: object) -> None:
    """Before the first worker: an empty metrics directory (a restart starts its counters from zero, as Prometheus
    expects of a restarted process), and the environment the workers inherit names it."""
    named = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if named:
        path = Path(named)
        path.mkdir(parents=True, exist_ok=True)
        for old in path.glob("*.db"):
            old.unlink()
        return
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="kimportal-metrics-")
    # By this master: a new master started by USR2 (a binary upgrade) inherits the environment and uses the same
    # directory, which the old one must then not remove when it exits.
    os.environ[_METRICS_DIR_MADE] = str(os.getpid())


def child_exit(server: object, worker: object) -> None:
    """A worker ended (stopped, killed, replaced): its open-socket gauge leaves the sums; its counters stay, moved
    into the directory's archive files (kimportal.requestmetrics.process_ended)."""
    from kimportal.requestmetrics import process_ended

    process_ended(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])  # type: ignore[attr-defined]


def on_exit(server: object) -> None:
    if os.environ.get(_METRICS_DIR_MADE) == str(os.getpid()):
        del os.environ[_METRICS_DIR_MADE]
        shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
