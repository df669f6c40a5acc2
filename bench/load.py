"""Load: the portal as in production, many browsers over HTTP and websockets at once.

Prints one JSON object (scripts/bench.sh merges it into bench/results/latest.json). Targets on a 2-core machine:
  load_users          200   simulated users of the headline run (read time 5–15 s)
  load_p95_ms         ≤ 250 p95 of all HTTP requests in that run (inbox and message pages)
  load_errors         0     non-2xx/3xx answers, timeouts (> 10 s), broken connections
  load_ws_failures    0     websockets not accepted within 5 s or closed by the server while in use
  load_stress_users   ≥ 200 the most users (1–3 s between actions) served: p95 ≤ 1 s with no error and no
                            websocket failure (bench/stress.py); levels upwards until one misses; if the first
                            misses, two halvings of it (0: below them)
(+ load_rps, per-type p95s and live frames.) In `meta`: every level (users, rps, p50/p95 per type, errors
and websocket failures by kind, frames, row updates for rows the page does not show, CPU of the server's
process group, of the bench database's PostgreSQL backends, of Redis, of this generator and of the rest
of the machine, PostgreSQL transactions per second, what the server logged) and a short in-process pass:
queries, CPU and a cProfile split of each page, and the queries of one claim reaching 20 inbox sockets.

The server is the production one: gunicorn with deploy/gunicorn.conf.py managing 2 uvicorn workers,
DEBUG off, against its own PostgreSQL database (`kimportal_bench_load`) and its own Redis db number,
restarted for every level. Its data: one mailbox with 2,000 mails (a sample through the real
message_ingest, the rest copies of those rows: bench/mails.py) and 200 processors. Sessions are made
directly (django.contrib.auth's session keys): 200 password hashes would measure the hasher.

Every simulated user does what a browser does: GET / (the inbox), opens /ws/inbox/ (session cookie,
Origin of the host) and declares its watch (the rows shown, data-live-since/-view/-at); then loops: GET
/nachricht/<id>/ of a random open message, and as the page loads, the last page's socket closes (without
waiting for it) and the page opens its own: /ws/message/<id>/?page=<token> (the token from the page's
ws-connect attribute), which is the page-wide socket too, and declares its watch (no rows); reads for the
read time (the page's heartbeat {"writing": "0"} every 20 s); GET / again, which closes it and opens a new
/ws/inbox/. Sockets
behave like htmx's ws extension: after close codes 1006/1011/1012/1013 they reconnect (full jitter) and
ask for a resync as portal.js does; after any other close by the server (4408 "behind") htmx stays
closed, so the next inbox load opens a new one. Above 200 users a user opens a second session (the
mailbox keeps its 200 members). The generator is one asyncio process on the same cores (uvloop, a
minimal HTTP/1.1 keep-alive client, `websockets`), lean on purpose: regexes only (the page token, row
ids); its own CPU is reported with the server's.

`.venv/bin/python bench/load.py [--quick] [--levels 50,100,200] [--stress 100,200,300,400] [--sample]`;
--sample runs the server with bench/load_sampler.py (CPU per thread group and stack samples per level).
The whole run is time-boxed (KIMPORTAL_BENCH_LOAD_BUDGET, 570 s) and stops the server's process group
on any exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")
# Its own database and Redis db number, whatever the shell has (scripts/bench.sh exports REDIS_URL for the others).
os.environ["DATABASE_URL"] = os.environ.get(
    "KIMPORTAL_BENCH_LOAD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/kimportal_bench_load"
)
os.environ["REDIS_URL"] = os.environ.get("KIMPORTAL_BENCH_LOAD_REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("SECRET_KEY", "bench-only")
os.environ.setdefault("KIMPORTAL_CREDENTIALS_KEYS", "Wd0pM6hF7h4aWv8d5u3VbQ0bq2m0o9xJbnS0kz9m3dE=")
os.environ.setdefault("KIMPORTAL_DATA_DIR", str(ROOT / "var" / "bench-load"))
os.environ["ALLOWED_HOSTS"] = "127.0.0.1"
os.environ["DEBUG"] = "false"
os.environ.setdefault("LOG_LEVEL", "WARNING")
BUDGET_S = float(os.environ.get("KIMPORTAL_BENCH_LOAD_BUDGET", "570"))
WEB_WORKERS = os.environ.get("KIMPORTAL_BENCH_LOAD_WORKERS", "2")

import django  # noqa: E402

from bench.benchdb import database_mark, database_marker, database_recreate  # noqa: E402
from bench.benchenv import machine  # noqa: E402
from bench.stress import most_users  # noqa: E402

django.setup()

import uvloop  # noqa: E402
import websockets  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.contrib.sessions.models import Session  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

from bench.mails import RECIPIENT, hospital_mail  # noqa: E402
from mailbox.models import Mailbox, Membership, Message, MessageRead, Presence  # noqa: E402
from mailbox.services.claims import claim_cleared  # noqa: E402
from mailbox.services.ingest import message_ingest  # noqa: E402

# Bump when the seeded data changes: an older database is dropped and rebuilt.
DATA_VERSION = 1
MESSAGES = 2_000
MEMBERS = 200
SAMPLE = 120  # distinct mails through message_ingest; the other rows copy their stored fields
OPEN = 600  # the newest messages are open (new / in progress / waiting), older ones done
HTTP_TIMEOUT_S = 10.0
WS_OPEN_TIMEOUT_S = 5.0
HEARTBEAT_S = 20.0  # portal.js / the page's presence form: hx-trigger="every 20s"
# gunicorn.conf.py keeps an idle connection 5 s; a browser opens a new one rather than reuse a closing one.
REUSE_IDLE_S = 4.0
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
FIRST_NAMES = ["Anna", "Jonas", "Sabine", "Mehmet", "Ursula", "Piotr", "Monika", "Lukas", "Gisela", "Fatma"]
LAST_NAMES = ["Krüger", "Schmidt", "Yılmaz", "Fischer", "Weber", "Nowak", "Wagner", "Becker", "Schulz", "Hoffmann"]
TOKEN = re.compile(rb'ws-connect="/ws/message/\d+/\?page=([0-9a-f]+\.[0-9a-f]+)"')
# Rows of the inbox page, and rows (or their presence) a live frame updates.
PAGE_ROWS = re.compile(rb'id="msg-(\d+)"')
LIVE_MAILBOXES = re.compile(rb'data-live-mailboxes="([^"]*)"')
LIVE_SINCE = re.compile(rb'data-live-since="(\d*)" data-live-view="([a-z]*)"')
LIVE_AT = re.compile(rb'data-live-at="([0-9.]*)"')
FRAME_ROWS = re.compile(r'id="(?:msg|row-presence)-(\d+)"')


def log(text: str) -> None:
    # stdout carries the JSON only (scripts/bench.sh merges it); progress goes to stderr.
    print(f"[load] {text}", file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, round(q * (len(values) - 1)))], 1)


# ---- data: one mailbox, 2,000 mails, 200 processors --------------------------------------------


def seed_people() -> tuple[Mailbox, list]:
    User = get_user_model()
    mailbox, _ = Mailbox.objects.get_or_create(address=RECIPIENT, defaults={"display_name": "Kardiologie (Last)"})
    users = []
    for i in range(MEMBERS):
        user, created = User.objects.get_or_create(
            username=f"load{i:03d}",
            defaults={"first_name": FIRST_NAMES[i % 10], "last_name": f"{LAST_NAMES[(i // 10) % 10]} {i}"},
        )
        if created:
            # Nobody logs in by password here: sessions are made directly (no hashing on a 2-core machine).
            user.set_unusable_password()
            user.save(update_fields=["password"])
        users.append(user)
        Membership.objects.get_or_create(mailbox=mailbox, user=user, defaults={"role": "processor"})
    return mailbox, users


def position_state(position: int, users: list) -> tuple[str, object]:
    """The newest OPEN mails are open (a third each new, in progress, waiting), older ones done."""
    if position < MESSAGES - OPEN:
        return "done", users[position % MEMBERS]
    state = ("new", "in_progress", "waiting")[position % 3]
    return state, (users[(position * 7) % MEMBERS] if state != "new" else None)


def seed_messages(mailbox: Mailbox, users: list, sample: int) -> dict:
    """Ingest `sample` distinct mails, then fill the mailbox to MESSAGES rows with copies of their stored fields."""
    now = timezone.now()

    def arrival(position: int):
        # About a month of mail, newest last; ids grow with arrival as in a real mailbox.
        return now - timedelta(minutes=20 * (MESSAGES - position))

    started = time.perf_counter()
    for position in range(sample):
        raw = hospital_mail(position)
        message = message_ingest(mailbox=mailbox, uidl=f"load-{position:05d}", raw=raw, pop3_size=len(raw))
        state, assignee = position_state(position, users)
        Message.objects.filter(pk=message.pk).update(received_at=arrival(position), state=state, assignee=assignee)
    ingest_s = time.perf_counter() - started

    from mailbox.models import Attachment

    fields = [f.name for f in Message._meta.concrete_fields if f.name not in NOT_FROM_INGEST]
    stored = {row["uidl"]: row for row in Message.objects.filter(mailbox=mailbox).values("pk", "uidl", *fields)}
    sources = [stored[f"load-{position:05d}"] for position in range(sample)]
    attachments: dict[int, list[dict]] = {}
    for a in Attachment.objects.filter(message__mailbox=mailbox).values(
        "message_id", "position", "filename", "content_type", "size", "sha256", "content_id", "is_inline"
    ):
        attachments.setdefault(a.pop("message_id"), []).append(a)
    rows, positions = [], range(sample, MESSAGES)
    for position in positions:
        source = sources[position % sample]
        state, assignee = position_state(position, users)
        fields_of = {name: source[name] for name in fields}
        rows.append(
            Message(
                mailbox=mailbox,
                uidl=f"load-{position:05d}",
                received_at=arrival(position),
                state=state,
                assignee=assignee,
                **fields_of,
            )
        )
    created = Message.objects.bulk_create(rows, batch_size=500)
    Attachment.objects.bulk_create(
        (
            Attachment(message_id=message.pk, **a)
            for message, position in zip(created, positions, strict=True)
            for a in attachments[sources[position % sample]["pk"]]
        ),
        batch_size=1_000,
    )
    return {"ingest_s": round(ingest_s, 1), "ingest_per_s": round(sample / ingest_s, 1)}


def seed() -> tuple[Mailbox, list, dict]:
    want = {"version": DATA_VERSION, "messages": MESSAGES, "members": MEMBERS, "ingested": SAMPLE}
    marker = database_marker()
    fresh = marker is None or {k: marker.get(k) for k in want} != want
    if fresh:
        log(f"database marker {marker!r} is not {want!r}: dropping and rebuilding the load database")
        database_recreate()
    call_command("migrate", verbosity=0)
    mailbox, users = seed_people()
    if fresh:
        started = time.perf_counter()
        stats = seed_messages(mailbox, users, SAMPLE)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        stats["seed_s"] = round(time.perf_counter() - started, 1)
        marker = {**want, **stats}
        database_mark(marker)
        log(f"seeded: {marker}")
    return mailbox, users, {**marker, "reused": not fresh}


def reset(mailbox: Mailbox) -> None:
    """Every run starts from the seeded mailbox: no locks, pages, reads or audit rows of earlier runs."""
    Message.objects.filter(mailbox=mailbox).exclude(claimed_by=None).update(**claim_cleared())
    Presence.objects.all().delete()
    MessageRead.objects.filter(message__mailbox=mailbox).delete()
    with connection.cursor() as cursor:
        # The trail refuses DELETE; a bench database starts it afresh (chain head included).
        cursor.execute("TRUNCATE audit_auditevent, audit_chainhead")
        cursor.execute("VACUUM ANALYZE mailbox_message, mailbox_presence, mailbox_messageread, audit_auditevent")


def sessions_for(users: list, count: int) -> list[str]:
    """Logged-in sessions as the login view leaves them; simulated user i is users[i % len(users)]."""
    keys = []
    for i in range(count):
        user = users[i % len(users)]
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]  # the model backend (axes comes first)
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key)
    return keys


def channel_layer_clear() -> int:
    """Drop the channel layer's keys left by an earlier server (groups of sockets that no longer exist)."""
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    keys = list(client.scan_iter(match=f"{prefix}*", count=1_000))
    if keys:
        client.delete(*keys)
    client.close()
    return len(keys)


