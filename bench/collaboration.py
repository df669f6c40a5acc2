"""Collaboration benchmarks on PostgreSQL: a mailbox with 100,000 messages and 50 members.

Prints one JSON object: message_open_claim_p95_ms, claim_propagation_p95_ms, inbox_page_p95_ms,
inbox_page_queries (+ p50 values and a meta object). Targets (issue 3): ≤ 60 ms, ≤ 300 ms, ≤ 50 ms, ≤ 10.

Run through `make bench`; the database `kimportal_bench` is created once and reused (100k rows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")
# Its own database, whatever DATABASE_URL the shell has: the bench keeps 100k rows there.
os.environ["DATABASE_URL"] = os.environ.get(
    "KIMPORTAL_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kimportal_bench"
)
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("KIMPORTAL_CREDENTIALS_KEYS", "Wd0pM6hF7h4aWv8d5u3VbQ0bq2m0o9xJbnS0kz9m3dE=")
os.environ.setdefault("KIMPORTAL_DATA_DIR", str(ROOT / "var" / "bench-collab"))
os.environ.setdefault("ALLOWED_HOSTS", "testserver,127.0.0.1")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from channels.db import database_sync_to_async  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from mailbox.consumers import MessageConsumer  # noqa: E402
from mailbox.models import Mailbox, Membership, Message, MessageRead  # noqa: E402
from mailbox.services.claims import message_claim, message_release  # noqa: E402

MESSAGES = 100_000
MEMBERS = 50
ADDRESS = "bench-kardio@klinikum-bench.kim.telematik-test"
SUBJECTS = ["Arztbrief Entlassung", "Befund Labor", "eAU Lieferung", "Rückfrage Termin", "Überweisung Kardiologie"]
DIENSTKENNUNGEN = [
    "Arztbrief;VHitG-Versand;V1.2",
    "eAU;Lieferung;V1.0",
    "KIM-Mail;Default;V1.0",
    "LDT-Befund;Lieferung;V1.0",
]


def ensure_database() -> None:
    import psycopg

    url = os.environ["DATABASE_URL"]
    base, name = url.rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def seed() -> tuple[Mailbox, list]:
    call_command("migrate", verbosity=0)
    User = get_user_model()
    mailbox, _ = Mailbox.objects.get_or_create(address=ADDRESS, defaults={"display_name": "Bench Kardiologie"})
    users = []
    for i in range(MEMBERS):
        user, created = User.objects.get_or_create(username=f"bench{i:02d}", defaults={"first_name": f"Person {i}"})
        if created:
            user.set_password("bench")
            user.save()
        users.append(user)
        Membership.objects.get_or_create(
            mailbox=mailbox, user=user, defaults={"role": "owner" if i == 0 else "processor"}
        )
    have = Message.objects.filter(mailbox=mailbox).count()
    if have < MESSAGES:
        now = timezone.now()
        batch = []
        for i in range(have, MESSAGES):
            # Realistic mix: most old mail is done, recent mail is open and partly assigned.
            recent = i > MESSAGES - 2_000
            state = ("new", "in_progress", "waiting")[i % 3] if recent else "done"
            batch.append(
                Message(
                    mailbox=mailbox,
                    uidl=f"bench-{i:06d}",
                    raw_sha256="0" * 64,
                    size=4096,
                    received_at=now - timezone.timedelta(minutes=MESSAGES - i),
                    from_address=f"praxis{i % 997}@praxis.kim.telematik-test",
                    from_name=f"Praxis {i % 997}",
                    to=[ADDRESS],
                    subject=f"{SUBJECTS[i % len(SUBJECTS)]} {i}",
                    dienstkennung=DIENSTKENNUNGEN[i % len(DIENSTKENNUNGEN)],
                    decryption_results=["00"],
                    integrity_results=["01"],
                    text_body=("Sehr geehrte Kolleginnen und Kollegen, anbei der Befund. " * 8) + str(i),
                    state=state,
                    assignee=users[i % MEMBERS] if state != "new" else None,
                )
            )
            if len(batch) == 5_000:
                Message.objects.bulk_create(batch)
                batch = []
        if batch:
            Message.objects.bulk_create(batch)
        reader = users[1]
        ids = list(Message.objects.filter(mailbox=mailbox).values_list("pk", flat=True)[: MESSAGES // 2])
        MessageRead.objects.bulk_create(
            [MessageRead(message_id=pk, user=reader) for pk in ids], ignore_conflicts=True, batch_size=5_000
        )
    with connection.cursor() as cursor:
        # A freshly loaded table has no visibility map or statistics yet; a real one has both.
        cursor.execute("VACUUM ANALYZE mailbox_message")
        cursor.execute("VACUUM ANALYZE mailbox_messageread")
    Message.objects.filter(mailbox=mailbox).update(claimed_by=None, claimed_at=None, claim_expires_at=None)
    return mailbox, users


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, round(q * (len(values) - 1)))], 2)


def bench_inbox(mailbox: Mailbox, user, runs: int) -> dict:
    client = Client()
    client.force_login(user)
    urls = [reverse("mailbox:mailbox-messages", args=[mailbox.pk]), reverse("mailbox:inbox")]
    deep = reverse("mailbox:mailbox-messages", args=[mailbox.pk]) + "?page=1500"
    for url in urls:
        client.get(url)  # warm caches and connections
    timings = []
    for i in range(runs):
        url = urls[i % len(urls)]
        start = time.perf_counter()
        response = client.get(url)
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, response.status_code
    queries = 0
    for url in [*urls, deep]:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        queries = max(queries, len(ctx.captured_queries))
    return {
        "inbox_page_p50_ms": pct(timings, 0.5),
        "inbox_page_p95_ms": pct(timings, 0.95),
        "inbox_page_queries": queries,
    }


def bench_open_claim(mailbox: Mailbox, users: list, runs: int) -> dict:
    client = Client()
    user = users[2]
    client.force_login(user)
    targets = list(
        Message.objects.filter(mailbox=mailbox)
        .exclude(state="done")
        .order_by("-received_at")
        .values_list("pk", flat=True)[: runs + 5]
    )
    client.get(reverse("mailbox:message-detail", args=[targets[-1]]))
    timings = []
    for pk in targets[:runs]:
        start = time.perf_counter()
        response = client.get(reverse("mailbox:message-detail", args=[pk]))
        timings.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
        assert Message.objects.filter(pk=pk, claimed_by=user).exists(), "opening must take the lock"
    Message.objects.filter(pk__in=targets).update(claimed_by=None, claimed_at=None, claim_expires_at=None)
    return {"message_open_claim_p50_ms": pct(timings, 0.5), "message_open_claim_p95_ms": pct(timings, 0.95)}


async def _propagation(mailbox: Mailbox, users: list, runs: int) -> list[float]:
    claimer, watcher = users[3], users[4]
    targets = await database_sync_to_async(
        lambda: list(
            Message.objects.filter(mailbox=mailbox)
            .exclude(state="done")
            .order_by("-received_at")
            .values_list("pk", flat=True)[:runs]
        )
    )()
    timings = []
    for pk in targets:
        communicator = WebsocketCommunicator(MessageConsumer.as_asgi(), f"/ws/message/{pk}/")
        communicator.scope["user"] = watcher
        communicator.scope["url_route"] = {"kwargs": {"pk": pk}}
        connected, _ = await communicator.connect()
        assert connected
        message = await database_sync_to_async(Message.objects.get)(pk=pk)
        start = time.perf_counter()
        await database_sync_to_async(message_claim)(user=claimer, message=message)
        while True:
            frame = await communicator.receive_from(timeout=5)
            if 'data-locked-by-other="1"' in frame:
                break
        timings.append((time.perf_counter() - start) * 1000)
        await database_sync_to_async(message_release)(user=claimer, message=message)
        await communicator.disconnect()
    return timings


def bench_propagation(mailbox: Mailbox, users: list, runs: int) -> dict:
    timings = asyncio.run(_propagation(mailbox, users, runs))
    return {"claim_propagation_p50_ms": pct(timings, 0.5), "claim_propagation_p95_ms": pct(timings, 0.95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    ensure_database()
    started = time.perf_counter()
    mailbox, users = seed()
    prepare_s = round(time.perf_counter() - started, 1)
    result: dict = {}
    result.update(bench_inbox(mailbox, users[1], args.runs))
    result.update(bench_open_claim(mailbox, users, args.runs))
    result.update(bench_propagation(mailbox, users, min(args.runs, 40)))
    result["meta"] = {
        "collab_machine": f"{platform.machine()} {os.cpu_count()} CPUs, py{platform.python_version()}",
        "collab_messages": Message.objects.filter(mailbox=mailbox).count(),
        "collab_members": Membership.objects.filter(mailbox=mailbox).count(),
        "collab_runs": args.runs,
        "collab_prepare_s": prepare_s,
        "collab_database": connection.vendor,
        "collab_channel_layer": "redis",
        "collab_client": "Django test client in-process (no network); propagation: claim service → Redis → consumer",
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
