"""The Redis Pub/Sub channel layer (kimportal.channel_layer) on a real Redis: each layer instance stands for one
server process — one subscription per group and process, batched group changes, bounded queues."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from django.conf import settings

from kimportal.channel_layer import RedisPubSubChannelLayer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis layer needs REDIS_URL (the tests set it)")


@pytest_asyncio.fixture
async def layers():
    made: list[RedisPubSubChannelLayer] = []

    def make(**config) -> RedisPubSubChannelLayer:
        layer = RedisPubSubChannelLayer(hosts=[settings.REDIS_URL], prefix="test-pubsub", **config)
        made.append(layer)
        return layer

    yield make
    for layer in made:
        await layer.flush()


async def subscribed(group: str, processes: int) -> None:
    """Wait (bounded) until Redis counts this many subscribing processes: SUBSCRIBE is not acknowledged inline."""
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        for _ in range(500):
            ((_, count),) = await client.pubsub_numsub(f"test-pubsub__group__{group}")
            if count == processes:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{group}: {count} subscribers, not {processes}")
    finally:
        await client.aclose()


@pytest.mark.asyncio
async def test_groups_join_and_leave_in_batches_across_processes(layers):
    first, second, sender = layers(linger=0), layers(), layers()
    page = await first.new_channel()
    other = await second.new_channel()
    groups = [f"message.{i}" for i in range(50)]
    await first.group_add_many(groups, page)
    await second.group_add_many(["message.7"], other)
    await subscribed("message.7", 2)

    await sender.group_send("message.7", {"type": "presence.changed", "n": 1})
    assert (await first.receive(page))["n"] == 1
    assert (await second.receive(other))["n"] == 1

    await first.group_discard_many(groups[:10], page)
    await subscribed("message.7", 1)  # the first process's last socket left: Redis stops sending it there
    await sender.group_send("message.7", {"type": "presence.changed", "n": 2})
    assert (await second.receive(other))["n"] == 2
    await sender.group_send("message.12", {"type": "presence.changed", "n": 3})
    assert (await first.receive(page))["n"] == 3  # still following the rest


@pytest.mark.asyncio
async def test_a_process_subscribes_once_and_hands_an_event_to_each_of_its_sockets(layers):
    process, sender = layers(), layers()
    pages = [await process.new_channel() for _ in range(30)]
    for page in pages:
        await process.group_add_many(["message.1", "mailbox.1"], page)
    await subscribed("message.1", 1)
    await sender.group_send("message.1", {"type": "message.changed", "n": 9})
    assert [(await process.receive(page))["n"] for page in pages] == [9] * 30


@pytest.mark.asyncio
async def test_a_socket_that_cannot_keep_up_is_told_to_resync_not_left_stale(layers):
    process, sender = layers(capacity=3), layers()
    slow, quick = await process.new_channel(), await process.new_channel()
    await process.group_add_many(["message.5"], slow)
    await process.group_add_many(["message.5"], quick)
    await subscribed("message.5", 1)
    for n in range(5):
        await sender.group_send("message.5", {"type": "message.changed", "n": n})
        assert (await process.receive(quick))["n"] == n  # this one reads as they come
    # The slow one never read: its queue overflowed; what it holds now is one order to resync, nothing stale.
    assert await process.receive(slow) == {"type": "layer.overflow"}
    assert (await process.receive(slow))["n"] == 4  # only what came after the order


@pytest.mark.asyncio
async def test_a_group_its_last_socket_left_lingers_subscribed_but_reaches_only_members(layers, monkeypatch):
    process, sender = layers(linger=0.5), layers()
    page, other = await process.new_channel(), await process.new_channel()
    await process.group_add_many(["message.1", "message.2"], page)
    await process.group_add_many(["message.2"], other)
    await subscribed("message.1", 1)
    loop_layer = process._get_layer()
    shard = loop_layer._shards[0]
    asked: list[tuple[str, ...]] = []

    async def subscribe(*names: str) -> None:
        asked.append(names)
        await redis_subscribe(*names)

    redis_subscribe = shard._pubsub.subscribe
    monkeypatch.setattr(shard._pubsub, "subscribe", subscribe)

    await process.group_discard_many(["message.1", "message.2"], page)
    # The process stays subscribed for a moment; the socket that left gets nothing of either group.
    await subscribed("message.1", 1)
    await sender.group_send("message.1", {"type": "message.changed", "n": 1})
    await sender.group_send("message.2", {"type": "message.changed", "n": 2})
    assert (await process.receive(other))["n"] == 2  # after n=1 on the same connection: n=1 was handed out
    assert loop_layer.channels[page].empty()

    # The page shows the row again within the linger: no SUBSCRIBE, and its events arrive again.
    await process.group_add_many(["message.1"], page)
    assert asked == []
    await sender.group_send("message.1", {"type": "message.changed", "n": 3})
    assert (await process.receive(page))["n"] == 3

    # Left for good: after the linger Redis stops sending the group here; a later join subscribes again.
    await process.group_discard_many(["message.1"], page)
    await subscribed("message.1", 0)
    await process.group_add_many(["message.1"], page)
    assert asked == [("test-pubsub__group__message.1",)]
    await subscribed("message.1", 1)


@pytest.mark.asyncio
async def test_invalid_group_names_are_refused(layers):
    process = layers()
    channel = await process.new_channel()
    with pytest.raises((AssertionError, TypeError)):
        await process.group_add_many(["no spaces allowed"], channel)


@pytest.mark.asyncio
async def test_sockets_channels_are_reached_through_one_subscription_of_their_process(layers):
    process, sender = layers(), layers()
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        pages = [await process.new_channel() for _ in range(20)]
        # Opening a socket costs Redis nothing more: the process is subscribed once for all its sockets' channels.
        assert len({page.partition("!")[0] for page in pages}) == 1
        assert len(await client.pubsub_channels("test-pubsub*specific.*")) == 1
        await sender.send(pages[7], {"type": "hello", "n": 7})
        await sender.send(pages[3], {"type": "hello", "n": 3})
        assert (await process.receive(pages[3]))["n"] == 3
        assert (await process.receive(pages[7]))["n"] == 7
        assert all(process._get_layer().channels[page].empty() for page in pages)
    finally:
        await client.aclose()


def shard_of(layer: RedisPubSubChannelLayer, name: str):
    loop_layer = layer._get_layer()
    return loop_layer._get_shard(loop_layer._get_group_channel_name(name))


async def listening(layers, group: str) -> tuple[RedisPubSubChannelLayer, str, RedisPubSubChannelLayer]:
    """A process with one socket in the group, Redis counting it, and a second process to publish from."""
    process, sender = layers(), layers()
    page = await process.new_channel()
    await process.group_add_many([group], page)
    await subscribed(group, 1)
    return process, page, sender


@pytest.mark.asyncio
async def test_a_burst_of_publishes_keeps_its_order_and_shares_round_trips(layers):
    process, page, sender = await listening(layers, "message.5")
    await sender.group_send("message.5", {"type": "message.changed", "n": -1})  # the connection is made
    assert (await process.receive(page))["n"] == -1
    shard = shard_of(sender, "message.5")
    pipelines = 0
    make_pipeline = shard._redis.pipeline

    def counted(*args, **kwargs):
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(*args, **kwargs)

    shard._redis.pipeline = counted
    # 200 sockets of one process publish at once (each as events.publish does: one event after the other).
    await asyncio.gather(*(sender.group_send("message.5", {"type": "message.changed", "n": n}) for n in range(200)))
    assert [(await process.receive(page))["n"] for _ in range(200)] == list(range(200))
    # They went out in a few batches, not one round trip each.
    assert 1 <= pipelines <= 20


@pytest.mark.asyncio
async def test_publishing_and_opening_sockets_do_not_wait_for_a_subscription_in_progress(layers):
    process, page, sender = await listening(layers, "message.6")
    await sender.new_channel()  # the sender process's own channel is subscribed
    shard = shard_of(sender, "message.6")
    assert sender._get_layer()._get_shard(sender._get_layer().process_channel) is shard  # one Redis, one shard
    # A subscription (a page's fifty rows) is in flight on the shard's Pub/Sub connection.
    async with shard._lock:
        async with asyncio.timeout(5):
            await sender.group_send("message.6", {"type": "message.changed", "n": 1})
            assert (await process.receive(page))["n"] == 1
            assert (await sender.new_channel()).startswith(sender._get_layer().process_channel)


@pytest.mark.asyncio
async def test_a_publish_to_an_unreachable_redis_fails_at_once_and_the_next_one_is_tried_again():
    broken = RedisPubSubChannelLayer(hosts=["redis://127.0.0.1:1/0"], prefix="test-pubsub")
    try:
        for _ in range(2):
            with pytest.raises(aioredis.ConnectionError):
                async with asyncio.timeout(5):
                    await broken.group_send("message.8", {"type": "message.changed"})
        # A sender that stopped waiting (its timeout) leaves nothing behind that blocks the next one.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0):
                await broken.group_send("message.8", {"type": "message.changed"})
        shard = shard_of(broken, "message.8")
        with pytest.raises(aioredis.ConnectionError):
            async with asyncio.timeout(5):
                await broken.group_send("message.8", {"type": "message.changed"})
        assert shard._outbox == []
    finally:
        await broken.flush()


class PrivateRedis:
    """A Redis server of the test's own on a free port, which the test may stop and start again."""

    def __init__(self, data_dir: str = "") -> None:
        # data_dir: it keeps its data there across restarts (appendonly, as docs/deploy.md sets Redis up).
        self.data_dir = data_dir
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.server: subprocess.Popen | None = None

    async def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        kept = ["--dir", self.data_dir, "--appendonly", "yes", "--appendfsync", "always"] if self.data_dir else []
        self.server = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *kept],
            stdout=subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(500):
                with contextlib.suppress(aioredis.ConnectionError):
                    if await client.ping():
                        return
                await asyncio.sleep(0.01)
            raise AssertionError("the private Redis did not start")
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
            self.server = None


