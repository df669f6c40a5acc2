"""The process model's numbers (threads, sockets, connections, leases) stop the start when they are no number or too
small: KIMPORTAL_WEB_CONCURRENCY=0 gave every request one of zero slots, and the portal hung without a word."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHOW = "import django; django.setup(); from django.conf import settings; print(repr(getattr(settings, {name!r})))"


def start(tmp_path: Path, name: str, value: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "kimportal.settings", "KIMPORTAL_DATA_DIR": str(tmp_path)}
    # The pool's size is read for PostgreSQL only: the variable is judged there.
    env.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kimportal")
    env.setdefault("SECRET_KEY", "test-only")
    env.setdefault("KIMPORTAL_CREDENTIALS_KEYS", "Wd0pM6hF7h4aWv8d5u3VbQ0bq2m0o9xJbnS0kz9m3dE=")
    env[name] = value
    return subprocess.run(
        [sys.executable, "-c", SHOW.format(name=name)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("KIMPORTAL_WEB_CONCURRENCY", "0", "KIMPORTAL_WEB_CONCURRENCY must be at least 1, not '0'"),
        ("KIMPORTAL_WEB_CONCURRENCY", "acht", "KIMPORTAL_WEB_CONCURRENCY must be a whole number, not 'acht'"),
        ("KIMPORTAL_WEB_CONCURRENCY", "8.0", "KIMPORTAL_WEB_CONCURRENCY must be a whole number, not '8.0'"),
        ("KIMPORTAL_LIVE_LAG_LIMIT", "nan", "KIMPORTAL_LIVE_LAG_LIMIT must be a number, not 'nan'"),
        ("KIMPORTAL_LIVE_LAG_LIMIT", "inf", "KIMPORTAL_LIVE_LAG_LIMIT must be a number, not 'inf'"),
        ("KIMPORTAL_SOCKET_DB_THREADS", "-2", "KIMPORTAL_SOCKET_DB_THREADS must be at least 1, not '-2'"),
        ("KIMPORTAL_MAX_SOCKETS_PER_WORKER", "0", "KIMPORTAL_MAX_SOCKETS_PER_WORKER must be at least 1"),
        ("KIMPORTAL_MAX_SOCKETS_PER_SESSION", "0", "KIMPORTAL_MAX_SOCKETS_PER_SESSION must be at least 1"),
        ("KIMPORTAL_CLAIM_SECONDS", "0", "KIMPORTAL_CLAIM_SECONDS must be at least 1"),
        ("KIMPORTAL_FETCH_LEASE_SECONDS", "0", "KIMPORTAL_FETCH_LEASE_SECONDS must be at least 1"),
        ("KIMPORTAL_PG_POOL_SIZE", "0", "KIMPORTAL_PG_POOL_SIZE must be at least 1"),
        ("KIMPORTAL_LIVE_LAG_LIMIT", "0.5", "KIMPORTAL_LIVE_LAG_LIMIT must be at least 1, not '0.5'"),
    ],
)
def test_a_value_the_process_model_cannot_run_on_stops_the_start(tmp_path, name, value, says) -> None:
    done = start(tmp_path, name, value)
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {says}" in done.stderr


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("KIMPORTAL_WEB_CONCURRENCY", " 3 ", "3"),
        ("KIMPORTAL_LIVE_LAG_LIMIT", "2.5", "2.5"),
        ("KIMPORTAL_CLAIM_SECONDS", "", "60"),
    ],
)
def test_good_values_are_taken_and_empty_means_the_default(tmp_path, name, value, read) -> None:
    done = start(tmp_path, name, value)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == read


def gunicorn(option: str, workers: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """deploy/gunicorn.conf.py read by gunicorn itself (--check-config, --print-config), with KIMPORTAL_WEB_WORKERS."""
    env = {**os.environ, "KIMPORTAL_WEB_WORKERS": workers, "KIMPORTAL_DATA_DIR": str(tmp_path)}
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "deploy/gunicorn.conf.py", option]
    return subprocess.run(
        [*command, "kimportal.asgi:application"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("value", ["0", "zwei", "-1", "²"])
def test_gunicorn_refuses_a_server_without_workers(tmp_path, value) -> None:
    done = gunicorn("--check-config", value, tmp_path)
    assert done.returncode != 0
    assert f"KIMPORTAL_WEB_WORKERS must be a whole number of at least 1, not '{value}'" in done.stderr


def test_gunicorn_takes_a_worker_count(tmp_path) -> None:
    done = gunicorn("--print-config", "3", tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any(line.replace(" ", "") == "workers=3" for line in done.stdout.splitlines())
