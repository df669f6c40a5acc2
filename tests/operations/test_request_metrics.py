"""Request and socket counters in /metrics: counted by view, method and status, summed over worker processes."""

from __future__ import annotations

import json
import os
import runpy
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kimportal import requestmetrics
from mailbox.consumers import InboxConsumer
from tests.mailbox.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "gunicorn.conf.py"


def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    requestmetrics.register(registry)
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def requests_of(found, view: str, method: str, status: str) -> float:
    key = ("kimportal_http_requests_total", (("method", method), ("status", status), ("view", view)))
    return found.get(key, 0.0)


@pytest.mark.django_db
def test_each_answer_is_counted_by_view_method_and_status_and_timed(client):
    before = scraped()
    for _ in range(3):
        assert client.get("/login/").status_code == 200
    assert client.get("/no/such/page/at/all/").status_code in (302, 404)
    assert client.generic("BREW", "/login/").status_code == 405
    after = scraped()

    assert requests_of(after, "login", "GET", "200") - requests_of(before, "login", "GET", "200") == 3
    # A hostile method does not become a label of its own (labels stay few), nor does a path.
    assert requests_of(after, "login", "other", "405") - requests_of(before, "login", "other", "405") == 1
    unmatched = [k for k in after if k[0] == "kimportal_http_requests_total" and ("view", "unmatched") in k[1]]
    assert unmatched, "a path no view answers is counted as unmatched"
    assert not [k for k in after if any("/no/such" in value for _, value in k[1])]
    count = ("kimportal_http_request_duration_seconds_count", (("view", "login"),))
    assert after[count] - before.get(count, 0.0) == 4


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_sockets_open_and_refused_are_counted():
    before = scraped()
    refused = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    refused.scope["user"] = AnonymousUser()  # signed out in another tab
    connected, _ = await refused.connect(timeout=5)
    assert connected
    assert (await refused.receive_output(timeout=5))["code"] == 4401
    user = await database_sync_to_async(UserFactory)()
    live = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    live.scope["user"] = user
    assert (await live.connect(timeout=5))[0]
    while_open = scraped()
    await live.disconnect()
    after = scraped()

    key = ("kimportal_websocket_refusals_total", (("code", "4401"), ("kind", "inbox")))
    assert after.get(key, 0.0) - before.get(key, 0.0) == 1
    gauge = ("kimportal_websockets_open", (("kind", "inbox"),))
    assert while_open[gauge] - before.get(gauge, 0.0) == 1  # the refused one never counted as open
    assert after[gauge] == before.get(gauge, 0.0)


WORKER = """
import json, os, sys
from kimportal import requestmetrics
requestmetrics.REQUESTS.labels("inbox", "GET", "200").inc(int(sys.argv[1]))
requestmetrics.socket_opened("inbox")
print(json.dumps(os.getpid()))
"""

SCRAPE = """
from prometheus_client import CollectorRegistry, generate_latest
from kimportal import requestmetrics
registry = CollectorRegistry(auto_describe=False)
requestmetrics.register(registry)
print(generate_latest(registry).decode())
"""