@pytest_asyncio.fixture
async def private_redis():
    server = PrivateRedis()
    await server.start()
    yield server
    server.stop()


@pytest.mark.asyncio
async def test_a_redis_restart_tells_every_socket_to_resync_and_events_flow_again(private_redis):
    process = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    sender = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    client = aioredis.Redis.from_url(private_redis.url)

    async def subscribed_here() -> None:
        for _ in range(500):
            ((_, count),) = await client.pubsub_numsub("test-pubsub__group__message.1")
            if count == 1:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("not subscribed")

    try:
        pages = [await process.new_channel() for _ in range(3)]
        for page in pages:
            await process.group_add_many(["message.1"], page)
        await subscribed_here()
        await sender.group_send("message.1", {"type": "message.changed", "n": 1})
        assert [(await process.receive(page))["n"] for page in pages] == [1, 1, 1]

        # Redis restarts (an upgrade, a crash): whatever was published meanwhile is lost for good.
        private_redis.stop()
        await private_redis.start()
        async with asyncio.timeout(15):
            assert [(await process.receive(page))["type"] for page in pages] == ["layer.lost"] * 3
            # redis-py subscribes again on its own; events of after the restart arrive.
            await client.aclose()
            client = aioredis.Redis.from_url(private_redis.url)
            await subscribed_here()
            while True:
                with contextlib.suppress(aioredis.ConnectionError):  # the sender's pooled connection was cut too
                    await sender.group_send("message.1", {"type": "message.changed", "n": 2})
                    break
            for page in pages:
                event = await process.receive(page)
                while event["type"] == "layer.lost":  # told again when the connection came back
                    event = await process.receive(page)
                assert event["n"] == 2
    finally:
        await client.aclose()
        await process.flush()
        await sender.flush()


