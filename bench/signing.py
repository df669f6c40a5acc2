"""Signing benchmark: the portal's own work per document in a 250-document batch, without the terminal's wait.

Prints one JSON object (scripts/bench.sh merges it into bench/results/latest.json). Target:
  sign_overhead_ms_per_doc         ≤ 10   CPU time of this process in signing.services.run.batch_run for a batch
                                          of 250 discharge letters (PDF → PAdES), divided by 250
  sign_overhead_cades_ms_per_doc          the same for 250 text letters (detached CAdES)
  sign_wall_ms_per_doc                    wall time of the PDF batch per document (includes the simulated
                                          Konnektor's signing and PostgreSQL; no PIN wait: --auto-pin)
  sign_wall_cades_ms_per_doc              the same for the text batch
Each figure is the median over --rounds rounds after a warm-up batch.

The simulated Konnektor runs as its own process (python -m tisim konnektor-run --auto-pin), so the CPU time
measured here (time.process_time around batch_run) is only the portal's: discovery and WSDL loading, GetCards,
ReadCardCertificate, GetPinStatus, GetJobNumber, blob reads, building the SignDocument request (base64), parsing
the response, verifying every signature locally (one CMS check with cryptography for both formats; pyhanko reads
the PDF's structure), storing the results (blobs fsynced, rows, audit events) and the live events to Redis. The
simulator's own CPU time is in meta. The PostgreSQL server's work is not in the CPU figure (another process) but
is in the wall time.

Each round signs new drafts made directly in the database (not timed); `batch_create` is timed separately
(meta) and its task is not queued: batch_run is called here, as the Celery task would call it.

Its own database (kimportal_bench_signing, created and migrated when missing) and data folder
(var/bench-signing). `make bench` or `.venv/bin/python bench/signing.py [--docs 250] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.benchenv import django_for_bench  # noqa: E402

django_for_bench(
    database="kimportal_bench_signing", database_env="KIMPORTAL_BENCH_SIGNING_DATABASE_URL", data_dir="bench-signing"
)

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402

from bench import benchcm  # noqa: E402
from mailbox.models import Mailbox, Membership  # noqa: E402
from mailbox.storage import blob_put  # noqa: E402
from signing.management.demo_letters import letter_pdf  # noqa: E402
from signing.models import BatchItem, Draft, Signature, SignatureBatch, SignerCard, Workplace  # noqa: E402
from signing.services import batch as batch_service  # noqa: E402
from signing.services import run as run_service  # noqa: E402
from signing.services.batch import Selected, batch_create  # noqa: E402

TELEMATIK_ID = "1-20014567890"  # the eHBA of konnektor-run's demo cards
WORKPLACE_ID = "Arbeitsplatz-1"
PIN = "123456"
WARMUP_DOCS = 10
PARAGRAPH = (
    "Der Patient wurde bei Vorhofflimmern mit schneller Überleitung aufgenommen. Nach elektrischer Kardioversion "
    "stabiler Sinusrhythmus. Die orale Antikoagulation wurde begonnen; Kontrolle der Nierenwerte in einer Woche."
)


def log(text: str) -> None:
    # stdout carries the JSON only (scripts/bench.sh merges it); progress goes to stderr.
    print(f"[signing] {text}", file=sys.stderr, flush=True)


def letter_text(run: str, i: int) -> bytes:
    """A discharge letter of ≈3 KB, different in every round and document (the blob store is content-addressed)."""
    lines = [f"Entlassbrief Fall {run}-{i}", "", "Sehr geehrte Frau Kollegin, sehr geehrter Herr Kollege,", ""]
    lines += [f"{n}. {PARAGRAPH}" for n in range(1, 13)]
    lines += ["", "Mit freundlichen kollegialen Grüßen", "Dr. med. Anna Sommer"]
    return "\n".join(lines).encode("utf-8")


def letter_document(run: str, i: int) -> bytes:
    """The same letter as a one-page PDF (≈4 KB)."""
    lines = ["Sehr geehrte Frau Kollegin, sehr geehrter Herr Kollege,", ""]
    for n in range(1, 13):
        lines += [f"{n}. {PARAGRAPH[:95]}", f"   {PARAGRAPH[95:]}"]
    return letter_pdf(f"Entlassbrief Fall {run}-{i}", lines)


@contextmanager
def konnektor_process(data_dir: Path) -> Iterator[dict[str, Any]]:
    """The simulated Konnektor in its own process (its CPU is not ours), typing the PIN itself."""
    runtime = data_dir / "konnektor.json"
    cmd = [sys.executable, "-m", "tisim", "konnektor-run", "--data-dir", str(data_dir), "--port", "0"]
    cmd += ["--auto-pin", PIN]
    log_file = (data_dir / "konnektor.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not runtime.exists():
            if proc.poll() is not None:
                raise SystemExit(f"konnektor-run exited: {(data_dir / 'konnektor.log').read_text()}")
            if time.monotonic() > deadline:
                raise SystemExit("konnektor-run did not start within 60 s")
            time.sleep(0.05)
        info: dict[str, Any] = json.loads(runtime.read_text())
        info["_pid"] = proc.pid
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log_file.close()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def setup_people() -> tuple[Any, Any, Mailbox, Workplace]:
    users = get_user_model().objects
    signer, _ = users.get_or_create(username="bench-aerztin", defaults={"first_name": "Anna", "last_name": "Sommer"})
    author, _ = users.get_or_create(username="bench-station", defaults={"first_name": "Sabine", "last_name": "Team"})
    mailbox, _ = Mailbox.objects.update_or_create(
        address="bench-signing@klinikum-bench.kim.telematik-test", defaults={"display_name": "Bench Kardiologie"}
    )
    for user in (signer, author):
        Membership.objects.update_or_create(mailbox=mailbox, user=user, defaults={"role": Membership.Role.PROCESSOR})
    SignerCard.objects.update_or_create(user=signer, defaults={"telematik_id": TELEMATIK_ID, "iccsn": ""})
    workplace, _ = Workplace.objects.update_or_create(
        workplace_id=WORKPLACE_ID, defaults={"label": "Bench", "ct_id": "CT-1", "is_active": True}
    )
    return signer, author, mailbox, workplace


def clean(signer: Any) -> None:
    """Drafts and batches of earlier rounds go (their blobs stay: the store is content-addressed)."""
    SignatureBatch.objects.filter(signer=signer).delete()
    Draft.objects.filter(signer=signer).delete()


def make_drafts(author: Any, signer: Any, mailbox: Mailbox, documents: list[bytes], *, pdf: bool) -> list[Draft]:
    drafts = [
        Draft(
            document_type="earztbrief",
            patient_reference=f"Patient {i:03d}",
            author=author,
            signer=signer,
            mailbox=mailbox,
            recipients=["praxis@praxis-bench.kim.telematik-test"],
            subject=f"Entlassbrief {i}",
            filename=f"Entlassbrief-{i}.pdf" if pdf else f"Entlassbrief-{i}.txt",
            mime_type="application/pdf" if pdf else "text/plain",
            size=len(content),
            sha256=blob_put(content),
        )
        for i, content in enumerate(documents)
    ]
    return Draft.objects.bulk_create(drafts)


class Timed:
    """Wraps a function and adds its CPU time to a total (how much of the overhead is local verification)."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.cpu = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return self.func(*args, **kwargs)
        finally:
            self.cpu += time.process_time() - started


