"""Collaboration benchmarks on PostgreSQL: a mailbox with 100,000 realistic messages and 50 members.

Prints one JSON object (scripts/bench.sh merges it into bench/results/latest.json). Targets:
  message_open_claim_p95_ms    ≤ 60   GET of a message's detail page, which takes the read-lock
  claim_propagation_p95_ms     ≤ 300  a claim until a colleague's open detail page shows the lock
  inbox_page_p95_ms            ≤ 50   page 1 of the mailbox list and of "Alle Postfächer"
  inbox_page_queries           ≤ 10
  inbox_deep_page_p95_ms       ≤ 50   page 1,500 (rows 74,951–75,000), reached by its "Ältere »" link
  event_fanout_ms              ≤ 150  a claim until all 50 members' open inbox sockets have the row (p95)
  event_fanout_state_ms               the same for a state change (rows only; counts follow later)
(+ p50 values, inbox_deep_page_ratio = deep / first page p95, query counts, the fan-out's service time,
spread (first to last socket) and when the state change's counts arrive, and a meta object.)
The fan-out includes the consumers' deliberate pause before rows are sent (KIMPORTAL_LIVE_ROWS_DELAY).

The mail is what hospitals receive: ≈50 KB each, a text and an HTML part and a small PDF
(bench/mails.py). A sample of distinct mails goes through the real ingest
(mailbox.services.ingest.message_ingest); the other rows copy the stored fields of those rows
(blob hashes reused: the blob store is content-addressed), so every row is what ingest produces.

Run through `make bench`; the database `kimportal_bench` is built once and reused. Its comment
holds a data-version marker: a database without it, or from another version (the 461-character
rows of the first bench), is dropped and rebuilt.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

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

from bench.benchdb import database_mark, database_marker, database_recreate  # noqa: E402
from bench.benchenv import machine  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

LAYER_PREFIX = "kimportal-bench-collab"
if settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
    # A prefix of its own: other benches and tests on the same Redis db must not reach these sockets
    # (their mailbox 1 is not ours, but its events would arrive in our groups and be timed with ours).
    settings.CHANNEL_LAYERS["default"].setdefault("CONFIG", {})["prefix"] = LAYER_PREFIX

from channels.db import database_sync_to_async  # noqa: E402
from channels.testing import WebsocketCommunicator  # noqa: E402
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.mails import RECIPIENT, hospital_mail  # noqa: E402
from mailbox import selectors  # noqa: E402
from mailbox.consumers import InboxConsumer, MessageConsumer  # noqa: E402
from mailbox.models import Attachment, Mailbox, Membership, Message, MessageRead  # noqa: E402
from mailbox.selectors.pagination import PAGE_SIZE  # noqa: E402
from mailbox.services.claims import message_claim, message_release  # noqa: E402
from mailbox.services.ingest import message_ingest  # noqa: E402
from mailbox.services.states import message_set_state  # noqa: E402

# Bump when the seeded data changes: an older database is dropped and rebuilt.
DATA_VERSION = 2
MESSAGES = 100_000
MEMBERS = 50
SAMPLE = 4_000  # distinct mails through message_ingest; the other rows copy their stored fields
RECENT_OPEN = 2_000  # the newest messages are open (new / in progress / waiting), older ones done
DEEP_PAGE = 1_500
# Fields ingest does not decide: identity, arrival time and the work done on a message since.
NOT_FROM_INGEST = {
    "id",
    "mailbox",
    "uidl",
    "received_at",
    "state",
    "due_at",
    "assignee",
    "version",
    "claimed_by",
    "claimed_at",
    "claim_expires_at",
    "claim_page",
    "claim_renewed_at",
}


def log(text: str) -> None:
    # stdout carries the JSON only (scripts/bench.sh merges it); progress goes to stderr.
    print(f"[collab] {text}", file=sys.stderr, flush=True)


def wanted_marker(sample: int) -> dict[str, int]:
    return {"version": DATA_VERSION, "messages": MESSAGES, "members": MEMBERS, "ingested": sample}


def position_state(position: int, users: list) -> tuple[str, Any]:
    """The old bench's mix: most old mail is done, recent mail is open and partly assigned."""
    recent = position > MESSAGES - RECENT_OPEN
    state = ("new", "in_progress", "waiting")[position % 3] if recent else "done"
    return state, (users[position % MEMBERS] if state != "new" else None)


