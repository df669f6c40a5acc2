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

The blob store is one in use: its 65,536 directories (xx/yy/) exist, as they do once a portal has
stored a few hundred thousand blobs, and every blob of a round is new (this run's mails differ from
every earlier run's; a round's files are removed after it, its directories stay). --fresh-store
measures a store without directories instead (each new blob then also makes its directories:
about 1.4 ms of kernel time per mail on an ext4 root, more than the fsyncs cost).

Its own database (kimportal_bench_ingest, created and migrated when missing) and blob store
(var/bench-ingest/blobs-settled, its directories made once, ≈260 MB). One process, one worker:
`make bench` or `.venv/bin/python bench/ingest.py [--mails N] [--fresh-store]`.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import hashlib
import json
import poplib
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchenv import django_for_bench, machine  # noqa: E402

django_for_bench(
    database="kimportal_bench_ingest", database_env="KIMPORTAL_BENCH_INGEST_DATABASE_URL", data_dir="bench-ingest"
)

from django.conf import settings  # noqa: E402

from bench import benchcm  # noqa: E402
from mailbox.clients.pop3 import pop3_session  # noqa: E402
from mailbox.models import Attachment, KimAccount, Message  # noqa: E402
from mailbox.services.accounts import account_endpoint  # noqa: E402
from mailbox.services.fetch import account_fetch  # noqa: E402
from mailbox.storage import blob_path  # noqa: E402
from tests.mailbox import corpus  # noqa: E402
from tisim.cm import CMSimulator  # noqa: E402

RECIPIENT = "bench-ingest@klinikum-bench.kim.telematik-test"
PASSWORD = "bench-secret"
WARMUP_MAILS = 30
LETTER = corpus.make_hospital_letter()
_PDF_HEADER = b"Content-Transfer-Encoding: base64\r\n\r\n"
PDF_START = LETTER.index(_PDF_HEADER) + len(_PDF_HEADER)


SETTLED_STORE = Path(settings.DATA_DIR) / "blobs-settled"


def letter(i: int, run: bytes = b"") -> bytes:
    """The corpus' discharge letter as mail number *i*: its own subject, Message-ID, text and PDF bytes.

    Different PDF bytes per mail (and per *run*) matter: the blob store is content-addressed and
    would write a PDF that all mails share only once, or not at all if an earlier run left it.
    """
    # The PDF's first base64 line (57 bytes): the PDF header and bytes of this mail's own.
    first_line = base64.b64encode(b"%PDF-1.4\n" + hashlib.sha512(b"%s-%d" % (run, i)).digest()[:48])
    assert LETTER[PDF_START + 76 : PDF_START + 78] == b"\r\n" and len(first_line) == 76
    raw = LETTER[:PDF_START] + first_line + LETTER[PDF_START + 76 :]
    raw = raw.replace(b"<letter-1@", b"<letter-%d@" % i, 1)
    raw = raw.replace(b"Entlassbrief_M=C3=BCller?=", b"Entlassbrief_M=C3=BCller_%d?=" % i, 1)
    return raw.replace(b"Sehr geehrte Frau Kollegin,", b"Sehr geehrte Frau Kollegin, Fall %d:" % i)


def log(text: str) -> None:
    # stdout carries the JSON only (scripts/bench.sh merges it); progress goes to stderr.
    print(f"[ingest] {text}", file=sys.stderr, flush=True)


def account_prepare(cm: CMSimulator) -> KimAccount:
    return benchcm.account_prepare(cm, address=RECIPIENT, display_name="Bench Kardiologie", password=PASSWORD)


def deliver(cm: CMSimulator, mails: list[bytes]) -> None:
    for raw in mails:
        cm.deliver(RECIPIENT, raw)


def settled_store() -> Path:
    """The blob store's directory tree as a portal in use has it (made once, ≈20 s)."""
    complete = SETTLED_STORE / ".tree-complete"
    if not complete.exists():
        log(f"making the blob store's 65,536 directories in {SETTLED_STORE} (once)")
        for first in range(256):
            for second in range(256):
                (SETTLED_STORE / f"{first:02x}" / f"{second:02x}").mkdir(parents=True, exist_ok=True)
        complete.touch()
    return SETTLED_STORE


def round_ingest(cm: CMSimulator, account: KimAccount, mails: list[bytes], *, fresh_store: bool = False) -> float:
    Message.objects.filter(mailbox=account.mailbox).delete()
    deliver(cm, mails)
    blobs = Path(tempfile.mkdtemp(prefix="blobs-", dir=settings.DATA_DIR)) if fresh_store else settled_store()
    settings.KIMPORTAL_BLOB_DIR = blobs
    try:
        started = time.perf_counter()
        result = account_fetch(account_id=account.pk)
        elapsed = time.perf_counter() - started
    finally:
        if fresh_store:
            shutil.rmtree(blobs, ignore_errors=True)
        else:
            # The round's files go, its directories stay: the next round writes new blobs again.
            digests = set(Message.objects.filter(mailbox=account.mailbox).values_list("raw_sha256", flat=True))
            digests |= set(Attachment.objects.filter(message__mailbox=account.mailbox).values_list("sha256", flat=True))
            for digest in digests:
                blob_path(digest).unlink(missing_ok=True)
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
    parser.add_argument("--fresh-store", action="store_true", help="a blob store without its directories")
    args = parser.parse_args()

    benchcm.database_ensure()
    run = secrets.token_hex(8).encode()
    mails = [letter(i, run) for i in range(args.mails)]
    with tempfile.TemporaryDirectory(prefix="tisim-", dir=settings.DATA_DIR) as cm_dir:
        cm = CMSimulator(Path(cm_dir), accounts={RECIPIENT: PASSWORD}, tls=True)
        cm.start()
        try:
            account = account_prepare(cm)
            warmup = [letter(args.mails + i, run) for i in range(WARMUP_MAILS)]
            round_raw(cm, account, warmup)
            round_ingest(cm, account, warmup, fresh_store=args.fresh_store)
            raw_rates, ingest_rates = [], []
            for number in range(args.rounds):
                raw_rates.append(round_raw(cm, account, mails))
                ingest_rates.append(round_ingest(cm, account, mails, fresh_store=args.fresh_store))
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
        "ingest_machine": machine(),
        "ingest_mails": args.mails,
        "ingest_rounds": args.rounds,
        "ingest_mail_bytes_avg": round(sum(map(len, mails)) / len(mails)),
        "ingest_rounds_msgs_per_s": [round(r, 1) for r in ingest_rates],
        "ingest_raw_rounds_msgs_per_s": [round(r, 1) for r in raw_rates],
        "ingest_path": (
            "account_fetch in this process (one worker) against tisim's CMSimulator on loopback, POP3 over TLS "
            "with a pinned certificate; PostgreSQL; blobs fsynced on the local disk; live updates to Redis"
        ),
        "ingest_blob_store": (
            "fresh: no directories yet (each blob makes its own)"
            if args.fresh_store
            else "in use: all 65,536 directories exist, every blob is new"
        ),
        "ingest_raw_path": (
            "poplib RETR + email.message_from_bytes(policy=default) + DELE, QUIT; same TLS session setup"
        ),
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