@pytest.mark.asyncio
async def test_a_flush_before_the_sender_ran_leaves_no_publish_waiting_for_ever(layers):
    sender = layers()
    # A publish is waiting and its shard's sender is due but has not run yet when the layer is flushed (the loop's
    # end, a test's clean-up).
    waiting = asyncio.ensure_future(sender.group_send("message.9", {"type": "message.changed"}))
    await asyncio.sleep(0)
    await sender.flush()
    done, _pending = await asyncio.wait([waiting], timeout=5)
    assert done == {waiting} and waiting.cancelled()
    # The layer is usable again, as channels_redis promises after a flush.
    async with asyncio.timeout(5):
        await sender.group_send("message.9", {"type": "message.changed"})


@pytest.mark.asyncio
async def test_publishes_whose_senders_gave_up_on_a_hung_redis_are_not_kept():
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):  # a Redis that takes commands and never answers
            pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    hung = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"], prefix="test-pubsub")
    try:
        for _ in range(50):  # events.publish: each sender waits a bounded time
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await hung.group_send("message.10", {"type": "message.changed"})
        # Nothing of theirs waits to go out once Redis answers again: memory stays bounded while it hangs.
        assert shard_of(hung, "message.10")._outbox == []
    finally:
        await hung.flush()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_while_redis_stays_down_sockets_are_told_once_and_again_when_it_is_back(private_redis):
    process = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    try:
        page = await process.new_channel()
        await process.group_add_many(["message.11"], page)
        pubsub = shard_of(process, "message.11")._pubsub
        failures = 0
        read = pubsub.get_message

        async def counted(*args, **kwargs):
            nonlocal failures
            try:
                return await read(*args, **kwargs)
            except aioredis.ConnectionError:
                failures += 1
                raise

        pubsub.get_message = counted
        private_redis.stop()
        async with asyncio.timeout(15):
            assert (await process.receive(page))["type"] == "layer.lost"
            # The browser reconnects at once (htmx) and the page joins its groups again, which the process still is
            # subscribed to: it is not closed again and again, each time reloading its list, while Redis stays down.
            again = await process.new_channel()
            await process.group_add_many(["message.11"], again)
            seen = failures
            while failures < seen + 2:  # the receiver tried Redis twice more
                await asyncio.sleep(0.05)
            assert process._get_layer().channels[again].empty()
            # Redis is back: what was published meanwhile is gone, so the socket resyncs once more.
            await private_redis.start()
            assert (await process.receive(again))["type"] == "layer.lost"
    finally:
        await process.flush()