def _run(code: str, *args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_counts_are_summed_and_a_dead_workers_open_sockets_leave(tmp_path, monkeypatch):
    # As gunicorn does (deploy/gunicorn.conf.py): the server names the directory before its workers start.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    conf = runpy.run_path(str(CONF))
    conf["on_starting"](object())
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": path}
        first = json.loads(_run(WORKER, "2", env=env))
        json.loads(_run(WORKER, "5", env=env))

        def numbers() -> dict[str, float]:
            found = {}
            for family in text_string_to_metric_families(_run(SCRAPE, env=env)):
                for sample in family.samples:
                    if sample.labels.get("view") == "inbox" or sample.name == "kimportal_websockets_open":
                        found[sample.name] = sample.value
            return found

        summed = numbers()
        assert summed["kimportal_http_requests_total"] == 7  # one process alone would show 2 or 5
        assert summed["kimportal_websockets_open"] == 2

        class Worker:
            pid = first

        conf["child_exit"](object(), Worker())
        after = numbers()
        assert after["kimportal_websockets_open"] == 1  # the dead worker's sockets are gone
        assert after["kimportal_http_requests_total"] == 7  # what it answered still counts
    finally:
        conf["on_exit"](object())
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert not Path(path).exists()


WORKER_TIMED = """
import json, os, sys
from kimportal import requestmetrics
requestmetrics.REQUESTS.labels("inbox", "GET", "200").inc()
requestmetrics.DURATION.labels("inbox").observe(float(sys.argv[1]))
print(json.dumps(os.getpid()))
"""


def test_ended_workers_values_move_to_archive_files_so_reloads_do_not_pile_up_files(monkeypatch):
    # Every HUP reload replaces all workers: one set of files per worker ever started would grow without end and
    # every scrape reads them all.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    conf = runpy.run_path(str(CONF))
    conf["on_starting"](object())
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)}

        def numbers() -> dict[tuple[str, str], float]:
            found = {}
            for family in text_string_to_metric_families(_run(SCRAPE, env=env)):
                for sample in family.samples:
                    if sample.labels.get("view") == "inbox":
                        found[(sample.name, sample.labels.get("le", ""))] = sample.value
            return found

        class Worker:
            pid = 0

        seen = []
        for round_, seconds in enumerate(("0.01", "0.3", "3", "0.01", "0.3", "3")):
            Worker.pid = json.loads(_run(WORKER_TIMED, seconds, env=env))
            conf["child_exit"](object(), Worker())
            seen.append(len(list(path.glob("*.db"))))
            summed = numbers()
            assert summed[("kimportal_http_requests_total", "")] == round_ + 1
            assert summed[("kimportal_http_request_duration_seconds_count", "")] == round_ + 1
        assert seen[-1] == seen[1] <= 2, seen  # one archive per kept kind, not one file per ended worker
        assert summed[("kimportal_http_request_duration_seconds_bucket", "0.025")] == 2
        assert summed[("kimportal_http_request_duration_seconds_bucket", "0.5")] == 4
        assert summed[("kimportal_http_request_duration_seconds_bucket", "+Inf")] == 6
        assert round(summed[("kimportal_http_request_duration_seconds_sum", "")], 2) == 6.62
        live = json.loads(_run(WORKER_TIMED, "0.01", env=env))  # a worker still running adds its own file
        assert numbers()[("kimportal_http_requests_total", "")] == 7
        assert any(str(live) in p.name for p in path.glob("*.db"))
    finally:
        conf["on_exit"](object())


def test_a_named_directory_is_emptied_when_the_server_starts(tmp_path, monkeypatch):
    named = tmp_path / "metrics"
    named.mkdir()
    (named / "counter_4242.db").write_bytes(b"yesterday")
    (named / "keep.txt").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(named))
    conf = runpy.run_path(str(CONF))
    conf["on_starting"](object())
    assert sorted(p.name for p in named.iterdir()) == ["keep.txt"]
    conf["on_exit"](object())
    assert named.exists(), "a directory the environment named is the operator's: it stays"


def test_a_master_that_inherited_the_directory_leaves_it_to_its_maker(monkeypatch):
    # USR2: the new master runs on in the directory the old one made; the old one exits and must not remove it.
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("KIMPORTAL_METRICS_DIR_MADE", raising=False)
    conf = runpy.run_path(str(CONF))
    conf["on_starting"](object())
    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    try:
        monkeypatch.setenv("KIMPORTAL_METRICS_DIR_MADE", str(os.getpid() + 1))  # made by another master
        conf["on_exit"](object())
        assert path.exists()
    finally:
        monkeypatch.setenv("KIMPORTAL_METRICS_DIR_MADE", str(os.getpid()))
        conf["on_exit"](object())
    assert not path.exists()


def test_a_damaged_metrics_file_is_logged_and_does_not_stop_the_server(tmp_path, caplog):
    # child_exit runs in gunicorn's master: an exception there would halt the master and every worker.
    from kimportal.requestmetrics import process_ended

    # Says it uses 64 bytes, and its first entry claims a 10,000-byte key: prometheus_client refuses to read it.
    damaged = struct.pack("i", 64) + b"\0" * 4 + struct.pack("i", 10_000) + b"\0" * 52
    (tmp_path / "counter_4242.db").write_bytes(damaged)
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    process_ended(4242, str(tmp_path))
    assert not (tmp_path / "gauge_livesum_4242.db").exists()  # its open sockets still leave the sums
    assert (tmp_path / "counter_4242.db").exists()
    assert "could not be archived" in caplog.text