# ---- the server: gunicorn + uvicorn workers, one process group ---------------------------------


class Server:
    def __init__(self, *, sample: bool = False) -> None:
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = Path(os.environ["KIMPORTAL_DATA_DIR"]) / "web.log"
        # --sample: the same settings plus a stack sampler per worker (bench/load_sampler.py).
        self.config = "bench/load_sampler.py" if sample else "deploy/gunicorn.conf.py"
        self.sample_dir = Path(os.environ["KIMPORTAL_DATA_DIR"]) / "samples"

    def start(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        env = {
            **os.environ,
            "KIMPORTAL_BIND": f"127.0.0.1:{self.port}",
            "KIMPORTAL_WEB_WORKERS": WEB_WORKERS,
            "KIMPORTAL_SERVE_STATIC": "false",
            "KIMPORTAL_ACCESS_LOG": "",
            "KIMPORTAL_SAMPLE_DIR": str(self.sample_dir),
        }
        for old in self.sample_dir.glob("sampler-*.json"):
            old.unlink()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            # Its own session: the bench stops the whole group (master and workers) however it ends.
            self.proc = subprocess.Popen(
                [
                    str(ROOT / ".venv" / "bin" / "gunicorn"),
                    "-c",
                    self.config,
                    "kimportal.asgi:application",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # Workers left behind by a master that died first belong to the same group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None

    def samples(self) -> dict[str, Counter] | None:
        """The workers' stack samples so far (--sample), added up; None without sampling."""
        reports = []
        for path in sorted(self.sample_dir.glob("sampler-*.json")):
            with contextlib.suppress(OSError, ValueError):
                reports.append(json.loads(path.read_text()))
        if not reports:
            return None
        merged: dict[str, Counter] = {
            "samples": Counter(n=sum(r["samples"] for r in reports)),
            "process_cpu_s": Counter(s=sum(r["process_cpu_s"] for r in reports)),
        }
        for key in ("threads_cpu_s", "thread_states", "portal_entry", "inclusive", "self"):
            merged[key] = Counter()
            for report in reports:
                merged[key].update(report[key])
        return merged

    def log_summary(self) -> dict[str, int]:
        """What the server logged during the level (its log is rewritten per level)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return {
            "sockets_closed_behind": text.count("behind: closing it to resync"),
            "asgi_exceptions": text.count("Exception in ASGI application"),
            "redis_timeouts": text.count("redis.exceptions.TimeoutError"),
            "pool_timeouts": text.count("PoolTimeout"),
            "lines": text.count("\n"),
        }

    def pids(self) -> list[int]:
        return group_pids(self.proc.pid) if self.proc else []


# ---- CPU from /proc ---------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def cpu_s(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def postgres_pids(database: str) -> list[int]:
    """The backends serving our database: their command line names it (`postgres: … <db> 127.0.0.1(…)`)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"postgres:") and f" {database} ".encode() in cmdline:
            pids.append(int(entry))
    return pids


def named_pids(comm: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{entry}/comm").read_text().strip() == comm:
                    pids.append(int(entry))
    return pids


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@dataclass
class CpuWindow:
    """CPU seconds per process family over a window: server group, our PostgreSQL backends, Redis, us, machine."""

    server: Server
    database: str
    start: dict[str, Any] = field(default_factory=dict)

    def _snapshot(self) -> dict[str, Any]:
        return {
            "server": {pid: cpu_s(pid) for pid in self.server.pids()},
            "postgres": {pid: cpu_s(pid) for pid in postgres_pids(self.database)},
            "redis": {pid: cpu_s(pid) for pid in named_pids("redis-server")},
            "generator": time.process_time(),
            "machine": machine_jiffies(),
            "pg": pg_counters(),
            "samples": self.server.samples(),
            "at": time.monotonic(),
        }

    def begin(self) -> None:
        self.start = self._snapshot()

    def end(self) -> dict[str, Any]:
        end, start = self._snapshot(), self.start
        seconds = end["at"] - start["at"]

        def family(name: str) -> float:
            return sum(v - start[name].get(pid, 0.0) for pid, v in end[name].items())

        busy = end["machine"][0] - start["machine"][0]
        total = end["machine"][1] - start["machine"][1]
        cores = os.cpu_count() or 1
        used = {name: family(name) for name in ("server", "postgres", "redis")}
        used["generator"] = end["generator"] - start["generator"]
        machine_busy_s = busy / TICK
        # Percent of one core; the machine figure is of all cores (100 % = every core busy).
        result = {f"cpu_{name}_pct": round(100 * v / seconds, 1) for name, v in used.items()}
        result["cpu_machine_busy_pct"] = round(100 * busy / total, 1) if total else None
        result["cpu_other_pct"] = round(100 * (machine_busy_s - sum(used.values())) / seconds, 1)
        result["cpu_cores"] = cores
        pg = {k: round((end["pg"][k] - start["pg"][k]) / seconds, 1) for k in end["pg"]}
        result["pg_xact_per_s"] = pg["xact"]
        result["pg_tup_fetched_per_s"] = pg["fetched"]
        result["pg_tup_returned_per_s"] = pg["returned"]
        if end["samples"] is not None:
            result["sampler"] = sampled(start["samples"] or {}, end["samples"])
        return result


def sampled(start: dict[str, Counter], end: dict[str, Counter]) -> dict[str, Any]:
    """The server's samples in the window (bench/load_sampler.py): CPU per thread group (what the process used
    beyond its long-lived threads went to the per-request view threads) and where the busy threads stood."""
    window = {key: end[key] - start.get(key, Counter()) for key in end}
    seconds_cpu = window["process_cpu_s"]["s"]
    long_lived = {k: v for k, v in window["threads_cpu_s"].items() if k != "request threads"}
    cpu = {**long_lived, "request threads (HTTP views)": max(0.0, seconds_cpu - sum(long_lived.values()))}
    busy = sum(n for k, n in window["thread_states"].items() if k.endswith("running or waiting for the GIL")) or 1
    return {
        "samples": window["samples"]["n"],
        "cpu_s": round(seconds_cpu, 1),
        "cpu_share_pct": {
            k: round(100 * v / (seconds_cpu or 1), 1) for k, v in sorted(cpu.items(), key=lambda i: -i[1])
        },
        "thread_states": dict(window["thread_states"].most_common()),
        **{
            f"{key}_pct": {name: round(100 * n / busy, 1) for name, n in window[key].most_common(top)}
            for key, top in (("portal_entry", 25), ("inclusive", 50), ("self", 20))
        },
    }


def pg_counters() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit + xact_rollback, tup_fetched, tup_returned FROM pg_stat_database WHERE datname = %s",
            [connection.settings_dict["NAME"]],
        )
        xact, fetched, returned = cursor.fetchone()
    connection.close()
    return {"xact": xact, "fetched": fetched, "returned": returned}


# ---- the generator: one browser per user -------------------------------------------------------


class Http:
    """One browser tab's HTTP/1.1 keep-alive connection: GET only, Content-Length or chunked bodies."""

    def __init__(self, port: int, session_key: str) -> None:
        self.port = port
        # Everything but the path is the same for every request of this tab.
        self.head_rest = (
            f" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: kimportal-bench-load\r\n"
            f"Accept: text/html\r\nAccept-Language: de\r\nCookie: sessionid={session_key}\r\n\r\n"
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.idle_since = 0.0

    async def get(self, path: str) -> tuple[int, bytes]:
        fresh = self.writer is None or time.monotonic() - self.idle_since > REUSE_IDLE_S
        if fresh:
            await self._connect()
        try:
            return await self._exchange(path)
        except (ConnectionError, asyncio.IncompleteReadError):
            if fresh:
                raise
            # The server closed the idle connection as we reused it: a browser retries a GET once.
            await self._connect()
            return await self._exchange(path)

    async def _connect(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def _exchange(self, path: str) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"GET " + path.encode() + self.head_rest)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        if b"\r\ntransfer-encoding: chunked" in headers:
            chunks = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                chunks.append((await self.reader.readexactly(size + 2))[:-2])
            body = b"".join(chunks)
        else:
            match = re.search(rb"\r\ncontent-length: *(\d+)", headers)
            body = await self.reader.readexactly(int(match.group(1))) if match else await self.reader.read()
            if not match:
                self.close()
        if b"\r\nconnection: close" in headers:
            self.close()
        self.idle_since = time.monotonic()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Stats:
    window: tuple[float, float]
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"inbox": [], "message": []})
    errors: Counter = field(default_factory=Counter)
    ws_failures: Counter = field(default_factory=Counter)
    ws_connect_ms: dict[str, list[float]] = field(default_factory=lambda: {"inbox": [], "message": []})
    frames: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)

    def inside(self, t: float | None = None) -> bool:
        t = time.monotonic() if t is None else t
        return self.window[0] <= t < self.window[1]