@pytest.mark.asyncio
async def test_a_logged_event_is_published_and_kept_for_a_reader_that_subscribes_later(layers):
    process, page, sender = await listening(layers, "message.7")
    log = f"live-log.test-{uuid.uuid4().hex}"
    reader = layers()
    await reader.recent([log], time.time() + 60)  # the logs are complete from here on (on a Redis started just now)
    start = time.time()
    await sender.group_send_logged("message.7", {"type": "message.changed", "n": 1}, log)
    await sender.group_send("message.7", {"type": "message.changed", "n": 2})  # not logged
    await sender.group_send_logged("message.7", {"type": "message.changed", "n": 3}, log)
    assert [(await process.receive(page))["n"] for _ in range(3)] == [1, 2, 3]
    # Another process reads the log: both logged events, in order; none after a later start; another log is empty.
    assert [event["n"] for event in await reader.recent([log], start)] == [1, 3]
    assert await reader.recent([log], time.time() + 2) == []
    assert await reader.recent([f"{log}-other"], start) == []


@pytest.mark.asyncio
async def test_a_log_read_across_a_redis_restart_cannot_tell(private_redis):
    """Redis restarted after a list was read, before its socket replays: the log lost what was sent in between, and
    an empty read would say that nothing was. A process that saw its connection break or come back since then cannot
    vouch for the logs (LogCut: the socket reads the database instead); a later start is read as ever."""
    from kimportal.channel_layer import LogCut

    process = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    sender = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    try:
        page = await process.new_channel()
        await process.group_add_many(["mailbox.5"], page)
        await process.recent(["live-log.5"], time.time() + 60)  # the logs are complete from here on
        start = time.time()
        await sender.group_send_logged("mailbox.5", {"type": "counts.changed", "n": 1}, "live-log.5")
        assert (await process.receive(page))["n"] == 1
        assert [event["n"] for event in await process.recent(["live-log.5"], start)] == [1]

        private_redis.stop()
        await private_redis.start()
        async with asyncio.timeout(15):
            assert (await process.receive(page))["type"] == "layer.lost"
            while True:  # the pooled connections of before the restart are cut: the first reads may fail
                with contextlib.suppress(aioredis.ConnectionError):
                    await process.recent(["live-log.other"], time.time() + 60)
                    break
        with pytest.raises(LogCut):
            await process.recent(["live-log.5"], start)
        later = time.time() + 0.01
        await asyncio.sleep(0.02)
        assert await process.recent(["live-log.5"], later) == []
    finally:
        await process.flush()
        await sender.flush()