def one_batch(
    people: tuple[Any, Any, Mailbox, Workplace], documents: list[bytes], *, pdf: bool, sim_pid: int
) -> dict[str, float]:
    signer, author, mailbox, workplace = people
    clean(signer)
    drafts = make_drafts(author, signer, mailbox, documents, pdf=pdf)
    selected = [Selected(d.pk, d.version, d.sha256) for d in drafts]
    started = time.perf_counter()
    batch = batch_create(signer=signer, workplace=workplace, selected=selected)
    create_s = time.perf_counter() - started
    verify_pades, verify_cades = Timed(run_service.verify_pades), Timed(run_service.verify_cades_detached)
    run_service.verify_pades, run_service.verify_cades_detached = verify_pades, verify_cades  # type: ignore[assignment]
    sim_cpu = process_cpu_seconds(sim_pid)
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        run_service.batch_run(batch.pk)
    finally:
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        run_service.verify_pades, run_service.verify_cades_detached = verify_pades.func, verify_cades.func
    sim_cpu = process_cpu_seconds(sim_pid) - sim_cpu
    batch.refresh_from_db()
    signed = Signature.objects.filter(draft__in=drafts, verification_error="").count()
    if batch.state != SignatureBatch.State.DONE or batch.signed_count != len(documents) or signed != len(documents):
        raise SystemExit(f"batch {batch.pk}: {batch.state} {batch.signed_count} signed, {batch.error_shown}")
    assert not BatchItem.objects.filter(batch=batch).exclude(state=BatchItem.State.SIGNED).exists()
    n = len(documents)
    return {
        "cpu_ms_per_doc": cpu * 1000 / n,
        "wall_ms_per_doc": wall * 1000 / n,
        "verify_cpu_ms_per_doc": (verify_pades.cpu + verify_cades.cpu) * 1000 / n,
        "simulator_cpu_ms_per_doc": sim_cpu * 1000 / n,
        "batch_create_ms_per_doc": create_s * 1000 / n,
        "calls": batch.calls_total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    benchcm.database_ensure()
    # The task is not queued: this process runs batch_run itself, as the worker would.
    batch_service._enqueue = lambda batch: None  # type: ignore[assignment]
    people = setup_people()
    results: dict[str, list[dict[str, float]]] = {"pades": [], "cades": []}
    Path(settings.DATA_DIR).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="konnektor-", dir=settings.DATA_DIR) as sim_dir:
        with konnektor_process(Path(sim_dir)) as sim:
            qes_ca = Path(sim["qes_ca"])
            settings.KIMPORTAL_KONNEKTOR_URL = sim["base_url"]
            settings.KIMPORTAL_KONNEKTOR_MODE = "plain"
            settings.KIMPORTAL_KONNEKTOR_QES_CA = str(qes_ca)
            settings.KIMPORTAL_KONNEKTOR_MANDANT = sim["mandant_id"]
            settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = sim["client_system_id"]
            # One SignDocument call for the whole batch (the simulator, like real Konnektors, takes 250).
            settings.KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL = args.docs
            run = f"{time.time_ns():x}"
            for pdf in (True, False):
                make = letter_document if pdf else letter_text
                one_batch(people, [make(f"{run}w", i) for i in range(WARMUP_DOCS)], pdf=pdf, sim_pid=sim["_pid"])
            for number in range(args.rounds):
                for pdf, kind in ((True, "pades"), (False, "cades")):
                    make = letter_document if pdf else letter_text
                    documents = [make(f"{run}-{number}", i) for i in range(args.docs)]
                    figures = one_batch(people, documents, pdf=pdf, sim_pid=sim["_pid"])
                    results[kind].append(figures)
                    log(
                        f"round {number + 1} {kind}: portal CPU {figures['cpu_ms_per_doc']:.2f} ms/doc "
                        f"(verification {figures['verify_cpu_ms_per_doc']:.2f}), wall {figures['wall_ms_per_doc']:.2f}"
                    )
            clean(people[0])

    def median(kind: str, key: str) -> float:
        return round(statistics.median(r[key] for r in results[kind]), 2)

    output: dict[str, Any] = {
        "sign_overhead_ms_per_doc": median("pades", "cpu_ms_per_doc"),
        "sign_overhead_cades_ms_per_doc": median("cades", "cpu_ms_per_doc"),
        "sign_wall_ms_per_doc": median("pades", "wall_ms_per_doc"),
        "sign_wall_cades_ms_per_doc": median("cades", "wall_ms_per_doc"),
    }
    output["meta"] = {
        "sign_machine": f"{platform.machine()} {os.cpu_count()} CPUs, py{platform.python_version()}",
        "sign_docs_per_batch": args.docs,
        "sign_rounds": args.rounds,
        "sign_calls_per_batch": results["pades"][0]["calls"],
        "sign_pdf_bytes": len(letter_document("x", 0)),
        "sign_text_bytes": len(letter_text("x", 0)),
        "sign_verify_cpu_ms_per_doc": median("pades", "verify_cpu_ms_per_doc"),
        "sign_verify_cades_cpu_ms_per_doc": median("cades", "verify_cpu_ms_per_doc"),
        "sign_simulator_cpu_ms_per_doc": median("pades", "simulator_cpu_ms_per_doc"),
        "sign_simulator_cades_cpu_ms_per_doc": median("cades", "simulator_cpu_ms_per_doc"),
        "sign_batch_create_ms_per_doc": median("pades", "batch_create_ms_per_doc"),
        "sign_rounds_ms_per_doc": [round(r["cpu_ms_per_doc"], 2) for r in results["pades"]],
        "sign_rounds_cades_ms_per_doc": [round(r["cpu_ms_per_doc"], 2) for r in results["cades"]],
        "sign_path": (
            "signing.services.run.batch_run in this process against python -m tisim konnektor-run --auto-pin in "
            "another (plain HTTP on loopback): discovery, GetCards, ReadCardCertificate, GetPinStatus, "
            "GetJobNumber, one SignDocument call, every signature verified locally, results stored in "
            "PostgreSQL (blobs fsynced), live events to Redis; CPU time of this process only"
        ),
    }
    print(json.dumps(output, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
