"""The embedded default (no configuration: SQLite files) migrates from nothing, as `make demo` does it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_fresh_embedded_install_migrates_both_files(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(KIMPORTAL_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="kimportal.settings")
    for args in (["migrate", "--noinput"], ["migrate", "--database", "channels", "--noinput"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(tmp_path / "channels.sqlite3") as channels:
        tables = {row[0] for row in channels.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    # The channel layer's file holds the channel layer only: the portal's data migrations ran once, in the main file.
    assert {t for t in tables if not t.startswith(("sqlite_", "django_migrations"))} == {
        "channels_lite_event",
        "channels_lite_groupmembership",
    }
    with sqlite3.connect(tmp_path / "kimportal.sqlite3") as main:
        columns = {row[1] for row in main.execute("PRAGMA table_info(mailbox_kimaccount)")}
    assert "transport" in columns and "tls_mode" not in columns