@pytest.mark.asyncio
async def test_a_process_started_after_a_redis_restart_does_not_read_the_empty_logs_as_nothing_sent(private_redis):
    """Redis restarted (nothing kept on disk) after a list was read, and the socket that replays it lives in a process
    that never saw the old Redis: its connection never broke, yet the logs lost what was sent. The read cannot tell
    (LogCut: the socket reads the database instead); a start after the logs began again is read as ever."""
    from kimportal.channel_layer import LogCut

    sender = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    later_process = RedisPubSubChannelLayer(hosts=[private_redis.url], prefix="test-pubsub")
    try:
        await sender.recent(["live-log.5"], time.time() + 60)  # the logs are complete from here on
        start = time.time()
        await sender.group_send_logged("mailbox.5", {"type": "message.created", "n": 1}, "live-log.5")
        assert [event["n"] for event in await sender.recent(["live-log.5"], start)] == [1]
        await sender.flush()

        private_redis.stop()
        await private_redis.start()
        with pytest.raises(LogCut):
            await later_process.recent(["live-log.5"], start)
        later = time.time()
        # Logged after the restart: the logs are complete since then, not since the list's read.
        await later_process.group_send_logged("mailbox.5", {"type": "message.created", "n": 2}, "live-log.5")
        with pytest.raises(LogCut):
            await later_process.recent(["live-log.5"], start)
        assert [event["n"] for event in await later_process.recent(["live-log.5"], later)] == [2]
    finally:
        await sender.flush()
        await later_process.flush()


@pytest.mark.asyncio
async def test_a_redis_that_kept_its_data_across_a_restart_does_not_vouch_for_the_logs_either(tmp_path):
    """Redis keeps its data on disk (appendonly, as docs/deploy.md sets it up for the broker) and restarted after a
    list was read: what was sent while it was down never reached the logs, though the logs and the note since when
    they are complete came back. A process that never saw the old Redis cannot tell (LogCut: the socket reads the
    database instead)."""
    from kimportal.channel_layer import LogCut

    server = PrivateRedis(data_dir=str(tmp_path))
    await server.start()
    sender = RedisPubSubChannelLayer(hosts=[server.url], prefix="test-pubsub")
    later_process = RedisPubSubChannelLayer(hosts=[server.url], prefix="test-pubsub")
    try:
        await sender.recent(["live-log.5"], time.time() + 60)  # the logs are complete from here on
        start = time.time()
        await sender.group_send_logged("mailbox.5", {"type": "message.created", "n": 1}, "live-log.5")
        assert [event["n"] for event in await sender.recent(["live-log.5"], start)] == [1]
        await sender.flush()

        server.stop()  # mail stored now: its event reaches neither a socket nor a log
        await server.start()
        client = aioredis.Redis.from_url(server.url)
        try:
            assert await client.xlen("test-pubsublive-log.5") == 1  # the log came back, the note too
        finally:
            await client.aclose()
        with pytest.raises(LogCut):
            await later_process.recent(["live-log.5"], start)
        later = time.time()
        await later_process.group_send_logged("mailbox.5", {"type": "message.created", "n": 2}, "live-log.5")
        assert [event["n"] for event in await later_process.recent(["live-log.5"], later)] == [2]
    finally:
        await sender.flush()
        await later_process.flush()
        server.stop()


class RedisProxy:
    """A TCP proxy in front of the test Redis that can hold back or cut what a layer sends: `hold`, the first chunk
    with these bytes waits until `release` is set; `cut`, the first chunk with these bytes reaches Redis, and its
    connection is closed when Redis answers (it ran the commands; their replies never arrive)."""

    def __init__(self) -> None:
        url = urlsplit(settings.REDIS_URL)
        self.target = (url.hostname or "127.0.0.1", url.port or 6379)
        self.db = url.path.lstrip("/") or "0"
        self.hold: bytes | None = None
        self.held, self.release = asyncio.Event(), asyncio.Event()
        self.cut: bytes | None = None

    async def __aenter__(self) -> RedisProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/{self.db}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        cutting = False

        async def upstream() -> None:
            nonlocal cutting
            while data := await reader.read(65536):
                if self.hold is not None and self.hold in data:
                    self.hold = None
                    self.held.set()
                    await self.release.wait()
                if self.cut is not None and self.cut in data:
                    self.cut, cutting = None, True
                up_writer.write(data)
                await up_writer.drain()

        async def downstream() -> None:
            while data := await up_reader.read(65536):
                if cutting:
                    break
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            writer.close()
            up_writer.close()