class Browser:
    """One simulated user: inbox page and socket, then message after message until the run stops."""

    def __init__(self, *, index, port, session_key, open_ids, read_s, stats, stop_at, seed) -> None:
        self.index = index
        self.port = port
        self.session_key = session_key
        self.open_ids = open_ids
        self.read_s = read_s
        self.stats = stats
        self.stop_at = stop_at
        self.rng = random.Random(seed)
        self.http = Http(port, session_key)
        self.sockets: list[Socket] = []
        self.shown: set[str] = set()  # the rows of the inbox page last loaded
        self.live = ""  # the mailboxes whose new mail that page shows on top (data-live-mailboxes)
        self.since, self.view = "", ""  # the newest message that list knew, and its view (data-live-since/-view)
        self.at = ""  # when the server read that list (data-live-at)
        self.leaving: set[asyncio.Task] = set()

    def left(self) -> float:
        return self.stop_at - time.monotonic()

    async def run(self, start_delay: float) -> None:
        await asyncio.sleep(start_delay)
        try:
            await self.page("inbox", "/")
            inbox = await self.socket("inbox", "/ws/inbox/")
            await self.declare(inbox)
            while self.left() > 0:
                pk = self.rng.choice(self.open_ids)
                body = await self.page("message", f"/nachricht/{pk}/")
                # A page load ends the last page's socket and opens its own: the message's, which is the page-wide
                # one too.
                self.leave(inbox)
                match = TOKEN.search(body) if body else None
                if body and not match:
                    self.stats.counts["message_page_without_token"] += 1
                page = (
                    await self.socket("message", f"/ws/message/{pk}/?page={match.group(1).decode()}") if match else None
                )
                # The message page shows no list: its socket follows no rows (portal.js).
                self.shown, self.live, self.since, self.at = set(), "", "", ""
                await self.declare(page)
                await self.read(page, self.rng.uniform(*self.read_s))
                if self.left() <= 0:
                    break
                await self.page("inbox", "/")
                self.leave(page)
                inbox = await self.socket("inbox", "/ws/inbox/")
                await self.declare(inbox)
        finally:
            for sock in list(self.sockets):
                await sock.close()
            if self.leaving:
                await asyncio.gather(*self.leaving, return_exceptions=True)
            self.http.close()

    def leave(self, *sockets: Socket | None) -> None:
        """The browser unloads the page: its sockets close, and the next page does not wait for that."""
        for sock in sockets:
            if sock is not None:
                task = asyncio.ensure_future(sock.close())
                self.leaving.add(task)
                task.add_done_callback(self.leaving.discard)

    async def page(self, kind: str, path: str) -> bytes:
        body = await self._get(kind, path)
        if kind == "inbox" and body:
            self.shown = {pk.decode() for pk in PAGE_ROWS.findall(body)}
            live = LIVE_MAILBOXES.search(body)
            self.live = ",".join(m.removeprefix("mb-") for m in live.group(1).decode().split()) if live else ""
            since = LIVE_SINCE.search(body)
            self.since, self.view = (since.group(1).decode(), since.group(2).decode()) if since else ("", "")
            at = LIVE_AT.search(body)
            self.at = at.group(1).decode() if at else ""
        return body

    async def declare(self, sock: Socket | None) -> None:
        """portal.js tells the page-wide socket which rows the page shows and where new mail goes on top."""
        if sock is not None and sock.alive:
            watch = {
                "watch": ",".join(sorted(self.shown)),
                "new": self.live,
                "since": self.since,
                "view": self.view,
                "at": self.at,
            }
            await sock.send(json.dumps(watch))

    async def _get(self, kind: str, path: str) -> bytes:
        start = time.monotonic()
        reason = ""
        body = b""
        try:
            async with asyncio.timeout(HTTP_TIMEOUT_S):
                status, body = await self.http.get(path)
            if not 200 <= status < 400:
                reason = f"http {status}"
        except TimeoutError:
            reason = "timeout"
            self.http.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            reason = type(exc).__name__
            self.http.close()
        done = time.monotonic()
        if self.stats.inside(done):
            self.stats.counts[f"{kind}_requests"] += 1
            if reason:
                self.stats.errors[f"{kind}: {reason}"] += 1
            else:
                self.stats.latencies[kind].append((done - start) * 1000)
        return b"" if reason else body

    async def socket(self, kind: str, path: str) -> Socket | None:
        sock = Socket(self, kind, path)
        if await sock.open():
            self.sockets.append(sock)
            return sock
        return None

    async def read(self, page: Socket | None, seconds: float) -> None:
        """Read the message; the page's presence form sends its heartbeat every 20 s meanwhile."""
        until = time.monotonic() + min(seconds, max(self.left(), 0))
        next_beat = time.monotonic() + HEARTBEAT_S
        while (now := time.monotonic()) < until:
            await asyncio.sleep(min(until, next_beat) - now)
            if page is not None and page.alive and time.monotonic() >= next_beat:
                await page.send('{"writing": "0"}')
                self.stats.counts["heartbeats"] += 1
                next_beat += HEARTBEAT_S


