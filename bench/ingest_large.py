"""Large-mail bench: a 200 MB mail fetched by a separate worker process, its peak memory (RSS) measured.

Prints one JSON object (scripts/bench.sh merges it into bench/results/latest.json):
  ingest_large_peak_rss_mb     peak resident memory of the fetching process (`manage.py mailbox_fetch`,
                               the same account_fetch a Celery worker runs) while it fetches one
                               ≈200 MB mail (a letter with a ≈150 MB PDF, base64) and a small mail
                               queued behind it, over the simulator's POP3 with TLS: RETR streamed to
                               the blob store, the parse reading that file, the PDF decoded into its
                               blob (target: below 250 MB)
  ingest_large_seconds         wall time of that process, start to exit (Django start-up included)
  ingest_large_after_arrived   1 when the small mail behind the large one was stored too
Peak RSS comes from the kernel (wait4's ru_maxrss of that child alone), not from sampling.

Its own database (kimportal_bench_ingest, as bench/ingest.py) and blob store (var/bench-ingest-large).
`.venv/bin/python bench/ingest_large.py [--mail-mb N]`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchenv import django_for_bench, machine  # noqa: E402

django_for_bench(
    database="kimportal_bench_ingest", database_env="KIMPORTAL_BENCH_INGEST_DATABASE_URL", data_dir="bench-ingest-large"
)

from django.conf import settings  # noqa: E402

from bench import benchcm  # noqa: E402
from mailbox.models import Attachment, KimAccount, Message  # noqa: E402
from tisim.cm import CMSimulator  # noqa: E402
from tisim.cm.maildrop import SUFFIX  # noqa: E402

RECIPIENT = "bench-large@klinikum-bench.kim.telematik-test"
PASSWORD = "bench-secret"
TARGET_RSS_MB = 250


def log(text: str) -> None:
    print(f"[ingest_large] {text}", file=sys.stderr, flush=True)


def account_prepare(cm: CMSimulator) -> KimAccount:
    return benchcm.account_prepare(cm, address=RECIPIENT, display_name="Bench Radiologie", password=PASSWORD)


def write_large_mail(cm: CMSimulator, mail_bytes: int) -> tuple[str, int, str]:
    """Write the large mail straight into the maildrop (streamed; the bench holds it no more than the worker).

    Returns (UIDL, size, SHA-256 of the PDF).
    """
    directory = cm.context.store.path_for(RECIPIENT)
    directory.mkdir(parents=True, exist_ok=True)
    uidl = cm.context.store.new_uidl()
    tmp = directory / f".{uidl}.tmp"
    pdf_hash = hashlib.sha256()
    boundary = "bench-large-boundary"
    head = (
        f"From: Radiologie <radiologie@praxis-bench.kim.telematik-test>\r\nTo: {RECIPIENT}\r\n"
        f"Subject: Bilder zum Befund (groß)\r\nMessage-ID: <large-{uidl}@praxis-bench.kim.telematik-test>\r\n"
        f"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Sehr geehrte Kollegen,\r\nanbei die Aufnahmen.\r\n\r\n"
        f"--{boundary}\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="Aufnahmen.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
    ).encode()
    raw_bytes = mail_bytes * 3 // 4
    chunk = 57 * 16 * 1024  # whole base64 lines per chunk
    with open(tmp, "wb") as fh:
        fh.write(head)
        written = 0
        while written < raw_bytes:
            data = os.urandom(min(chunk, raw_bytes - written))
            pdf_hash.update(data)
            encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
            fh.write(encoded)
            written += len(data)
        fh.write(f"\r\n--{boundary}--\r\n".encode())
    path = directory / f"{uidl}{SUFFIX}"
    os.replace(tmp, path)
    return uidl, path.stat().st_size, pdf_hash.hexdigest()


def small_mail() -> bytes:
    return (
        f"From: Praxis <praxis@praxis-bench.kim.telematik-test>\r\nTo: {RECIPIENT}\r\nSubject: Dahinter\r\n"
        "Message-ID: <small@praxis-bench.kim.telematik-test>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHinter der großen Nachricht.\r\n"
    ).encode()


def fetch_in_worker(account: KimAccount, blobs: Path) -> tuple[float, float]:
    """Run the fetch in its own process; (peak RSS in MB, seconds)."""
    env = dict(os.environ, KIMPORTAL_BLOB_DIR=str(blobs))
    cmd = [sys.executable, "manage.py", "mailbox_fetch", "--account", str(account.pk)]
    started = time.perf_counter()
    # Its report goes to stderr: stdout carries the JSON only (scripts/bench.sh merges it).
    worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sys.stderr)
    _pid, status, usage = os.wait4(worker.pid, 0)
    elapsed = time.perf_counter() - started
    worker.returncode = os.waitstatus_to_exitcode(status)
    if worker.returncode != 0:
        raise SystemExit(f"the fetching worker failed ({worker.returncode})")
    return usage.ru_maxrss / 1024, elapsed  # Linux: kilobytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mail-mb", type=int, default=200)
    args = parser.parse_args()

    benchcm.database_ensure()
    data_dir = Path(settings.DATA_DIR)
    data_dir.mkdir(parents=True, exist_ok=True)
    blobs = Path(tempfile.mkdtemp(prefix="blobs-", dir=data_dir))
    try:
        with tempfile.TemporaryDirectory(prefix="tisim-", dir=data_dir) as cm_dir:
            cm = CMSimulator(Path(cm_dir), accounts={RECIPIENT: PASSWORD}, tls=True)
            cm.start()
            try:
                account = account_prepare(cm)
                log(f"writing a {args.mail_mb} MB mail into the maildrop")
                _uidl, size, pdf_sha = write_large_mail(cm, args.mail_mb * 1_000_000)
                cm.deliver(RECIPIENT, small_mail())
                log("fetching in a worker process")
                peak_mb, seconds = fetch_in_worker(account, blobs)
                left = cm.maildrop_uidls(RECIPIENT)
            finally:
                cm.stop()
        stored = dict(Message.objects.filter(mailbox=account.mailbox).values_list("subject", "size"))
        pdf = Attachment.objects.filter(message__mailbox=account.mailbox, filename="Aufnahmen.pdf").first()
        if stored.get("Bilder zum Befund (groß)") != size or pdf is None or pdf.sha256 != pdf_sha or left:
            raise SystemExit(f"large mail not stored intact: {stored}, left on the CM: {left}")
        after = "Dahinter" in stored
        log(f"peak RSS {peak_mb:.0f} MB for a {size / 1e6:.0f} MB mail in {seconds:.1f} s")
    finally:
        shutil.rmtree(blobs, ignore_errors=True)
        Message.objects.filter(mailbox__address=RECIPIENT).delete()

    result: dict = {
        "ingest_large_peak_rss_mb": round(peak_mb, 1),
        "ingest_large_seconds": round(seconds, 1),
        "ingest_large_after_arrived": int(after),
        "meta": {
            "ingest_large_mail_bytes": size,
            "ingest_large_target_rss_mb": TARGET_RSS_MB,
            "ingest_large_path": (
                "manage.py mailbox_fetch in its own process against tisim's CMSimulator on loopback, POP3 over "
                "TLS with a pinned certificate; one mail with a base64 PDF of 3/4 its size, then a small mail; "
                "PostgreSQL; blobs fsynced; peak RSS from wait4 (ru_maxrss of that process)"
            ),
            "ingest_large_machine": machine(),
        },
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