def seed_people() -> tuple[Mailbox, list]:
    User = get_user_model()
    mailbox, _ = Mailbox.objects.get_or_create(address=RECIPIENT, defaults={"display_name": "Bench Kardiologie"})
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
    return mailbox, users


def seed_messages(mailbox: Mailbox, users: list, sample: int) -> dict:
    """Ingest `sample` distinct mails, then fill the mailbox to MESSAGES rows with copies of them.

    Positions run from the oldest (0) to the newest; ids grow with arrival as in a real mailbox. The
    sample is the oldest `sample` positions, every later row copies sample row position % sample.
    """
    now = timezone.now()

    def arrival(position: int) -> datetime:
        return now - timedelta(minutes=MESSAGES - position)

    started = time.perf_counter()
    raw_bytes = 0
    for position in range(sample):
        raw = hospital_mail(position)
        raw_bytes += len(raw)
        message = message_ingest(mailbox=mailbox, uidl=f"bench-{position:06d}", raw=raw, pop3_size=len(raw))
        state, assignee = position_state(position, users)
        # Arrival time and the work done since are not the parser's: set them as the mailbox's history.
        Message.objects.filter(pk=message.pk).update(received_at=arrival(position), state=state, assignee=assignee)
        if (position + 1) % 500 == 0:
            rate = (position + 1) / (time.perf_counter() - started)
            log(f"ingested {position + 1}/{sample} ({rate:.1f} mails/s)")
    ingest_s = time.perf_counter() - started

    fields = [f.name for f in Message._meta.concrete_fields if f.name not in NOT_FROM_INGEST]
    stored = {row["uidl"]: row for row in Message.objects.filter(mailbox=mailbox).values("pk", "uidl", *fields)}
    sources = [stored[f"bench-{position:06d}"] for position in range(sample)]
    attachments: dict[int, list[dict]] = {}
    for a in Attachment.objects.filter(message__mailbox=mailbox).values(
        "message_id", "position", "filename", "content_type", "size", "sha256", "content_id", "is_inline"
    ):
        attachments.setdefault(a.pop("message_id"), []).append(a)

    started = time.perf_counter()
    batch_size = 1_000
    for first in range(sample, MESSAGES, batch_size):
        positions = range(first, min(first + batch_size, MESSAGES))
        rows = []
        for position in positions:
            source = sources[position % sample]
            state, assignee = position_state(position, users)
            rows.append(
                Message(
                    mailbox=mailbox,
                    uidl=f"bench-{position:06d}",
                    received_at=arrival(position),
                    state=state,
                    assignee=assignee,
                    **{name: source[name] for name in fields},
                )
            )
        created = Message.objects.bulk_create(rows)
        Attachment.objects.bulk_create(
            Attachment(message_id=message.pk, **a)
            for message, position in zip(created, positions, strict=True)
            for a in attachments[sources[position % sample]["pk"]]
        )
        if (first - sample) % 10_000 == 0:
            log(f"copied up to position {positions[-1]} ({time.perf_counter() - started:.0f} s)")
    copy_s = time.perf_counter() - started

    reader = users[1]
    newest = Message.objects.filter(mailbox=mailbox).order_by("-received_at", "-id").values_list("pk", flat=True)
    MessageRead.objects.bulk_create(
        [MessageRead(message_id=pk, user=reader) for pk in newest[: MESSAGES // 2]],
        ignore_conflicts=True,
        batch_size=5_000,
    )
    return {
        "ingest_s": round(ingest_s, 1),
        "ingest_per_s": round(sample / ingest_s, 1),
        "copy_s": round(copy_s, 1),
        "mail_bytes_avg": round(raw_bytes / sample),
    }


def seed(sample: int) -> tuple[Mailbox, list, dict]:
    want = wanted_marker(sample)
    marker = database_marker()
    fresh = marker is None or {k: marker.get(k) for k in want} != want
    if fresh:
        log(f"database marker {marker!r} is not {want!r}: dropping and rebuilding kimportal_bench")
        database_recreate()
    call_command("migrate", verbosity=0)
    mailbox, users = seed_people()
    if fresh:
        started = time.perf_counter()
        stats = seed_messages(mailbox, users, sample)
        with connection.cursor() as cursor:
            # A freshly loaded table has no visibility map or statistics yet; a real one has both.
            cursor.execute("VACUUM ANALYZE mailbox_message")
            cursor.execute("VACUUM ANALYZE mailbox_messageread")
            cursor.execute("VACUUM ANALYZE mailbox_attachment")
        stats["seed_s"] = round(time.perf_counter() - started, 1)
        marker = {**want, **stats}
        database_mark(marker)
        log(f"seeded: {marker}")
    # Only rows a crashed run left claimed: rewriting all 100,000 wide rows would bloat the table.
    Message.objects.filter(mailbox=mailbox, claimed_by__isnull=False).update(
        claimed_by=None, claimed_at=None, claim_expires_at=None
    )
    return mailbox, users, {**marker, "reused": not fresh}


def channel_layer_reset() -> None:
    """Forget the groups an interrupted run left in Redis (under this bench's prefix only): their dead
    channels would still be sent every event."""
    if not settings.CHANNEL_LAYERS["default"]["BACKEND"].startswith("channels_redis"):
        return
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        keys = list(client.scan_iter(match=f"{LAYER_PREFIX}*", count=1_000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, round(q * (len(values) - 1)))], 2)


_OLDER_LINK = re.compile(r'<a href="\?([^"]*)"[^>]*>Ältere')


def deep_page_url(client: Client, mailbox: Mailbox, user: Any) -> str:
    """The URL of page DEEP_PAGE as a user reaches it: the "Ältere »" link on the page before.

    The page before is opened once by its number (an old bookmark, paged by OFFSET); its link
    carries the cursor. The target page is checked against the OFFSET order: same first row.
    """
    base = reverse("mailbox:mailbox-messages", args=[mailbox.pk])
    response = client.get(f"{base}?page={DEEP_PAGE - 1}")
    assert response.status_code == 200, response.status_code
    match = _OLDER_LINK.search(response.content.decode())
    assert match, "page before the deep page has no 'Ältere »' link"
    query = html.unescape(match.group(1))
    params = {k: v[0] for k, v in parse_qs(query).items()}
    assert params.get("page") == str(DEEP_PAGE) and params.get("after"), query
    page = selectors.message_list_for_user(user, mailbox=mailbox, page=params["page"], after=params["after"])
    expected_first = (
        Message.objects.filter(mailbox=mailbox).order_by("-received_at", "-id").values_list("pk", flat=True)
    )[(DEEP_PAGE - 1) * PAGE_SIZE]
    assert page.first_index == (DEEP_PAGE - 1) * PAGE_SIZE + 1, page.first_index
    assert len(page.object_list) == PAGE_SIZE and page.object_list[0].pk == expected_first
    return f"{base}?{query}"


def _timed_get(client: Client, url: str) -> float:
    start = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - start) * 1000
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def _queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def bench_inbox(mailbox: Mailbox, user: Any, runs: int) -> dict:
    client = Client()
    client.force_login(user)
    firsts = [reverse("mailbox:mailbox-messages", args=[mailbox.pk]), reverse("mailbox:inbox")]
    deep = deep_page_url(client, mailbox, user)
    offset = reverse("mailbox:mailbox-messages", args=[mailbox.pk]) + f"?page={DEEP_PAGE}"
    for url in [*firsts, deep]:
        client.get(url)  # warm caches and connections
    first_ms, deep_ms = [], []
    for i in range(runs):
        # Interleaved, so that noise from other work on the machine falls on both alike.
        first_ms.append(_timed_get(client, firsts[i % len(firsts)]))
        deep_ms.append(_timed_get(client, deep))
    offset_ms = [_timed_get(client, offset) for _ in range(min(runs, 10))]
    return {
        "inbox_page_p50_ms": pct(first_ms, 0.5),
        "inbox_page_p95_ms": pct(first_ms, 0.95),
        "inbox_page_queries": max(_queries(client, url) for url in firsts),
        "inbox_deep_page_p50_ms": pct(deep_ms, 0.5),
        "inbox_deep_page_p95_ms": pct(deep_ms, 0.95),
        "inbox_deep_page_queries": _queries(client, deep),
        "inbox_deep_page_ratio": round(pct(deep_ms, 0.95) / pct(first_ms, 0.95), 2),
        "inbox_deep_page_by_offset_p50_ms": pct(offset_ms, 0.5),
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


# ---- fan-out: one event, 50 open inbox sockets ------------------------------------------------


def _session_for(user: Any) -> SessionStore:
    """A logged-in session as the login view leaves it: the consumer checks it on every event."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]  # the model backend (axes comes first)
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session


async def _open_inboxes(users: list, mailbox: Mailbox, rows: list[int]) -> list[WebsocketCommunicator]:
    """Every member has page 1 of the mailbox list open: its socket says which rows it shows, as the page
    does when the socket opens (portal.js; a consumer that does not read the frame ignores it)."""
    app = InboxConsumer.as_asgi()
    watch = json.dumps({"watch": ",".join(map(str, rows)), "new": str(mailbox.pk)})
    sockets = []
    for user in users:
        communicator = WebsocketCommunicator(app, "/ws/inbox/")
        communicator.scope["user"] = user
        communicator.scope["session"] = await database_sync_to_async(_session_for)(user)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.send_to(text_data=watch)
        sockets.append(communicator)
    await _settle(sockets, 'id="live-watching"', within=3.0)
    return sockets


async def _settle(sockets: list[WebsocketCommunicator], needle: str, *, within: float) -> None:
    """Wait until every socket has answered with `needle` (a consumer that does not answer: `within` s)."""
    deadline = time.monotonic() + within
    waiting = set(range(len(sockets)))
    while waiting and time.monotonic() < deadline:
        for i in sorted(waiting):
            while not await sockets[i].receive_nothing(timeout=0):
                if needle in await sockets[i].receive_from():
                    waiting.discard(i)
        await asyncio.sleep(0.02)


async def _arrival(socket: WebsocketCommunicator, needle: str) -> float:
    while True:
        frame = await socket.receive_from(timeout=10)
        if needle in frame:
            return time.perf_counter()


async def _drain(sockets: list[WebsocketCommunicator], settle: float) -> None:
    await asyncio.sleep(settle)
    for socket in sockets:
        while not await socket.receive_nothing(timeout=0):
            await socket.receive_from()


@dataclass
class FanOut:
    total_ms: float  # from the service call until the last socket had its frame
    service_ms: float  # the service call alone: transaction, commit, group_send
    spread_ms: float  # from the first socket's frame to the last one's: the per-socket part
    then_ms: float | None  # until every socket also had the `then` frame


async def _fan_out(
    sockets: list[WebsocketCommunicator], action: Callable[[], object], needle: str, *, then: str = ""
) -> FanOut:
    rows = [asyncio.ensure_future(_arrival(s, needle)) for s in sockets]
    await asyncio.sleep(0)
    start = time.perf_counter()
    await database_sync_to_async(action)()
    service = time.perf_counter()
    arrived = await asyncio.gather(*rows)
    later = None
    if then:
        later = (max(await asyncio.gather(*(_arrival(s, then) for s in sockets))) - start) * 1000
    return FanOut(
        total_ms=(max(arrived) - start) * 1000,
        service_ms=(service - start) * 1000,
        spread_ms=(max(arrived) - min(arrived)) * 1000,
        then_ms=later,
    )


async def _fanout(mailbox: Mailbox, users: list, events: int) -> dict:
    actor = users[5]
    page = await database_sync_to_async(lambda: selectors.message_list_for_user(actor, mailbox=mailbox))()
    rows = [m.pk for m in page.object_list]
    # Events on rows the pages show: the open ones among page 1 (a third of them are new and unassigned). The list
    # rows load only what a row shows: the due dates are read here, in a thread like every other query.
    working = [m.pk for m in page.object_list if m.state in ("in_progress", "waiting")]
    working_rows = Message.objects.filter(pk__in=working).order_by("-received_at").values_list("pk", "state", "due_at")
    targets = await database_sync_to_async(lambda: list(working_rows))()
    sockets = await _open_inboxes(users, mailbox, rows)
    claims: list[FanOut] = []
    changes: list[FanOut] = []
    await _drain(sockets, 0.2)
    for i in range(events):
        pk = targets[i % len(targets)][0]
        message = await database_sync_to_async(Message.objects.get)(pk=pk)
        claims.append(await _fan_out(sockets, lambda m=message: message_claim(user=actor, message=m), f'id="msg-{pk}"'))
        # The release is an event too: wait for it everywhere, so it never overlaps the next claim.
        await _fan_out(sockets, lambda m=message: message_release(user=actor, message=m), f'id="msg-{pk}"')
        await _drain(sockets, 0.02)
    due = timezone.now() + timedelta(days=2)
    for i in range(events):
        pk = targets[i % len(targets)][0]
        message = await database_sync_to_async(Message.objects.get)(pk=pk)
        new_state = "in_progress" if message.state == "waiting" else "waiting"

        def change(m: Message = message, new_state: str = new_state) -> Message:
            return message_set_state(user=actor, message=m, version=m.version, state=new_state, due_at=due)

        # Rows first; every member's navigation (counts) follows after KIMPORTAL_LIVE_COUNTS_DELAY.
        changes.append(await _fan_out(sockets, change, f'id="msg-{pk}"', then='id="mailbox-nav"'))
        await _drain(sockets, 0.05)
    for socket in sockets:
        await socket.disconnect()

    def restore() -> None:
        # Leave the seeded mix as it was for the next run.
        for pk, state, due_at in targets:
            Message.objects.filter(pk=pk).update(state=state, due_at=due_at)
        Session.objects.filter(session_key__in=[s.scope["session"].session_key for s in sockets]).delete()

    await database_sync_to_async(restore)()
    counts = [c.then_ms for c in changes if c.then_ms is not None]
    return {
        "event_fanout_p50_ms": pct([c.total_ms for c in claims], 0.5),
        "event_fanout_ms": pct([c.total_ms for c in claims], 0.95),
        "event_fanout_service_p50_ms": pct([c.service_ms for c in claims], 0.5),
        "event_fanout_spread_p50_ms": pct([c.spread_ms for c in claims], 0.5),
        "event_fanout_spread_p95_ms": pct([c.spread_ms for c in claims], 0.95),
        "event_fanout_state_p50_ms": pct([c.total_ms for c in changes], 0.5),
        "event_fanout_state_ms": pct([c.total_ms for c in changes], 0.95),
        "event_fanout_state_service_p50_ms": pct([c.service_ms for c in changes], 0.5),
        "event_fanout_state_counts_p50_ms": pct(counts, 0.5),
        "event_fanout_state_counts_p95_ms": pct(counts, 0.95),
    }


def bench_fanout(mailbox: Mailbox, users: list, events: int) -> dict:
    return asyncio.run(_fanout(mailbox, users, events))


def code_version() -> str:
    """The commit measured, and whether product code had uncommitted changes at the time."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "mailbox", "kimportal", "templates"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() + (" + uncommitted product changes" if dirty.stdout.strip() else "")


def live(name: str) -> object:
    return getattr(settings, f"KIMPORTAL_LIVE_{name}_DELAY", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--events", type=int, default=30, help="claims and state changes for the fan-out")
    parser.add_argument("--sample", type=int, default=SAMPLE, help="distinct mails ingested when seeding")
    args = parser.parse_args()
    started = time.perf_counter()
    mailbox, users, data = seed(args.sample)
    prepare_s = round(time.perf_counter() - started, 1)
    result: dict = {}
    channel_layer_reset()
    result.update(bench_inbox(mailbox, users[1], args.runs))
    result.update(bench_open_claim(mailbox, users, args.runs))
    result.update(bench_propagation(mailbox, users, min(args.runs, 40)))
    result.update(bench_fanout(mailbox, users, args.events))
    result["meta"] = {
        "collab_code": code_version(),
        "collab_machine": machine(),
        "collab_messages": Message.objects.filter(mailbox=mailbox).count(),
        "collab_members": Membership.objects.filter(mailbox=mailbox).count(),
        "collab_runs": args.runs,
        "collab_prepare_s": prepare_s,
        "collab_database": connection.vendor,
        "collab_channel_layer": "redis",
        "collab_client": "Django test client in-process (no network); propagation: claim service → Redis → consumer",
        "collab_data": (
            f"data version {data['version']}: {data['ingested']:,} distinct mails (bench/mails.py, ≈"
            f"{data.get('mail_bytes_avg', 0):,} bytes: text/plain + text/html quoted-printable, PDF base64) through "
            f"message_ingest at {data.get('ingest_per_s')} mails/s; the other {MESSAGES - data['ingested']:,} rows "
            "bulk_create copies of those rows' stored fields and attachment rows (same blob hashes); arrival times, "
            f"states and assignees set afterwards (newest {RECENT_OPEN:,} open, older done; one member has read the "
            f"newest half). Seeded in {data.get('seed_s')} s; "
            + ("reused this run" if data["reused"] else "built this run")
        ),
        "collab_seed_s": data.get("seed_s"),
        "collab_ingest_per_s": data.get("ingest_per_s"),
        "collab_deep_page": (
            f"page {DEEP_PAGE:,} ({PAGE_SIZE} rows) of the mailbox list by the 'Ältere »' link of page "
            f"{DEEP_PAGE - 1:,} (keyset cursor); inbox_deep_page_by_offset_p50_ms: the same page as ?page={DEEP_PAGE}"
            " (an old bookmark, OFFSET), 10 runs"
        ),
        "collab_fanout": (
            f"{MEMBERS} InboxConsumer sockets (WebsocketCommunicator, one process, each with a DB session) on "
            "one mailbox, each showing page 1 (it sends the page's watch frame: its 50 rows and the mailbox "
            f"for new mail); events on the open rows of page 1, in turn: {args.events} claims (message_claim, "
            f"released after each) and {args.events} state changes (message_set_state in_progress<->waiting). "
            "From the service call until every socket had the row (id=msg-<pk>), including the consumers' "
            f"pause before rows are sent (KIMPORTAL_LIVE_ROWS_DELAY = {live('ROWS')} s); *_spread_*: first "
            "to last socket's frame; *_counts_*: until every socket also had its navigation "
            f"(KIMPORTAL_LIVE_COUNTS_DELAY = {live('COUNTS')} s later); *_service_*: the service call alone "
            "(transaction, commit, Redis group_send)"
        ),
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
