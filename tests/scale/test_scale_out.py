"""Two ASGI servers, two Celery workers and one beat on one PostgreSQL and one Redis: what is exclusive
for one process stays exclusive for several, events cross processes, a killed worker's fetch is taken
over, and a server stopped with SIGTERM frees its pages' read-locks within seconds.

Everything runs as in production: gunicorn with deploy/gunicorn.conf.py, Celery workers and beat as
separate processes, the simulator's Clientmodul over real POP3.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import websockets
from django.conf import settings
from django.test import Client

from mailbox.models import KimAccount, Membership, Message, Presence
from mailbox.services.ingest import message_ingest
from tests.e2e.conftest import _wait_listening, portal_env
from tests.mailbox.conftest import HOSPITAL, simple_mail
from tests.mailbox.factories import MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tisim.vzd.slapd import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


class Stack:
    """Processes of one deployment; every one is stopped at the end, also when the test fails."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = portal_env(tmp_path)
        self.env.update(KIMPORTAL_FETCH_LEASE_SECONDS="3", KIMPORTAL_FETCH_TICK_SECONDS="0.5")
        self.logs = tmp_path / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}

    def web(self, name: str, *, workers: int = 1) -> str:
        port = free_port()
        env = {**self.env, "KIMPORTAL_BIND": f"127.0.0.1:{port}", "KIMPORTAL_WEB_WORKERS": str(workers)}
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
        proc = self._spawn(name, [*cmd, "kimportal.asgi:application"], env)
        _wait_listening(port, proc)
        return f"127.0.0.1:{port}"

    def worker(self, name: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "celery", "-A", "kimportal", "worker", "--pool=threads", "--concurrency=2"]
        cmd += ["-Q", self.env["KIMPORTAL_CELERY_QUEUE"], "-n", f"{name}@%h", "--loglevel=INFO"]
        return self._spawn(name, cmd, self.env)

    def beat(self) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "celery", "-A", "kimportal", "beat", "--loglevel=INFO"]
        return self._spawn("beat", [*cmd, "-s", str(self.tmp_path / "beat-schedule")], self.env)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def stack(tmp_path) -> Iterator[Stack]:
    deployment = Stack(tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop()


class Browser:
    """A logged-in user speaking to one server: a session cookie and a CSRF token, as a browser has."""

    def __init__(self, user, host: str) -> None:
        client = Client()
        client.force_login(user)
        self.session = client.cookies[settings.SESSION_COOKIE_NAME].value
        self.csrf = secrets.token_hex(16)
        self.host = host
        self.http = requests.Session()
        self.http.cookies.set(settings.SESSION_COOKIE_NAME, self.session)
        self.http.cookies.set(settings.CSRF_COOKIE_NAME, self.csrf)

    def get(self, path: str) -> requests.Response:
        return self.http.get(f"http://{self.host}{path}", timeout=10, allow_redirects=False)

    def post(self, path: str, data: dict | None = None) -> requests.Response:
        headers = {"X-CSRFToken": self.csrf, "HX-Request": "true", "Referer": f"http://{self.host}/"}
        return self.http.post(f"http://{self.host}{path}", data=data or {}, headers=headers, timeout=10)

    def socket(self, path: str):
        cookie = f"{settings.SESSION_COOKIE_NAME}={self.session}"
        return websockets.connect(
            f"ws://{self.host}{path}", additional_headers={"Cookie": cookie, "Origin": f"http://{self.host}"}
        )


async def _receive_until(socket, needle: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        frame = await asyncio.wait_for(socket.recv(), timeout=max(0.1, deadline - time.monotonic()))
        if needle in frame:
            return frame


def _team():
    anna = UserFactory(username="anna", first_name="Anna", last_name="A")
    bert = UserFactory(username="bert", first_name="Bert", last_name="B")
    return anna, bert


def test_events_cross_processes_and_claims_stay_exclusive(stack):
    anna, bert = _team()
    message = message_ingest(mailbox=MembershipFactory(user=anna).mailbox, uidl="x-1", raw=MAIL_WITH_PDF)
    MembershipFactory(mailbox=message.mailbox, user=bert)
    server_a, server_b = stack.web("web-a"), stack.web("web-b")
    on_a, on_b = Browser(anna, server_a), Browser(bert, server_b)

    async def watch_claim_from_the_other_server() -> str:
        async with on_a.socket("/ws/inbox/") as socket:
            # Anna's page shows the message's row (portal.js says so when the socket opens).
            await socket.send(json.dumps({"watch": str(message.pk)}))
            await _receive_until(socket, 'id="live-watching"')
            # Bert claims through the other server process; Anna's socket on this one must hear it.
            response = await asyncio.to_thread(on_b.post, f"/nachricht/{message.pk}/sperren/")
            assert response.status_code == 200, response.text[:500]
            return await _receive_until(socket, "Bert B")

    row = asyncio.run(watch_claim_from_the_other_server())
    assert f'id="msg-{message.pk}"' in row

    # Twenty rounds: both claim the same fresh message at the same instant through different processes.
    winners = []
    for round_no in range(20):
        fresh = message_ingest(mailbox=message.mailbox, uidl=f"race-{round_no}", raw=MAIL_WITH_PDF)
        start = threading.Barrier(2)
        results: dict[str, str] = {}

        def claim(
            name: str, browser: Browser, pk: int = fresh.pk, barrier: threading.Barrier = start, out: dict = results
        ) -> None:
            barrier.wait(timeout=10)
            out[name] = browser.post(f"/nachricht/{pk}/sperren/").text

        threads = [threading.Thread(target=claim, args=(n, b)) for n, b in (("anna", on_a), ("bert", on_b))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        won = [name for name, html in results.items() if "Sie bearbeiten diese Nachricht" in html]
        holder = Message.objects.select_related("claimed_by").get(pk=fresh.pk).claimed_by
        assert len(won) == 1 and holder is not None and holder.username == won[0], (round_no, won, holder)
        winners.append(won[0])
    assert len(winners) == 20


def test_one_fetch_per_account_across_workers_and_a_killed_workers_fetch_is_taken_over(stack, cm, account):
    KimAccount.objects.filter(pk=account.pk).update(poll_interval_seconds=1)
    for i in range(300):
        cm.deliver(HOSPITAL, simple_mail(f"Befund {i:03d}", body=f"Zeile {i}\n" * 400))
    expected = set(cm.maildrop_uidls(HOSPITAL))
    # The simulator refuses a second session on a locked maildrop ([IN-USE]): count every attempt.
    store = cm.context.store
    refused: list[str] = []
    real_lock = store.lock

    def counting_lock(address: str) -> None:
        try:
            real_lock(address)
        except Exception:
            refused.append(address)
            raise

    store.lock = counting_lock

    first = stack.worker("worker-1")
    stack.beat()
    _wait_for(lambda: Message.objects.count() >= 40, 120, "the first worker to be fetching")
    stack.worker("worker-2")
    # Kill the worker that is in the middle of the fetch: no goodbye, no QUIT, its lease stays behind.
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    killed_at = Message.objects.count()
    assert killed_at < 300, "the first worker must die mid-way"

    _wait_for(lambda: Message.objects.count() == 300, 120, "the second worker to take the fetch over")
    _wait_for(lambda: cm.maildrop_uidls(HOSPITAL) == [], 30, "the maildrop to be emptied")
    stored = list(Message.objects.values_list("uidl", flat=True))
    assert sorted(stored) == sorted(expected), "every mail exactly once"
    assert refused == [], f"a second fetch of the same account ran at the same time ({len(refused)} refusals)"
    assert "mailbox.tasks.mailbox_fetch" in stack.log("worker-2")


def test_sigterm_stops_the_server_within_seconds_and_frees_its_pages_locks(stack):
    anna, _bert = _team()
    message = message_ingest(mailbox=MembershipFactory(user=anna).mailbox, uidl="t-1", raw=MAIL_WITH_PDF)
    Membership.objects.filter(user=anna).update(role=Membership.Role.PROCESSOR)
    server = stack.web("web", workers=2)
    browser = Browser(anna, server)
    page = browser.get(f"/nachricht/{message.pk}/")
    assert page.status_code == 200
    token = re.search(r'ws-connect="/ws/message/\d+/\?page=([^"]+)"', page.text).group(1)
    assert Message.objects.get(pk=message.pk).claimed_by_id == anna.pk

    async def stop_while_open() -> float:
        async with browser.socket(f"/ws/message/{message.pk}/?page={token}") as socket:
            await socket.send(json.dumps({"writing": "0"}))
            await asyncio.to_thread(_wait_for, Presence.objects.filter(user=anna).exists, 10, "the page's presence")
            started = time.monotonic()
            os.kill(stack.procs["web"].pid, signal.SIGTERM)
            await asyncio.to_thread(stack.procs["web"].wait, 30)
            return time.monotonic() - started

    took = asyncio.run(stop_while_open())
    assert took < 8, f"gunicorn took {took:.1f} s to stop"
    fresh = Message.objects.get(pk=message.pk)
    assert fresh.claimed_by_id is None, "the closing page must release its read-lock on shutdown"
    assert not Presence.objects.filter(user=anna).exists()
