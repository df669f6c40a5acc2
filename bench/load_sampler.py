"""Gunicorn configuration for a profiling run of bench/load.py (`--sample`): deploy/gunicorn.conf.py plus a
sampler in every worker — a poor man's py-spy (not installed here) that sees all threads.

Two measurements per worker, written to KIMPORTAL_SAMPLE_DIR/sampler-<pid>.json every two seconds
(uvicorn re-raises SIGTERM after its graceful shutdown, so no exit hook runs in a worker):
- CPU seconds per thread group from /proc/self/task (the event loop, the sockets' database threads, …);
  what the process used beyond its live threads went to threads that are gone: Django runs each HTTP
  request's view in a thread of its own (asgiref's per-request executor).
- Every KIMPORTAL_SAMPLE_INTERVAL seconds every other thread's Python stack (sys._current_frames): a
  thread waiting in C (an idle executor, the loop's selector, psycopg waiting for PostgreSQL) is counted
  as waiting; for the others the outermost portal function on the stack says which view, consumer
  handler or service the time belongs to, and every function is counted once (inclusive). A thread
  waiting for the GIL shows where it stands, so these are shares of presence, not of CPU.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
# The production settings, unchanged: this file only adds the hook below.
exec(compile((_ROOT / "deploy" / "gunicorn.conf.py").read_text(), "deploy/gunicorn.conf.py", "exec"))  # noqa: S102

_INTERVAL = float(os.environ.get("KIMPORTAL_SAMPLE_INTERVAL", "0.005"))
_OUT = Path(os.environ.get("KIMPORTAL_SAMPLE_DIR", str(_ROOT / "var" / "bench-load")))
_TICK = os.sysconf("SC_CLK_TCK")
# Innermost frames of a thread that waits in C: not CPU.
_IDLE = {
    ("thread.py", "_worker"),
    ("threading.py", "wait"),
    ("queue.py", "get"),
    ("selectors.py", "select"),
    ("runners.py", "run"),
    ("base_events.py", "run_forever"),
    ("base_events.py", "_run_once"),
}
_DB_WAIT = {
    ("connection.py", "wait"),
    ("waiting.py", "wait_conn"),
    ("waiting.py", "wait_epoll"),
    ("waiting.py", "wait"),
}
_PORTAL = f"{_ROOT}{os.sep}mailbox{os.sep}"
# Below the entry, these name the step: the portal's own functions and template rendering.
_STEP = (_PORTAL, f"django{os.sep}shortcuts.py", f"django{os.sep}template{os.sep}loader.py")


def _group(name: str) -> str:
    """A thread's group: 'socket-db_3' -> 'socket-db'; asgiref's one shared sync thread (the first executor,
    made at import) keeps its name; the request executors' threads (kimportal.asgihandler) are 'request threads'."""
    if name == "ThreadPoolExecutor-0_0":
        return "asgiref shared thread"
    if name.startswith(("ThreadPoolExecutor-", "request_")):
        return "request threads"
    return re.sub(r"[-_]\d+", "", name)


def _thread_cpu(native_id: int) -> float:
    try:
        text = Path(f"/proc/self/task/{native_id}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


class Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self.samples = 0
        self.states: Counter = Counter()
        self.portal: Counter = Counter()
        self.inclusive: Counter = Counter()
        self.own: Counter = Counter()

    def run(self) -> None:
        me = threading.get_ident()
        next_dump = time.monotonic() + 2
        while True:
            time.sleep(_INTERVAL)
            self.samples += 1
            names = {t.ident: t.name for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    self.take(_group(names.get(ident, "?")), frame)
            if time.monotonic() >= next_dump:
                self.dump()
                next_dump += 2

    def take(self, group: str, frame) -> None:
        stack = []
        while frame is not None and len(stack) < 80:
            stack.append((frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        leaf = (os.path.basename(stack[0][0]), stack[0][1])
        if leaf in _IDLE:
            self.states[f"{group}: idle"] += 1
            return
        if leaf in _DB_WAIT:
            self.states[f"{group}: waiting for PostgreSQL"] += 1
            return
        self.states[f"{group}: running or waiting for the GIL"] += 1
        self.own[f"{leaf[0]}:{leaf[1]}"] += 1
        for key in {f"{_short(filename)}:{name}" for filename, name in stack}:
            self.inclusive[key] += 1
        # The outermost portal function on the stack (the view, consumer handler or service the time belongs
        # to) and the next step below it (a selector, a service, template rendering).
        path = []
        for filename, name in reversed(stack):
            if (not path and filename.startswith(_PORTAL)) or (path and any(m in filename for m in _STEP)):
                path.append(f"{_short(filename)}:{name}")
                if len(path) == 2:
                    break
        self.portal[f"{group}: {' > '.join(path) or '(no portal frame)'}"] += 1

    def dump(self) -> None:
        cpu: Counter = Counter()
        for thread in threading.enumerate():
            # A forked worker's main thread keeps the master's native id in Python 3.11; its tid is our pid.
            native_id = os.getpid() if thread is threading.main_thread() else thread.native_id
            if native_id is not None:
                cpu[_group(thread.name)] += _thread_cpu(native_id)
        times = os.times()
        report = {
            "pid": os.getpid(),
            "interval_s": _INTERVAL,
            "samples": self.samples,
            "process_cpu_s": times.user + times.system,
            "threads_cpu_s": dict(cpu),
            # Whole counters: the bench subtracts the file read at the start of its window from the one at its end.
            "thread_states": dict(self.states),
            "portal_entry": dict(self.portal),
            "inclusive": dict(self.inclusive),
            "self": dict(self.own),
        }
        _OUT.mkdir(parents=True, exist_ok=True)
        path = _OUT / f"sampler-{os.getpid()}.json"
        path.with_suffix(".tmp").write_text(json.dumps(report))
        path.with_suffix(".tmp").replace(path)


def _short(filename: str) -> str:
    for marker in ("site-packages" + os.sep, str(_ROOT) + os.sep, "lib" + os.sep + "python3.11" + os.sep):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return os.path.basename(filename)


def post_worker_init(worker) -> None:
    Sampler().start()