@pytest.mark.asyncio
async def test_a_join_returns_once_redis_subscribed_so_what_is_published_then_arrives(layers):
    """A socket reads a list's log right after joining its groups (mailbox.consumers.inbox): an event published
    after that read must arrive live. SUBSCRIBE is answered on the Pub/Sub connection, not inline: a join that returned
    once the command was written left a window in which Redis had not subscribed yet, and an event published then
    was neither in the log read nor delivered."""
    sender = layers()
    group = f"mailbox.join-{uuid.uuid4().hex[:8]}"
    async with RedisProxy() as proxy:
        process = RedisPubSubChannelLayer(hosts=[proxy.url], prefix="test-pubsub")
        try:
            page = await process.new_channel()
            proxy.hold = group.encode()  # Redis is slow to take this SUBSCRIBE
            joining = asyncio.ensure_future(process.group_add_many([group], page))
            async with asyncio.timeout(5):
                await proxy.held.wait()
            done, _pending = await asyncio.wait([joining], timeout=0.3)
            assert not done, "the join returned before Redis subscribed"
            proxy.release.set()
            async with asyncio.timeout(5):
                await joining
                # Right after the join: published (and, for a log, read) from now on, it arrives.
                await sender.group_send(group, {"type": "message.changed", "n": 1})
                assert (await process.receive(page))["n"] == 1
        finally:
            await process.flush()


@pytest.mark.asyncio
async def test_a_join_redis_did_not_confirm_in_time_leaves_the_next_join_waiting_for_it_too(layers, monkeypatch):
    """Redis took longer than SUBSCRIBE_SECONDS to confirm a join (which fails: its socket resyncs). The group is not
    taken as subscribed meanwhile: the next socket's join waits for the confirmation as well, or it would read its
    list's log and lose what is published before Redis subscribes."""
    from kimportal import channel_layer

    monkeypatch.setattr(channel_layer, "SUBSCRIBE_SECONDS", 0.3)
    sender = layers()
    group = f"mailbox.slow-{uuid.uuid4().hex[:8]}"
    async with RedisProxy() as proxy:
        process = RedisPubSubChannelLayer(hosts=[proxy.url], prefix="test-pubsub")
        try:
            first = await process.new_channel()
            proxy.hold = group.encode()
            with pytest.raises(TimeoutError):
                await process.group_add_many([group], first)
            second = await process.new_channel()
            joining = asyncio.ensure_future(process.group_add_many([group], second))
            done, _pending = await asyncio.wait([joining], timeout=0.1)
            assert not done, "the next join returned before Redis subscribed"
            proxy.release.set()
            async with asyncio.timeout(5):
                await joining
                await sender.group_send(group, {"type": "message.changed", "n": 1})
                assert (await process.receive(second))["n"] == 1
        finally:
            await process.flush()


@pytest.mark.asyncio
async def test_a_join_that_failed_leaves_no_member_and_no_subscription_behind(monkeypatch):
    """A join that fails (Redis did not confirm in time, or is down) ends its socket, which never counted the groups
    as joined and so never leaves them: the process must not keep it as a member (nor stay subscribed for it, with
    every event of the group read and dropped for as long as the process runs)."""
    from kimportal import channel_layer

    monkeypatch.setattr(channel_layer, "SUBSCRIBE_SECONDS", 0.3)
    group = f"message.failed-{uuid.uuid4().hex[:8]}"
    async with RedisProxy() as proxy:
        process = RedisPubSubChannelLayer(hosts=[proxy.url], prefix="test-pubsub", linger=0)
        try:
            page = await process.new_channel()
            proxy.hold = group.encode()
            with pytest.raises(TimeoutError):
                await process.group_add_many([group], page)
            proxy.release.set()
            await subscribed(group, 0)
            assert page not in process._get_layer().groups.get(f"test-pubsub__group__{group}", set())
        finally:
            await process.flush()


