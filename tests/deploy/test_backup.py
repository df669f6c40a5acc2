"""The documented backup and restore (deploy/backup.sh, deploy/restore.sh) on a database with mail and its blobs.

A backup is only as good as its restore: the set is restored into a fresh database and a fresh blob directory,
then the portal's own code reads every message's bytes from there (checksums verified) and finds no migration
missing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from psycopg import sql

from mailbox.models import Attachment, Message
from mailbox.services.ingest import message_ingest
from mailbox.storage import blob_get, blob_path
from tests.e2e.conftest import ROOT, portal_env
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db(transaction=True)

PLAIN_MAIL = (
    b"From: Labor <labor@labor-test.kim.telematik-test>\r\n"
    b"To: station@klinikum-test.kim.telematik-test\r\n"
    b"Subject: Befund Kalium\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    b"Kalium 4,1 mmol/l.\r\n"
)

# Runs in a portal process pointed at the restored database and blob directory (the environment).
READ_BACK = """
import hashlib, json
import django
django.setup()
from mailbox.models import Attachment, Message
from mailbox.storage import blob_get
print(json.dumps({
    "messages": {m.uidl: hashlib.sha256(blob_get(m.raw_sha256)).hexdigest() for m in Message.objects.all()},
    "attachments": sorted(hashlib.sha256(blob_get(a.sha256)).hexdigest() for a in Attachment.objects.all()),
}))
"""


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _admin_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/postgres"


def _drop(name: str) -> None:
    with psycopg.connect(_admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _database_exists(name: str) -> bool:
    with psycopg.connect(_admin_url()) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def _snapshot(url: str) -> dict[str, object]:
    """Every table's rows (as text, sorted, hashed), the sequences' positions and the index names."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        rows = {}
        for table in sorted(tables):
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t"
            )
            rows[table] = conn.execute(query.format(sql.Identifier(table))).fetchone()
        sequences = dict(
            conn.execute("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'").fetchall()
        )
        indexes = sorted(r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"))
    return {"rows": rows, "sequences": sequences, "indexes": indexes}


@pytest.fixture
def mail() -> dict[str, bytes]:
    """A mailbox with a member and three stored messages (one with a PDF attachment), their blobs on disk."""
    user = UserFactory(username="backup-user")
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=user)
    raws = {"pdf-1": MAIL_WITH_PDF, "plain-1": PLAIN_MAIL, "plain-2": PLAIN_MAIL.replace(b"4,1", b"5,9")}
    for uidl, raw in raws.items():
        message_ingest(mailbox=box, uidl=uidl, raw=raw)
    assert Attachment.objects.count() == 1
    return raws


@pytest.fixture
def restored_name() -> Iterator[str]:
    name = f"{settings.DATABASES['default']['NAME']}_restored"
    _drop(name)  # left over from an interrupted run
    yield name
    _drop(name)


def _backup(env: dict[str, str], dest: Path) -> Path:
    done = _run([str(ROOT / "deploy" / "backup.sh"), str(dest)], env)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip().splitlines()[-1])