# htmx's ws extension reconnects (full jitter, 1 s doubling to 64 s) after these close codes only.
HTMX_RECONNECT_CODES = {1006, 1011, 1012, 1013}


class Socket:
    """A page's websocket as htmx's ws extension keeps it: counts frames; a close we did not ask for is a
    failure, and after the codes htmx reconnects on it reconnects and asks for a resync as portal.js does."""

    def __init__(self, browser: Browser, kind: str, path: str) -> None:
        self.browser = browser
        self.stats = browser.stats
        self.kind = kind
        self.path = path
        self.ws: Any = None
        self.alive = False
        self.closing = False
        self.life: asyncio.Task | None = None

    async def open(self) -> bool:
        if not await self._connect():
            return False
        self.life = asyncio.ensure_future(self._live())
        return True

    async def _connect(self) -> bool:
        port = self.browser.port
        start = time.monotonic()
        try:
            self.ws = await ws_connect(
                f"ws://127.0.0.1:{port}{self.path}",
                additional_headers={
                    "Cookie": f"sessionid={self.browser.session_key}",
                    "Origin": f"http://127.0.0.1:{port}",
                },
                open_timeout=WS_OPEN_TIMEOUT_S,
                ping_interval=None,  # browsers send no pings; the server's pings are answered
                close_timeout=2,
                max_size=8 * 2**20,
            )
        except TimeoutError:
            self._failed("not accepted within 5 s")
            return False
        except websockets.InvalidStatus as exc:
            self._failed(f"rejected {exc.response.status_code}")
            return False
        except (OSError, websockets.WebSocketException) as exc:
            self._failed(type(exc).__name__)
            return False
        if self.stats.inside():
            self.stats.ws_connect_ms[self.kind].append((time.monotonic() - start) * 1000)
            self.stats.counts[f"ws_{self.kind}_opened"] += 1
        self.alive = True
        return True

    def _failed(self, reason: str) -> None:
        if self.stats.inside():
            self.stats.ws_failures[f"{self.kind}: {reason}"] += 1

    async def _live(self) -> None:
        retry = 0
        while True:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for frame in self.ws:
                    if self.stats.inside():
                        self.stats.frames[self.kind] += 1
                        if self.kind == "inbox" and isinstance(frame, str):
                            # A row update for a row the page does not show is swapped nowhere (htmx oob).
                            rows = FRAME_ROWS.findall(frame)
                            self.stats.counts["row_updates"] += len(rows)
                            self.stats.counts["row_updates_not_shown"] += sum(r not in self.browser.shown for r in rows)
            self.alive = False
            if self.closing:
                return
            code = self.ws.close_code
            self._failed(f"closed by server ({code})")
            if code not in HTMX_RECONNECT_CODES:
                return
            while True:
                delay = self.browser.rng.random() * 2 ** min(retry, 6)
                if self.browser.left() <= delay:
                    return
                await asyncio.sleep(delay)
                retry += 1
                if await self._connect():
                    retry = 0
                    self.stats.counts[f"ws_{self.kind}_reconnected"] += 1
                    # portal.js: once every socket of the page is back, each asks for the current state.
                    await asyncio.sleep(0.2)
                    await self.send('{"resync": "1"}')
                    if self.kind == "inbox":
                        await self.browser.declare(self)
                    break

    async def send(self, text: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(text)

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        with contextlib.suppress(Exception):
            await self.ws.close()
        if self.life is not None:
            if not self.life.done():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(self.life), 3)
            self.life.cancel()
        self.browser.sockets = [s for s in self.browser.sockets if s is not self]