@pytest.mark.asyncio
async def test_a_subscribe_answered_before_an_unsubscribe_on_its_way_confirms_nothing(layers):
    """SUBSCRIBE (a join that failed), UNSUBSCRIBE (its rollback), SUBSCRIBE (the next join): Redis answers in order,
    and only the last answer means subscribed from then on. Taken from the first, the next join would return while
    Redis is about to unsubscribe."""
    process = layers()
    shard = process._get_layer()._shards[0]
    shard._ensure_redis()
    pubsub = shard._pubsub
    confirmed: list[tuple[str, int]] = []
    pubsub.confirmed = lambda name: confirmed.append((name, len(answers)))
    answers: list[object] = []
    name = f"test-pubsub__group__mailbox.order-{uuid.uuid4().hex[:8]}"
    await pubsub.subscribe(name)
    await pubsub.unsubscribe(name)
    await pubsub.subscribe(name)
    async with asyncio.timeout(5):
        while len(answers) < 3:
            answer = await pubsub.get_message(timeout=1)
            if answer is not None:
                answers.append(answer["type"])
    assert answers == ["subscribe", "unsubscribe", "subscribe"]
    assert confirmed == [(name, 2)]  # the third answer, none before


@pytest.mark.asyncio
async def test_a_publish_whose_connection_broke_after_redis_ran_it_is_not_sent_twice(layers):
    """The connection breaks after Redis ran a publish pipeline, before its replies arrive. Retried whole (as redis-py
    does when the host's settings ask for retries), its event was published and logged twice; it goes out once, and
    its sender is told it failed."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    group = f"mailbox.once-{uuid.uuid4().hex[:8]}"
    log = f"live-log.once-{uuid.uuid4().hex[:8]}"
    process = layers()
    page = await process.new_channel()
    await process.group_add_many([group], page)
    async with RedisProxy() as proxy:
        host = {"address": proxy.url, "retry": Retry(NoBackoff(), 3), "retry_on_error": [aioredis.ConnectionError]}
        sender = RedisPubSubChannelLayer(hosts=[host], prefix="test-pubsub")
        try:
            await sender.recent([log], time.time() + 60)  # the connection is made; the logs are complete from here on
            start = time.time()
            proxy.cut = b"PUBLISH"
            with pytest.raises(aioredis.ConnectionError):
                await sender.group_send_logged(group, {"type": "message.created", "n": 1}, log)
            await sender.group_send_logged(group, {"type": "message.created", "n": 2}, log)
            async with asyncio.timeout(5):
                assert [(await process.receive(page))["n"] for _ in range(2)] == [1, 2]
            assert [event["n"] for event in await process.recent([log], start)] == [1, 2]
        finally:
            await sender.flush()


@pytest.mark.asyncio
async def test_portals_on_two_databases_of_one_redis_server_do_not_hear_each_other():
    # Pub/Sub channels ignore the database number: production on db 3 and a test system on db 4 of one server
    # would otherwise hand each other's events to their sockets.
    from kimportal.settings import live_prefix

    base = settings.REDIS_URL.rsplit("/", 1)[0]
    group = f"mailbox.{uuid.uuid4().hex[:8]}"
    made = []
    for db in (3, 4):
        url = f"{base}/{db}"
        made.append(RedisPubSubChannelLayer(hosts=[url], prefix=live_prefix(url)))
    production, test_system = made
    try:
        listeners = [await production.new_channel(), await test_system.new_channel()]
        await production.group_add_many([group], listeners[0])
        await test_system.group_add_many([group], listeners[1])

        await production.group_send(group, {"type": "message.created", "from": "production"})
        await test_system.group_send(group, {"type": "message.created", "from": "test system"})

        assert (await production.receive(listeners[0]))["from"] == "production"
        # Published after the production event: had that crossed over, it would arrive here first.
        assert (await test_system.receive(listeners[1]))["from"] == "test system"
        assert live_prefix(f"{base}/3") != live_prefix(f"{base}/4")
    finally:
        for layer in made:
            await layer.flush()
