"""The websocket side of reading one message, in-process: CPU per cycle of the load bench's browser loop.

bench/load.py measures the whole server under 200 browsers; this measures what one of its cycles costs the
server's process on the live side, without a server: the page's claim (as the message view takes it), the
message page's one socket (connect: presence join, the page-wide part; close: leave, release), the inbox
page's socket closed and opened again, and the two "watch" frames (the message page shows no rows, the inbox
page fifty), while N other users' sockets are open (each the socket of a message page on a random open
message, as while they read). Everything runs
in this process against kimportal.asgi.application over the load bench's data and Redis layer; CPU is
time.process_time() of the process (every thread: event loop, socket database threads, event sender).

Two scenarios: "reading" (the others read: their inbox sockets follow no rows, as in the load bench) and
"watching" (the others' inbox pages show the first page and the cycled messages are on it: every claim,
presence and release reaches every inbox socket — the fan-out's worst case).

`.venv/bin/python bench/ws_cycle.py [--sockets 100] [--cycles 30] [--sample]` prints one JSON object; --sample
adds where the measured windows spent their time: every thread's stack sampled every 2 ms (the functions most
often on a running stack, inclusive, and at its top).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import sys as _sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bench.load as load  # noqa: E402  (sets up Django on the load bench's database and Redis db)

# A thread whose innermost frame is one of these waits (in C): not a sample of work.
_IDLE = {"_worker", "wait", "get", "select", "run_forever", "_run_once", "wait_conn", "wait_epoll", "sleep"}


class Sampler(threading.Thread):
    """Stacks of every thread while `on` is set (the measured windows): a poor man's py-spy."""

    def __init__(self) -> None:
        super().__init__(name="ws-cycle-sampler", daemon=True)
        self.on = False
        self.inclusive: Counter[str] = Counter()
        self.top: Counter[str] = Counter()

    def run(self) -> None:
        me = threading.get_ident()
        while True:
            time.sleep(0.002)
            if not self.on:
                continue
            for ident, frame in _sys._current_frames().items():
                if ident == me or frame.f_code.co_name in _IDLE:
                    continue
                self.top[_where(frame)] += 1
                seen = set()
                step: Any = frame
                while step is not None:
                    seen.add(_where(step))
                    step = step.f_back
                for key in seen:
                    self.inclusive[key] += 1

    def report(self) -> dict[str, Any]:
        return {
            "inclusive": dict(self.inclusive.most_common(60)),
            "top": dict(self.top.most_common(30)),
        }


def _where(frame: Any) -> str:
    name = frame.f_code.co_filename
    for marker in ("site-packages/", f"{ROOT}/", "python3.11/"):
        name = name.split(marker, 1)[-1]
    return f"{name}:{frame.f_code.co_name}"


sampler: Sampler | None = None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sockets", type=int, default=100, help="other users with open sockets")
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--scenario", choices=["reading", "watching", "both"], default="both")
    parser.add_argument("--sample", action="store_true", help="sample the stacks of the measured windows")
    args = parser.parse_args()
    global sampler

    from django.db import connection
    from django.test import Client

    mailbox, users, _data = load.seed()
    load.reset(mailbox)
    load.channel_layer_clear()
    sessions = load.sessions_for(users, args.sockets + 1)
    open_ids = list(
        load.Message.objects.filter(mailbox=mailbox).exclude(state="done").order_by("pk").values_list("pk", flat=True)
    )
    client = Client(HTTP_HOST="127.0.0.1")
    client.cookies["sessionid"] = sessions[0]
    first_page = sorted(int(pk) for pk in load.PAGE_ROWS.findall(client.get("/").content))
    connection.close()
    result: dict[str, Any] = {"sockets": args.sockets, "cycles": args.cycles, "first_page_rows": len(first_page)}
    scenarios = ["reading", "watching"] if args.scenario == "both" else [args.scenario]
    for scenario in scenarios:
        load.reset(mailbox)
        if args.sample:
            sampler = Sampler()
            sampler.start()
        result[scenario] = asyncio.run(
            run(
                scenario,
                users=users,
                sessions=sessions,
                open_ids=open_ids,
                first_page=first_page,
                mailbox_id=mailbox.pk,
                cycles=args.cycles,
            )
        )
        if sampler is not None:
            result[scenario]["samples"] = sampler.report()
            sampler.on = False
    print(json.dumps(result, indent=1))


