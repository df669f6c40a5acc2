"""Ingest benchmark: 1,000 realistic mails fetched over the simulator's real POP3 into PostgreSQL.

Prints one JSON object (scripts/bench.sh merges it into bench/results/latest.json):
  ingest_msgs_per_s        mailbox.services.fetch.account_fetch() on a maildrop of --mails mails (≈50 KB each:
                           tests/mailbox/corpus.make_hospital_letter(), text + HTML quoted-printable and a PDF
                           base64, with its own subject, Message-ID, text and PDF bytes per mail): POP3 over
                           TLS (pinned certificate), blobs fsynced, parse, rows committed, DELE, QUIT, live
                           updates over Redis — the whole durable path
  ingest_raw_msgs_per_s    the same mails over the same simulator with poplib alone: RETR, then
                           email.message_from_bytes(raw, policy=email.policy.default), DELE, QUIT
                           (what any client pays for the protocol and the stdlib parse)
  ingest_ratio             ingest_msgs_per_s / ingest_raw_msgs_per_s
Each figure is the median over --rounds rounds (after a small warm-up round of both); raw and ingest
rounds alternate, so neither gets a warmer page cache or a quieter machine.

Its own database (kimportal_bench_ingest, created and migrated when missing) and a fresh blob
directory per round under var/ (the blob store is content-addressed: a reused one would skip the
writes). One process, one worker: `make bench` or `.venv/bin/python bench/ingest.py [--mails N]`.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import hashlib
import json
import os
import platform
import poplib
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")
# Its own database, whatever DATABASE_URL the shell has: rounds delete and re-add thousands of rows.
os.environ["DATABASE_URL"] = os.environ.get(
    "KIMPORTAL_BENCH_INGEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kimportal_bench_ingest"
)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("KIMPORTAL_CREDENTIALS_KEYS", "Wd0pM6hF7h4aWv8d5u3VbQ0bq2m0o9xJbnS0kz9m3dE=")
os.environ.setdefault("KIMPORTAL_DATA_DIR", str(ROOT / "var" / "bench-ingest"))
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from mailbox.clients.pop3 import pop3_session  # noqa: E402
from mailbox.models import KimAccount, Mailbox, Message  # noqa: E402
from mailbox.services.accounts import account_endpoint  # noqa: E402
from mailbox.services.fetch import account_fetch  # noqa: E402
from tests.mailbox import corpus  # noqa: E402
from tisim.cm import CMSimulator  # noqa: E402

RECIPIENT = "bench-ingest@klinikum-bench.kim.telematik-test"
PASSWORD = "bench-secret"
WARMUP_MAILS = 30
LETTER = corpus.make_hospital_letter()
_PDF_HEADER = b"Content-Transfer-Encoding: base64\r\n\r\n"
PDF_START = LETTER.index(_PDF_HEADER) + len(_PDF_HEADER)


def letter(i: int) -> bytes:
    """The corpus' discharge letter as mail number *i*: its own subject, Message-ID, text and PDF bytes.

    Different PDF bytes per mail matter: the blob store is content-addressed and would write a
    PDF that all mails share only once.
    """
    # The PDF's first base64 line (57 bytes): the PDF header and bytes of this mail's own.
    first_line = base64.b64encode(b"%PDF-1.4\n" + hashlib.sha512(b"%d" % i).digest()[:48])
    assert LETTER[PDF_START + 76 : PDF_START + 78] == b"\r\n" and len(first_line) == 76
    raw = LETTER[:PDF_START] + first_line + LETTER[PDF_START + 76 :]
    raw = raw.replace(b"<letter-1@", b"<letter-%d@" % i, 1)
    raw = raw.replace(b"Entlassbrief_M=C3=BCller?=", b"Entlassbrief_M=C3=BCller_%d?=" % i, 1)
    return raw.replace(b"Sehr geehrte Frau Kollegin,", b"Sehr geehrte Frau Kollegin, Fall %d:" % i)


def log(text: str) -> None:
    # stdout carries the JSON only (scripts/bench.sh merges it); progress goes to stderr.
    print(f"[ingest] {text}", file=sys.stderr, flush=True)


def database_ensure() -> None:
    import psycopg
    from psycopg import sql

    base, name = os.environ["DATABASE_URL"].rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    call_command("migrate", verbosity=0)


def account_prepare(cm: CMSimulator) -> KimAccount:
    mailbox, _ = Mailbox.objects.update_or_create(address=RECIPIENT, defaults={"display_name": "Bench Kardiologie"})
    Message.objects.filter(mailbox=mailbox).delete()
    KimAccount.objects.filter(mailbox=mailbox).delete()
    account = KimAccount(
        mailbox=mailbox,
        cm_host="127.0.0.1",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        tls_mode=KimAccount.TlsMode.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        fachdienst="klinikum-bench.kim.telematik-test:465",
        mandant_id="Mandant1",
        client_system_id="KIM-Portal",
        workplace_id="AP1",
        timeout_seconds=30.0,
    )
    account.set_password(PASSWORD)
    account.save()
    return account


def deliver(cm: CMSimulator, mails: list[bytes]) -> None:
    for raw in mails:
        cm.deliver(RECIPIENT, raw)


def round_ingest(cm: CMSimulator, account: KimAccount, mails: list[bytes]) -> float:
    Message.objects.filter(mailbox=account.mailbox).delete()
    deliver(cm, mails)
    blobs = Path(tempfile.mkdtemp(prefix="blobs-", dir=settings.DATA_DIR))
    settings.KIMPORTAL_BLOB_DIR = blobs
    try:
        started = time.perf_counter()
        result = account_fetch(account_id=account.pk)
        elapsed = time.perf_counter() - started
    finally:
        shutil.rmtree(blobs, ignore_errors=True)
    if result.error or len(result.stored) != len(mails) or cm.maildrop_uidls(RECIPIENT):
        raise SystemExit(f"ingest round failed: {result.error or len(result.stored)} stored")
    return len(mails) / elapsed


def round_raw(cm: CMSimulator, account: KimAccount, mails: list[bytes]) -> float:
    deliver(cm, mails)
    started = time.perf_counter()
    # The portal's own connection code (same TLS, same pinning), then poplib alone.
    with pop3_session(account_endpoint(account, "pop3")) as session:
        conn: poplib.POP3 = session._conn
        conn.uidl()
        count = len(conn.list()[1])
        for number in range(1, count + 1):
            _, lines, _ = conn.retr(number)
            email.message_from_bytes(b"\r\n".join(lines) + b"\r\n", policy=email.policy.default)
            conn.dele(number)
        conn.quit()
    elapsed = time.perf_counter() - started
    if count != len(mails) or cm.maildrop_uidls(RECIPIENT):
        raise SystemExit(f"raw round failed: {count} of {len(mails)}")
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    database_ensure()
    mails = [letter(i) for i in range(args.mails)]
    with tempfile.TemporaryDirectory(prefix="tisim-", dir=settings.DATA_DIR) as cm_dir:
        cm = CMSimulator(Path(cm_dir), accounts={RECIPIENT: PASSWORD}, tls=True)
        cm.start()
        try:
            account = account_prepare(cm)
            warmup = [letter(args.mails + i) for i in range(WARMUP_MAILS)]
            round_raw(cm, account, warmup)
            round_ingest(cm, account, warmup)
            raw_rates, ingest_rates = [], []
            for number in range(args.rounds):
                raw_rates.append(round_raw(cm, account, mails))
                ingest_rates.append(round_ingest(cm, account, mails))
                log(f"round {number + 1}: raw {raw_rates[-1]:.0f}/s, ingest {ingest_rates[-1]:.0f}/s")
        finally:
            cm.stop()
        Message.objects.filter(mailbox=account.mailbox).delete()

    ingest = statistics.median(ingest_rates)
    raw = statistics.median(raw_rates)
    result: dict = {
        "ingest_msgs_per_s": round(ingest, 1),
        "ingest_raw_msgs_per_s": round(raw, 1),
        "ingest_ratio": round(ingest / raw, 2),
    }
    result["meta"] = {
        "ingest_machine": f"{platform.machine()} {os.cpu_count()} CPUs, py{platform.python_version()}",
        "ingest_mails": args.mails,
        "ingest_rounds": args.rounds,
        "ingest_mail_bytes_avg": round(sum(map(len, mails)) / len(mails)),
        "ingest_rounds_msgs_per_s": [round(r, 1) for r in ingest_rates],
        "ingest_raw_rounds_msgs_per_s": [round(r, 1) for r in raw_rates],
        "ingest_path": (
            "account_fetch in this process (one worker) against tisim's CMSimulator on loopback, POP3 over TLS "
            "with a pinned certificate; PostgreSQL; blobs fsynced on the local disk; live updates to Redis"
        ),
        "ingest_raw_path": (
            "poplib RETR + email.message_from_bytes(policy=default) + DELE, QUIT; same TLS session setup"
        ),
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
