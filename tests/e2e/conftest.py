"""Browser tests: Playwright drives Debian's Chromium against the real ASGI server (gunicorn + uvicorn workers),
a real Celery worker with beat, PostgreSQL and the simulator's sockets."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from tisim.vzd.slapd import free_port

ROOT = Path(__file__).resolve().parents[2]
# Playwright's sync API keeps an event loop running in this thread; the ORM calls made by the
# test itself are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def browser_context(browser):
    context = browser.new_context(locale="de-DE")
    yield context
    context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    page.set_default_timeout(10_000)
    return page


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _wait_answering(port: int, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Until the server answers a page: gunicorn listens before its workers have loaded the portal, and on a busy
    machine the first page (imports, templates, the database pool) took longer than a test waits for a page."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited early")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/login/")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"the portal on {port} does not answer")


def portal_env(tmp_path: Path) -> dict[str, str]:
    """Environment for portal processes that share this test's PostgreSQL database and blob store."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        pytest.fail("browser tests run against PostgreSQL (DATABASE_URL)")
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        KIMPORTAL_BLOB_DIR=str(settings.KIMPORTAL_BLOB_DIR),
        KIMPORTAL_DATA_DIR=str(tmp_path / "portal-data"),
        KIMPORTAL_SERVE_STATIC="1",
        KIMPORTAL_FETCH_TICK_SECONDS="0.5",
        KIMPORTAL_CELERY_QUEUE=f"e2e-{uuid.uuid4().hex[:8]}",
        PYTHONUNBUFFERED="1",
    )
    return env


class PortalStack:
    def __init__(self, tmp_path: Path, *, with_worker: bool, extra_env: dict[str, str] | None = None) -> None:
        """``extra_env``: settings for the web server and the worker on top of ``portal_env`` (e.g. where the
        simulated Konnektor listens)."""
        self.tmp_path = tmp_path
        self.with_worker = with_worker
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        env = {**portal_env(self.tmp_path), **self.extra_env}
        logs = self.tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        # The production server and its configuration (gunicorn managing uvicorn workers).
        web_env = {**env, "KIMPORTAL_BIND": f"127.0.0.1:{self.port}", "KIMPORTAL_WEB_WORKERS": "2"}
        web = self._spawn(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "deploy" / "gunicorn.conf.py"),
                "kimportal.asgi:application",
            ],
            web_env,
            logs / "web.log",
        )
        if self.with_worker:
            celery = [sys.executable, "-m", "celery", "-A", "kimportal", "worker", "-B", "--pool=threads"]
            celery += ["--concurrency=2", "-Q", env["KIMPORTAL_CELERY_QUEUE"], "--loglevel=INFO"]
            celery += ["-s", str(self.tmp_path / "beat-schedule")]
            self._spawn(celery, env, logs / "worker.log")
        _wait_listening(self.port, web)
        _wait_answering(self.port, web)

    def _spawn(self, cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        # Its own process group: stopping it ends the gunicorn master and its workers (which hold database
        # connections) together, whatever state the master is in.
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs.append(proc)
        _RUNNING.append(self)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.procs.clear()

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in (self.tmp_path / "logs").glob("*.log"))


@pytest.fixture
def portal(transactional_db, tmp_path) -> Iterator[PortalStack]:
    """gunicorn (two uvicorn workers) + Celery worker/beat against this test's database."""
    stack = PortalStack(tmp_path, with_worker=True)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def portal_web(transactional_db, tmp_path) -> Iterator[PortalStack]:
    """daphne only (no worker): for tests that create their messages directly."""
    stack = PortalStack(tmp_path, with_worker=False)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# Every stack that spawned a process, so that none outlives the session (a server left running keeps a
# connection to the test database, and the next run cannot drop it).
_RUNNING: list[PortalStack] = []


@pytest.fixture(scope="session", autouse=True)
def _no_server_outlives_the_session() -> Iterator[None]:
    yield
    for stack in _RUNNING:
        stack.stop()