async def drive(*, port, sessions, open_ids, users, ramp_s, measure_s, read_s, cpu: CpuWindow) -> dict:
    """Run `users` browsers: they start evenly over the ramp, the window is measured, then all stop."""
    loop_start = time.monotonic()
    window = (loop_start + ramp_s, loop_start + ramp_s + measure_s)
    stats = Stats(window=window)
    browsers = [
        Browser(
            index=i,
            port=port,
            session_key=sessions[i],
            open_ids=open_ids,
            read_s=read_s,
            stats=stats,
            stop_at=window[1],
            seed=1_000 + i,
        )
        for i in range(users)
    ]
    tasks = [asyncio.ensure_future(b.run(ramp_s * i / users)) for i, b in enumerate(browsers)]
    await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
    await asyncio.to_thread(cpu.begin)
    await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
    usage = await asyncio.to_thread(cpu.end)
    # Browsers finish their current step (at most the HTTP timeout) and close their sockets.
    _done, pending = await asyncio.wait(tasks, timeout=HTTP_TIMEOUT_S + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    crashed = [t.exception() for t in tasks if not t.cancelled() and t.exception() is not None]
    if crashed:
        log(f"{len(crashed)} browsers crashed, first: {crashed[0]!r}")
    all_ms = stats.latencies["inbox"] + stats.latencies["message"]
    requests = stats.counts["inbox_requests"] + stats.counts["message_requests"]
    return {
        "users": users,
        "read_s": list(read_s),
        "measure_s": measure_s,
        "rps": round(requests / measure_s, 1),
        "requests": requests,
        "p50_ms": pct(all_ms, 0.5),
        "p95_ms": pct(all_ms, 0.95),
        "p99_ms": pct(all_ms, 0.99),
        "max_ms": round(max(all_ms), 1) if all_ms else None,
        **{
            f"{kind}_{name}_ms": pct(v, q)
            for kind, v in stats.latencies.items()
            for name, q in (("p50", 0.5), ("p95", 0.95))
        },
        "errors": sum(stats.errors.values()),
        "errors_by_kind": dict(stats.errors),
        "ws_failures": sum(stats.ws_failures.values()),
        "ws_failures_by_kind": dict(stats.ws_failures),
        **{f"ws_{kind}_connect_p95_ms": pct(v, 0.95) for kind, v in stats.ws_connect_ms.items()},
        "frames_inbox": stats.frames["inbox"],
        "frames_message": stats.frames["message"],
        "frames_per_s": round((stats.frames["inbox"] + stats.frames["message"]) / measure_s, 1),
        "ws_message_opened": stats.counts["ws_message_opened"],
        "ws_inbox_opened": stats.counts["ws_inbox_opened"],
        "ws_reconnected": stats.counts["ws_inbox_reconnected"] + stats.counts["ws_message_reconnected"],
        "heartbeats": stats.counts["heartbeats"],
        "row_updates": stats.counts["row_updates"],
        "row_updates_not_shown": stats.counts["row_updates_not_shown"],
        "pages_without_token": stats.counts["message_page_without_token"],
        "browsers_crashed": len(crashed),
        **usage,
    }


# ---- levels -----------------------------------------------------------------------------------


@dataclass
class Bench:
    mailbox: Mailbox
    sessions: list[str]
    open_ids: list[int]
    server: Server
    deadline: float
    database: str

    def level(self, users: int, *, ramp_s: float, measure_s: float, read_s: tuple[float, float]) -> dict | None:
        needed = ramp_s + measure_s + HTTP_TIMEOUT_S + 25
        if time.monotonic() + needed > self.deadline:
            log(f"skipping {users} users: {needed:.0f} s would exceed the time box")
            return None
        reset(self.mailbox)
        channel_layer_clear()
        self.server.start()
        try:
            self.wait_ready()
            log(f"{users} users, read {read_s[0]:g}–{read_s[1]:g} s: {ramp_s:g} s ramp + {measure_s:g} s")
            result = uvloop.run(
                drive(
                    port=self.server.port,
                    sessions=self.sessions,
                    open_ids=self.open_ids,
                    users=users,
                    ramp_s=ramp_s,
                    measure_s=measure_s,
                    read_s=read_s,
                    cpu=CpuWindow(self.server, self.database),
                )
            )
        finally:
            self.server.stop()
        result["server_log"] = self.server.log_summary()
        log(
            f"  rps {result['rps']}, p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
            f"(inbox {result['inbox_p95_ms']}, message {result['message_p95_ms']}), errors {result['errors']}, "
            f"ws failures {result['ws_failures']}, frames/s {result['frames_per_s']}, "
            f"CPU server {result['cpu_server_pct']} % pg {result['cpu_postgres_pct']} % "
            f"generator {result['cpu_generator_pct']} % machine {result['cpu_machine_busy_pct']} %"
        )
        return result

    def wait_ready(self) -> None:
        """Until GET / answers 200 with a session (both workers import Django first)."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.proc is None or self.server.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.server.log}")
            with contextlib.suppress(OSError, asyncio.IncompleteReadError, ValueError, TimeoutError):
                status, _ = asyncio.run(self._probe())
                if status == 200:
                    return
                raise RuntimeError(f"GET / answered {status} with a fresh session")
            time.sleep(0.3)
        raise RuntimeError("gunicorn did not answer within 60 s")

    async def _probe(self) -> tuple[int, bytes]:
        http = Http(self.server.port, self.sessions[0])
        try:
            async with asyncio.timeout(10):
                return await http.get("/")
        finally:
            http.close()


def stress(bench: Bench, levels: list[int], *, ramp_s: float, measure_s: float) -> tuple[int, list[dict]]:
    """The most users (1–3 s between actions) served: p95 ≤ 1 s and nothing failed (bench/stress.py)."""
    return most_users(levels, lambda users: bench.level(users, ramp_s=ramp_s, measure_s=measure_s, read_s=(1.0, 3.0)))


# ---- where the time goes: queries per request and per live event -------------------------------


def breakdown(client, path: str) -> dict[str, Any]:
    """One request under cProfile (times inflated by the profiler; the shares are what counts): the view's
    total, its template rendering, the ORM's SQL compilation and the database calls, and the top functions."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    client.get(path)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]

    def cumulative(file_part: str, function: str) -> float:
        return round(
            1000 * max((v[3] for k, v in stats.items() if file_part in k[0] and k[2] == function), default=0.0), 1
        )

    own = sorted(stats.items(), key=lambda item: -item[1][2])[:10]
    return {
        "total_ms": cumulative("django/core/handlers/base.py", "_get_response"),
        "templates_ms": cumulative("django/template/base.py", "render"),
        "sql_compile_ms": cumulative("django/db/models/sql/compiler.py", "as_sql"),
        "db_calls_ms": cumulative("django/db/backends/utils.py", "_execute"),
        "top_self_ms": {f"{Path(k[0]).name}:{k[2]}": round(1000 * v[2], 1) for k, v in own},
    }


def profile(mailbox: Mailbox, sessions: list[str], open_ids: list[int]) -> dict:
    """In-process, one request at a time: queries and time of each page, and the queries of one live event.

    Every query of every thread is counted (an execute wrapper on each connection), grouped by its main table.
    """
    import threading

    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator
    from django.db.backends.signals import connection_created
    from django.test import Client

    from kimportal.asgi import application
    from mailbox.services.claims import message_claim, message_release

    lock = threading.Lock()
    seen: list[tuple[str, float]] = []

    def wrapper(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            with lock:
                seen.append((sql, (time.perf_counter() - start) * 1000))

    def install(sender, connection, **kwargs):
        if wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    connection_created.connect(install)
    from django.db import connections

    for conn in connections.all():
        install(None, conn)

    def table(sql: str) -> str:
        """The statement's verb and main table: the first FROM outside parentheses (not a subquery's)."""
        verb, depth = sql.split(None, 1)[0], 0
        for match in re.finditer(r'[()]|\b(?:FROM|UPDATE|INTO) "(\w+)"', sql):
            if match.group(0) in "()":
                depth += 1 if match.group(0) == "(" else -1
            elif depth == 0:
                return f"{verb} {match.group(1)}"
        return verb

    def summary(items: list[tuple[str, float]]) -> dict:
        by: dict[str, list[float]] = {}
        for sql, ms in items:
            by.setdefault(table(sql), []).append(ms)
        return {
            "queries": len(items),
            "db_ms": round(sum(ms for _, ms in items), 1),
            "by_table": {name: {"n": len(v), "mean_ms": round(sum(v) / len(v), 2)} for name, v in sorted(by.items())},
        }

    result: dict[str, Any] = {}
    reset(mailbox)
    client = Client(HTTP_HOST="127.0.0.1")
    client.cookies["sessionid"] = sessions[0]
    for name, path in (("inbox", "/"), ("message", f"/nachricht/{open_ids[0]}/")):
        client.get(path)  # warm: templates, translations, the pool
        timings = []
        cpu = []
        for pk in open_ids[1:11]:
            seen.clear()
            start, start_cpu = time.perf_counter(), time.thread_time()
            response = client.get(path if name == "inbox" else f"/nachricht/{pk}/")
            timings.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
            assert response.status_code == 200, response.status_code
        result[f"{name}_page"] = {
            **summary(seen),
            "p50_ms": pct(timings, 0.5),
            "cpu_p50_ms": pct(cpu, 0.5),
            "bytes": len(response.content),
            "cprofile": breakdown(client, path if name == "inbox" else f"/nachricht/{open_ids[12]}/"),
        }

    async def fan_out(sockets_n: int) -> dict:
        sockets = []
        for key in sessions[:sockets_n]:
            communicator = WebsocketCommunicator(
                application,
                "/ws/inbox/",
                headers=[(b"cookie", f"sessionid={key}".encode()), (b"origin", b"http://127.0.0.1")],
            )
            connected, _ = await communicator.connect(timeout=5)
            assert connected
            sockets.append(communicator)
        pk = open_ids[-1]
        for s in sockets:  # as the page does: the rows it shows (row events go to the rows' groups only)
            await s.send_to(text_data=json.dumps({"watch": str(pk), "new": str(mailbox.pk)}))
            while "live-watching" not in await s.receive_from(timeout=10):
                pass
        actor = await asyncio.to_thread(lambda: Membership.objects.filter(mailbox=mailbox).first().user)
        message = await asyncio.to_thread(Message.objects.get, pk=pk)
        await asyncio.sleep(0.3)
        seen.clear()
        start = time.perf_counter()
        await asyncio.to_thread(lambda: (message_claim(user=actor, message=message), connection.close()))
        for s in sockets:
            while f'id="msg-{pk}"' not in await s.receive_from(timeout=10):
                pass
        elapsed = (time.perf_counter() - start) * 1000
        event = summary(list(seen))
        await asyncio.to_thread(lambda: (message_release(user=actor, message=message), connection.close()))
        for s in sockets:
            await s.disconnect()
        return {**event, "sockets": sockets_n, "all_sockets_ms": round(elapsed, 1)}

    result["claim_event"] = async_to_sync(fan_out)(20)
    connection_created.disconnect(install)
    for conn in connections.all():
        with contextlib.suppress(ValueError):
            conn.execute_wrappers.remove(wrapper)
    return result


def tree_state() -> str:
    """Which code was measured: the commit, and the product files changed in the working tree since."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # never take the index lock others may need
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, env=env, capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    changed = [line[3:] for line in status.stdout.splitlines() if not line[3:].startswith("bench/")]
    return f"{head.stdout.strip()} + {len(changed)} changed files: {', '.join(changed[:12])}"


# ---- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="50,100,200", help="users per level of the curve (read 5–15 s)")
    parser.add_argument("--stress", default="100,200,300,400", help="users per stress level (1–3 s)")
    parser.add_argument("--ramp", type=float, default=20.0)
    parser.add_argument("--measure", type=float, default=60.0)
    parser.add_argument("--stress-ramp", type=float, default=10.0)
    parser.add_argument("--stress-measure", type=float, default=30.0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 users, 5 s ramp, 10 s window")
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process query count pass")
    parser.add_argument("--sample", action="store_true", help="stack samples of the server's workers (slower)")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.stress, args.ramp, args.measure = "20", "", 5.0, 10.0
    levels = [int(v) for v in args.levels.split(",") if v]
    stress_levels = [int(v) for v in args.stress.split(",") if v]

    started = time.monotonic()
    deadline = started + BUDGET_S
    server = Server(sample=args.sample)

    def stop(signum, frame):
        raise SystemExit(f"signal {signum}")

    # Time box and Ctrl-C: whatever happens, the finally below stops the server's process group.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGALRM, stop)
    signal.alarm(int(BUDGET_S + 90))
    try:
        mailbox, users, data = seed()
        reset(mailbox)
        Session.objects.all().delete()
        sessions = sessions_for(users, max([*levels, *stress_levels, 20]))
        open_ids = list(Message.objects.filter(mailbox=mailbox).exclude(state="done").values_list("pk", flat=True))
        prepare_s = round(time.monotonic() - started, 1)
        bench = Bench(mailbox, sessions, open_ids, server, deadline, connection.settings_dict["NAME"])
        curve = [
            r
            for users_n in levels
            if (r := bench.level(users_n, ramp_s=args.ramp, measure_s=args.measure, read_s=(5.0, 15.0)))
        ]
        stress_users, stress_runs = (
            stress(bench, stress_levels, ramp_s=args.stress_ramp, measure_s=args.stress_measure)
            if stress_levels
            else (0, [])
        )
        queries = None if args.no_profile else profile(mailbox, sessions, open_ids)
    finally:
        signal.alarm(0)
        server.stop()
        with contextlib.suppress(Exception):
            Session.objects.all().delete()
            reset(mailbox)

    head = next((r for r in curve if r["users"] == max(levels)), curve[-1] if curve else {})
    result: dict[str, Any] = {
        "load_users": head.get("users"),
        "load_rps": head.get("rps"),
        "load_p95_ms": head.get("p95_ms"),
        "load_p50_ms": head.get("p50_ms"),
        "load_inbox_p95_ms": head.get("inbox_p95_ms"),
        "load_message_p95_ms": head.get("message_p95_ms"),
        "load_errors": head.get("errors"),
        "load_ws_failures": head.get("ws_failures"),
        "load_frames_per_s": head.get("frames_per_s"),
    }
    if stress_levels:
        result["load_stress_users"] = stress_users
    result["meta"] = {
        "load_machine": machine(),
        "load_server": (
            f"gunicorn -c deploy/gunicorn.conf.py, {WEB_WORKERS} uvicorn workers, DEBUG off, static not served, "
            f"PostgreSQL {connection.settings_dict['NAME']}, Redis {os.environ['REDIS_URL']}; restarted per level"
        ),
        "load_data": (
            f"{MESSAGES:,} mails in one mailbox ({data['ingested']} distinct through message_ingest at "
            f"{data.get('ingest_per_s')} mails/s, the rest copies of their rows), newest {OPEN} open "
            f"(new / in progress / waiting), {MEMBERS} processors; "
            + ("reused" if data["reused"] else "built this run")
        ),
        "load_method": (
            "each user: GET /, /ws/inbox/, then loop GET /nachricht/<random open id>/, the last page's socket "
            "closed, /ws/message/<id>/?page=<token> opened (the page's one socket), read (heartbeat every 20 s), "
            "GET /, it closed, /ws/inbox/ opened (every page load opens its own socket). Users start evenly over "
            "the ramp; requests completing in the window count; errors = non-2xx/3xx, > 10 s, broken connection; "
            "ws failures = not accepted in 5 s or closed by the server. CPU in % of one core from /proc over the "
            "window (server = gunicorn's process group, postgres = backends of the bench database, generator = "
            "this process, other = the rest of the machine); pg_* from pg_stat_database."
        ),
        "load_curve": curve,
        "load_stress": stress_runs,
        "load_queries": queries,
        "load_prepare_s": prepare_s,
        "load_total_s": round(time.monotonic() - started, 1),
        "load_loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        "load_tree": tree_state(),
    }
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