async def run(
    scenario: str,
    *,
    users: list,
    sessions: list[str],
    open_ids: list[int],
    first_page: list[int],
    mailbox_id: int,
    cycles: int,
) -> dict[str, Any]:
    from channels.testing import WebsocketCommunicator
    from django.db import close_old_connections

    from kimportal.asgi import application
    from mailbox.models import Message
    from mailbox.services.claims import page_token_new
    from mailbox.services.reading import message_open

    rng = random.Random(8)
    headers = [(b"origin", b"http://127.0.0.1")]
    others: list[WebsocketCommunicator] = []
    watching = scenario == "watching"
    shown = ",".join(str(pk) for pk in first_page)

    def socket(path: str, key: str) -> WebsocketCommunicator:
        return WebsocketCommunicator(application, path, headers=[(b"cookie", f"sessionid={key}".encode()), *headers])

    async def opened(path: str, key: str) -> WebsocketCommunicator:
        communicator = socket(path, key)
        connected, code = await communicator.connect(timeout=10)
        assert connected, (path, code)
        return communicator

    # The request thread of the message view: one thread, one connection, as a worker's request.
    request_thread = ThreadPoolExecutor(max_workers=1)

    def claim(pk: int) -> tuple[str, float]:
        started = time.thread_time()
        user = users[0]
        message = (
            Message.objects.filter(pk=pk)
            .select_related("mailbox")
            .only("pk", "mailbox_id", "state", "subject", "mailbox__address")
            .get()
        )
        page = page_token_new(user=user, message_id=pk)
        message_open(user=user, message=message, claim_page=page)
        close_old_connections()
        return page, time.thread_time() - started

    loop = asyncio.get_running_loop()
    for index, key in enumerate(sessions[1:]):
        # Reading: each other user's one socket is their message page's (page-wide too); watching: their inbox's.
        path = "/ws/inbox/" if watching else f"/ws/message/{rng.choice(open_ids)}/?page="
        other = await opened(path, key)
        await other.send_to(text_data=json.dumps({"watch": shown if watching else "", "new": ""}))
        others.append(other)
        if index % 20 == 0:
            await asyncio.sleep(0.05)
    mine = await opened("/ws/inbox/", sessions[0])
    await mine.send_to(text_data=json.dumps({"watch": shown, "new": str(mailbox_id)}))
    targets = [rng.choice(first_page if watching else open_ids) for _ in range(cycles + 3)]
    await asyncio.sleep(1.0)

    def drain() -> int:
        frames = 0
        for communicator in [*others, mine]:
            while not communicator.output_queue.empty():
                communicator.output_queue.get_nowait()
                frames += 1
        return frames

    drain()
    claim_cpu = 0.0
    frames = 0
    cpu = wall = 0.0
    for number, pk in enumerate(targets):
        measured = number >= 3  # the first cycles warm up (compiled queries, templates)
        started, started_wall = time.process_time(), time.perf_counter()
        if sampler is not None:
            sampler.on = measured
        # GET /nachricht/<pk>/: the page claims; the inbox page's socket closes, the message page opens its one
        # socket (the message's, page-wide too) and tells it that it shows no rows.
        page, spent = await loop.run_in_executor(request_thread, claim, pk)
        page_socket = await opened(f"/ws/message/{pk}/?page={page}", sessions[0])
        await mine.disconnect()
        await page_socket.send_to(text_data=json.dumps({"watch": "", "new": ""}))
        await asyncio.sleep(0.15)
        # The reader leaves: the page's socket closes, GET / shows the first page again with a new socket.
        await page_socket.disconnect()
        mine = await opened("/ws/inbox/", sessions[0])
        await mine.send_to(text_data=json.dumps({"watch": shown, "new": str(mailbox_id)}))
        await asyncio.sleep(0.25)
        if sampler is not None:
            sampler.on = False
        if measured:
            cpu += time.process_time() - started
            wall += time.perf_counter() - started_wall
            claim_cpu += spent
            frames += drain()
        else:
            drain()
    for communicator in [*others, mine]:
        await communicator.disconnect()
    request_thread.shutdown()
    return {
        "cpu_ms_per_cycle": round(cpu * 1000 / cycles, 2),
        "claim_cpu_ms": round(claim_cpu * 1000 / cycles, 2),
        "frames_per_cycle": round(frames / cycles, 1),
        "wall_ms_per_cycle": round(wall * 1000 / cycles, 1),
    }


if __name__ == "__main__":
    main()
