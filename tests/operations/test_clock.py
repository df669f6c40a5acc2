"""The operations page's "Uhrzeit" line: this server's, Redis's and the Celery worker's clocks against PostgreSQL's,
with the real PostgreSQL and Redis (the machine's clock cannot be set from a test: a process's own view of it is
shifted instead)."""

from __future__ import annotations

import json
import re
import time
import types

import pytest
import redis
from django.utils import translation

from operations.services import clock, heartbeat
from operations.services.health import forget_report, run_checks
from operations.services.results import OK, WARNING

pytestmark = pytest.mark.django_db


def shifted_clock(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """This process's clock, as operations.services.clock reads it, `seconds` ahead of the machine's."""
    real = time.time
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(time=lambda: real() + seconds))


def test_clocks_in_step_are_green_and_the_readings_are_close(ops):
    database = clock.database_reading()
    assert abs(database.offset) < 0.05 and 0 <= database.error < 0.05
    report = run_checks()
    line = report.component("clock")
    assert line.state == OK, str(line.text)
    assert "Die Uhren stimmen überein" in str(line.text)


def test_this_servers_clock_ahead_is_a_warning_naming_it(ops, monkeypatch):
    shifted_clock(monkeypatch, 3.0)
    report = run_checks()
    line = report.component("clock")
    assert line.state == WARNING
    text = str(line.text)
    # Redis is read with the same shifted clock: only this server is off, and by about 3 s.
    assert re.search(r"Die Uhr dieses Webservers geht (299\d|300\d) ms gegenüber der Datenbank vor\.", text), text
    assert "Redis" not in text and "worker" not in text
    assert "chrony" in text and "200 ms" in text
    assert "clock" in report.warnings() and report.failing() == []


def test_a_skew_within_the_limit_is_green(ops, monkeypatch, settings):
    settings.KIMPORTAL_CLOCK_SKEW_LIMIT = 1.0
    shifted_clock(monkeypatch, 0.5)
    assert run_checks().component("clock").state == OK


def test_the_worker_measures_its_clock_with_its_heartbeat(ops, monkeypatch):
    # The worker's process runs 90 s behind: its stamp says so (with a fresh "at": the worker is alive).
    shifted_clock(monkeypatch, -90.0)
    heartbeat.stamp_worker("worker@station3", time.time())
    monkeypatch.undo()
    worker = heartbeat.read_stamps()[1]
    assert worker.clock_offset is not None and -91 < worker.clock_offset < -89
    line = run_checks().component("clock")
    assert line.state == WARNING
    assert "Die Uhr des Celery workers worker@station3 geht 90 s gegenüber der Datenbank nach." in str(line.text)


def test_a_worker_whose_clock_is_behind_is_alive_and_its_clock_is_named(ops, monkeypatch):
    # The worker's clock runs 10 minutes behind: its stamp, written by that clock, reads 10 minutes old the moment it
    # is written. By the database's clock (the offset it measured) it is fresh.
    shifted_clock(monkeypatch, -600.0)
    heartbeat.stamp_worker("worker@station3", time.time() - 600)
    monkeypatch.undo()
    report = run_checks()
    assert report.component("celery_worker").state == OK, str(report.component("celery_worker").text)
    assert "Die Uhr des Celery workers worker@station3 geht 10 min gegenüber der Datenbank nach." in str(
        report.component("clock").text
    )


def test_a_dead_worker_whose_clock_is_ahead_is_not_taken_for_alive(ops, monkeypatch):
    # Its last stamp came 10 minutes ago, from a clock 10 minutes ahead: by that clock it looks written just now.
    shifted_clock(monkeypatch, 600.0)
    heartbeat.stamp_worker("worker@station3", time.time())
    monkeypatch.undo()
    assert run_checks().component("celery_worker").state != OK


def test_a_dead_workers_old_clock_reading_is_not_judged(ops, monkeypatch):
    shifted_clock(monkeypatch, 30.0)
    heartbeat.stamp_worker("worker@old", time.time() - 3600)
    monkeypatch.undo()
    assert run_checks().component("clock").state == OK


def test_redis_clock_off_is_named(ops, monkeypatch):
    real = redis.Redis.time

    def ahead(self):  # Redis's clock cannot be set here: its answer to TIME is moved 5 s on
        seconds, micros = real(self)
        return seconds + 5, micros

    monkeypatch.setattr(redis.Redis, "time", ahead)
    text = str(run_checks().component("clock").text)
    assert "Die Uhr von Redis geht" in text and "vor." in text
    assert "Webservers" not in text


def test_english_and_in_health_json(client, ops, monkeypatch):
    shifted_clock(monkeypatch, -2.0)
    report = run_checks()
    with translation.override("en"):
        text = str(report.component("clock").text)
    assert "The clock of this web server is" in text and "behind the database" in text, text
    forget_report()
    response = client.get("/health/")
    body = json.loads(response.content)
    assert body["components"]["clock"] == "warning" and "clock" in body["warnings"]
