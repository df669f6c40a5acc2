"""Retention against a writer storing identical bytes at the same moment, on two real PostgreSQL connections.

The store is content-addressed: a mail that arrives with the bytes of a blob retention is about to delete finds the
blob present, skips writing it and commits the row naming it a moment later. Retention must not delete the blob in
between (a row naming missing bytes); the deletion is deferred and retried once the blob is idle.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from mailbox.models import Message
from mailbox.services.ingest import message_ingest
from mailbox.services.retention import retention_run, retention_run_all
from mailbox.storage import BLOB_IDLE_SECONDS, blob_get, blob_path, blob_put
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30  # seconds; only ever reached when the test fails


def _age(sha: str, seconds: float) -> None:
    at = time.time() - seconds
    os.utime(blob_path(sha), (at, at))


def _deferred_dir() -> Path:
    return Path(settings.KIMPORTAL_BLOB_DIR) / ".retention-deferred"


def _done_long_ago(message: Message) -> Message:
    """Done 40 days ago, its bytes untouched since (as a mail that came then)."""
    Message.objects.filter(pk=message.pk).update(state=Message.State.DONE, done_at=timezone.now() - timedelta(days=40))
    _age(message.raw_sha256, 40 * 86400)
    return Message.objects.get(pk=message.pk)


class Writer(threading.Thread):
    """Runs `store` in a transaction on its own connection, signals, and commits only when told to."""

    def __init__(self, store: Callable[[], Any]) -> None:
        super().__init__()
        self.store = store
        self.stored = threading.Event()
        self.commit = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.result = self.store()
                self.stored.set()
                assert self.commit.wait(WAIT)
        except BaseException as exc:
            self.error = exc
        finally:
            self.stored.set()
            connection.close()

    def finish(self) -> Any:
        self.commit.set()
        self.join(WAIT)
        assert not self.is_alive()
        if self.error is not None:
            raise self.error
        return self.result


def test_identical_bytes_stored_while_retention_runs_keep_their_blob():
    box, other = MailboxFactory(retention_days_after_done=30), MailboxFactory()
    raw = simple_mail("Befund Schmidt", body="Hb 9,1")
    old = _done_long_ago(message_ingest(mailbox=box, uidl="a", raw=raw))

    # The same mail arrives in another mailbox: its blob is there, so only its row is written, and that row is
    # committed only after the retention run below has purged the old message and decided about the blob.
    writer = Writer(lambda: message_ingest(mailbox=other, uidl="b", raw=raw))
    writer.start()
    assert writer.stored.wait(WAIT)
    report = retention_run(mailbox=box, dry_run=False)
    new = writer.finish()

    assert new.raw_sha256 == old.raw_sha256
    assert blob_get(new.raw_sha256) == raw  # the new row's bytes are there
    assert report.message_ids == [old.pk]
    assert (report.blobs, report.blobs_deferred) == (0, 1)

    # The retry sees the row that names the blob now: it stops waiting and deletes nothing, even once idle.
    _age(new.raw_sha256, BLOB_IDLE_SECONDS + 60)
    retention_run_all(dry_run=False)
    assert blob_get(new.raw_sha256) == raw
    assert not any(_deferred_dir().iterdir())


def test_a_deferred_blob_nobody_names_goes_once_it_is_idle():
    box = MailboxFactory(retention_days_after_done=30)
    raw = simple_mail("Befund Weber", body="Kalium 5,9")
    old = _done_long_ago(message_ingest(mailbox=box, uidl="a", raw=raw))
    # A writer found the bytes present (and refreshed them) but never committed a row: it failed, or it is late.
    assert blob_put(raw) == old.raw_sha256

    assert retention_run(mailbox=box, dry_run=True).blobs_deferred == 1
    report = retention_run(mailbox=box, dry_run=False)
    assert (report.messages, report.blobs, report.blobs_deferred) == (1, 0, 1)
    assert blob_path(old.raw_sha256).exists()

    retention_run_all(dry_run=False)  # still within the time a writer may take: kept
    assert blob_path(old.raw_sha256).exists()
    _age(old.raw_sha256, BLOB_IDLE_SECONDS + 60)
    retention_run_all(dry_run=False)
    assert not blob_path(old.raw_sha256).exists()
    assert not any(_deferred_dir().iterdir())


def test_a_forward_started_while_retention_purges_its_original_keeps_the_bytes():
    # A forward names the original's blob without writing it; its row commits after retention purged the original.
    from mailbox.models import Membership
    from mailbox.services.compose import outgoing_forward_start
    from tests.mailbox.factories import MembershipFactory, UserFactory

    box = MailboxFactory(retention_days_after_done=30)
    sender = UserFactory()
    MembershipFactory(mailbox=box, user=sender, role=Membership.Role.PROCESSOR)
    raw = simple_mail("Befund Krause", body="CRP 12")
    letter = _done_long_ago(message_ingest(mailbox=box, uidl="f", raw=raw))

    writer = Writer(lambda: outgoing_forward_start(user=sender, message=letter))
    writer.start()
    assert writer.stored.wait(WAIT)
    report = retention_run(mailbox=box, dry_run=False)
    forward = writer.finish()

    assert report.message_ids == [letter.pk] and report.blobs_deferred == 1
    assert letter.raw_sha256 in set(forward.attachments.values_list("sha256", flat=True))
    assert blob_get(letter.raw_sha256) == raw  # the draft's attachment is there to be sent


def test_a_forward_of_an_original_whose_bytes_are_gone_is_refused():
    from mailbox.models import Membership
    from mailbox.services.compose import DraftInvalid, outgoing_forward_start
    from tests.mailbox.factories import MembershipFactory, UserFactory

    box = MailboxFactory()
    sender = UserFactory()
    MembershipFactory(mailbox=box, user=sender, role=Membership.Role.PROCESSOR)
    letter = message_ingest(mailbox=box, uidl="g", raw=simple_mail("Befund Lange", body="TSH 2,1"))
    blob_path(letter.raw_sha256).unlink()  # deleted by a retention run that had not yet marked the row
    with pytest.raises(DraftInvalid, match="gelöscht"):
        outgoing_forward_start(user=sender, message=letter)
    assert not letter.outgoing_replies.exists()


def test_a_blob_a_killed_deletion_left_aside_is_put_back_and_decided_again(monkeypatch):
    from mailbox import storage

    box = MailboxFactory(retention_days_after_done=30)
    raw = simple_mail("Befund Vogel", body="Na 139")
    old = _done_long_ago(message_ingest(mailbox=box, uidl="h", raw=raw))
    sha = old.raw_sha256

    # The deletion is killed between its two renames: the file stays in .deleting.
    rename = os.rename

    def killed(path, target):
        rename(path, target)
        raise KeyboardInterrupt

    monkeypatch.setattr(storage.os, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        retention_run(mailbox=box, dry_run=False)
    monkeypatch.undo()
    assert not blob_path(sha).exists()

    # Meanwhile the same bytes arrived and their row named the blob (its writer looked before the rename).
    other = MailboxFactory()
    Message.objects.create(mailbox=other, uidl="i", raw_sha256=sha, size=len(raw), received_at=timezone.now())

    real_sweep = storage.deleting_sweep
    monkeypatch.setattr("mailbox.services.retention.deleting_sweep", lambda: real_sweep(older_than_seconds=-1))
    retention_run_all(dry_run=False)
    assert blob_get(sha) == raw  # put back, and kept: a row names it