def test_backup_restores_into_a_fresh_database_and_blob_dir(mail, restored_name, tmp_path):
    env = portal_env(tmp_path)
    backup_set = _backup(env, tmp_path / "backups")
    assert {p.name for p in backup_set.iterdir()} == {"database.dump", "blobs", "migrations.txt", "SHA256SUMS"}
    assert (tmp_path / "backups" / "latest").resolve() == backup_set
    assert "mailbox.0004_message_search_postgres" in (backup_set / "migrations.txt").read_text().split()

    restored_blobs = tmp_path / "restored" / "blobs"
    base = env["DATABASE_URL"].rsplit("/", 1)[0]
    restored = {**env, "DATABASE_URL": f"{base}/{restored_name}", "KIMPORTAL_BLOB_DIR": str(restored_blobs)}
    done = _run([str(ROOT / "deploy" / "restore.sh"), str(backup_set)], restored)
    assert done.returncode == 0, done.stderr

    # The same rows in every table, the sequences where they were (new rows get new ids), and the indexes
    # that matter (the GIN full-text index and the partial index for open messages) rebuilt.
    original, copy = _snapshot(env["DATABASE_URL"]), _snapshot(restored["DATABASE_URL"])
    assert copy == original
    assert original["rows"]["mailbox_message"][0] == 3
    assert {"message_search_tsv", "message_open_by_mailbox"} <= set(copy["indexes"])

    # The portal reads every message's bytes from the restored blob directory, checksum verified.
    read = _run([sys.executable, "-c", READ_BACK], {**restored, "DJANGO_SETTINGS_MODULE": "kimportal.settings"})
    assert read.returncode == 0, read.stderr
    found = json.loads(read.stdout)
    assert found["messages"] == {uidl: hashlib.sha256(raw).hexdigest() for uidl, raw in mail.items()}
    assert found["attachments"] == [hashlib.sha256(blob_get(a.sha256)).hexdigest() for a in Attachment.objects.all()]

    check = _run([sys.executable, "manage.py", "migrate", "--check"], restored)
    assert check.returncode == 0, check.stdout + check.stderr


def test_restore_refuses_damaged_blobs_and_targets_in_use(mail, restored_name, tmp_path):
    env = portal_env(tmp_path)
    backup_set = _backup(env, tmp_path / "backups")
    base = env["DATABASE_URL"].rsplit("/", 1)[0]
    fresh = {**env, "DATABASE_URL": f"{base}/{restored_name}", "KIMPORTAL_BLOB_DIR": str(tmp_path / "fresh")}
    restore = [str(ROOT / "deploy" / "restore.sh"), str(backup_set)]

    # Never over the live database or into a blob directory that holds mail.
    over_live = _run(restore, {**fresh, "DATABASE_URL": env["DATABASE_URL"]})
    assert over_live.returncode != 0 and "already has tables" in over_live.stderr
    into_used = _run(restore, {**fresh, "KIMPORTAL_BLOB_DIR": env["KIMPORTAL_BLOB_DIR"]})
    assert into_used.returncode != 0 and "is not empty" in into_used.stderr
    assert Message.objects.count() == 3

    # A blob in the set whose bytes changed is named, and nothing is created.
    sha = Message.objects.get(uidl="plain-1").raw_sha256
    damaged = backup_set / "blobs" / blob_path(sha).relative_to(settings.KIMPORTAL_BLOB_DIR)
    damaged.chmod(0o640)
    damaged.write_bytes(PLAIN_MAIL.replace(b"Kalium", b"Natrium"))
    refused = _run(restore, fresh)
    assert refused.returncode != 0
    assert sha in refused.stderr
    assert not _database_exists(restored_name)
    assert not (tmp_path / "fresh").exists()


def test_backup_sets_share_unchanged_blobs_and_old_sets_go(mail, tmp_path):
    env = {**portal_env(tmp_path), "KIMPORTAL_BACKUP_KEEP": "2"}
    dest = tmp_path / "backups"
    first = _backup(env, dest)
    box = Message.objects.first().mailbox
    newer = message_ingest(mailbox=box, uidl="after-first", raw=PLAIN_MAIL.replace(b"Kalium", b"Natrium"))
    second = _backup(env, dest)

    def blob(backup_set: Path, sha: str) -> Path:
        return backup_set / "blobs" / blob_path(sha).relative_to(settings.KIMPORTAL_BLOB_DIR)

    old = Message.objects.get(uidl="pdf-1").raw_sha256
    # The same file, not a copy: a set costs only the mail that arrived since the previous one.
    assert blob(first, old).stat().st_ino == blob(second, old).stat().st_ino
    assert not blob(first, newer.raw_sha256).exists() and blob(second, newer.raw_sha256).is_file()

    third = _backup(env, dest)
    assert sorted(p.name for p in dest.iterdir() if p.name.startswith("kimportal-")) == [second.name, third.name]
    assert (dest / "latest").resolve() == third
    assert blob(third, old).read_bytes() == MAIL_WITH_PDF
    assert os.stat(blob(third, old)).st_nlink == 2  # second and third; the first set's link is gone
