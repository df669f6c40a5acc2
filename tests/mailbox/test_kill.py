"""A fetch process killed with SIGKILL in the middle of 500 messages (mid-batch) loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from mailbox.models import KimAccount, Message
from mailbox.storage import blob_get
from tests.mailbox.conftest import HOSPITAL, simple_mail

ROOT = Path(__file__).resolve().parents[2]


def _subprocess_env() -> dict[str, str]:
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    if db["ENGINE"].endswith("sqlite3"):
        pytest.fail("this test needs PostgreSQL (DATABASE_URL)")
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["KIMPORTAL_BLOB_DIR"] = str(settings.KIMPORTAL_BLOB_DIR)
    env["KIMPORTAL_FETCH_LEASE_SECONDS"] = "2"
    return env


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_fetch_then_restart_stores_every_message_exactly_once(cm, account):
    for i in range(500):
        cm.deliver(HOSPITAL, simple_mail(f"Nachricht {i:03d}", body=f"Inhalt {i}\n" * 40))
    expected = set(cm.maildrop_uidls(HOSPITAL))
    assert len(expected) == 500
    cmd = [sys.executable, "manage.py", "mailbox_fetch", "--account", str(account.pk)]
    env = _subprocess_env()

    worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: Message.objects.count() >= 100, 120, "the first 100 messages")
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    killed_at = Message.objects.count()
    assert 100 <= killed_at < 500, f"the worker must die mid-way (stored {killed_at})"
    assert set(cm.maildrop_uidls(HOSPITAL)) == expected, "no DELE may take effect without QUIT"

    # The killed worker's lease runs out by itself; then a restarted worker takes over.
    _wait_for(
        lambda: not KimAccount.objects.filter(pk=account.pk, fetch_lease_until__gt=timezone.now()).exists(),
        10,
        "the dead worker's lease to expire",
    )
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    uidls = list(Message.objects.filter(mailbox=account.mailbox).values_list("uidl", flat=True))
    assert len(uidls) == 500
    assert set(uidls) == expected
    assert cm.maildrop_uidls(HOSPITAL) == []
    # Every row names bytes that reached the disk intact (blob_get verifies the checksum), including
    # the rows of the batch the kill interrupted, whose blobs were written before and again after it.
    for message in Message.objects.all():
        assert f"Subject: {message.subject}".encode() in blob_get(message.raw_sha256)
