"""The Redis channel layer: channels_redis' Pub/Sub layer, with group changes in batches and bounded queues.

channels_redis' list-based layer keeps a sorted set per group and pushes every event into every member
socket's list: an inbox page follows the fifty rows it shows, so each page load was a hundred Redis commands
(ZADD, EXPIRE per row) and each event one push, one pop and one decode per watching socket. With Redis Pub/Sub
a server process subscribes to a group once, however many of its sockets joined it, receives each event once
and hands it to its sockets itself. group_add_many and group_discard_many change a page's worth of groups in one
SUBSCRIBE/UNSUBSCRIBE. A group whose last socket of the process left stays subscribed for a few seconds ("linger"):
a page that shows the same rows again (back to the inbox after reading a message) joins them without a round trip to
Redis; meanwhile its events reach no socket (only members get events). Each socket's queue is bounded: one that
overflows gets a single "layer.overflow" event that makes it close and resync (mailbox.consumers.base), never a
silently incomplete picture.

Events may also be kept for a minute in a short log (a Redis stream per key, written in the same pipeline right before
their PUBLISH): a page rendered before its socket subscribed reads what it missed in between (group_send_logged,
recent). Without it, that window was silent: a claim or a late-committed mail never reached the page. A join returns
once Redis confirmed the subscription, so what is published after the read arrives live; a read the logs cannot
vouch for (a restart emptied them) says so (LogCut) instead of returning nothing.

A socket's own channel is process-local, as the Channels spec names them ("<process channel>!<socket>"): the process
subscribes to its channel once, and a message sent to one of its sockets travels there with the socket's name in
front. channels_redis subscribed to every socket's channel on connect and unsubscribed on close: two Redis round
trips per socket for sends that nothing in the portal makes (events go to groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from channels.layers import BaseChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer as _RedisPubSubChannelLayer
from channels_redis.pubsub import RedisPubSubLoopLayer, RedisSingleShardConnection, _async_proxy
from channels_redis.utils import _wrap_close, create_pool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

# How long the short event logs keep an event (seconds): a page whose socket subscribes later than this after its
# render falls back to reading the database (mailbox.consumers.inbox).
LOG_SECONDS = 60
# Entries one read takes from one log at most (a minute of a very busy mailbox).
LOG_READ_MAX = 5_000
# Since when (time.time()) a Redis's logs hold everything logged, and for which run of that Redis ("<run_id> <time>"):
# set by the first read after Redis started, never expires. A Redis that keeps its data on disk (appendonly, as
# docs/deploy.md sets it up for the broker) brings the key back after a restart, though what was sent while it was down
# was never logged: the run id (INFO server) tells that run from the one the key was written in.
LOG_SINCE_KEY = "live-logs-since"
# How long a subscription may take to be confirmed by Redis (SUBSCRIBE answers on the Pub/Sub connection).
SUBSCRIBE_SECONDS = 5.0


class LogCut(Exception):
    """A log read cannot tell what was sent: it reached LOG_READ_MAX (the newest entries of the window were left out:
    a burst, a retention run redrawing thousands of rows), or Redis may have restarted within the window (the logs
    lost what was written before: this process saw its connection break, or the logs started after the window did).
    The reader falls back as it would without logs."""


# Group names are checked as channels' own layers check them (the Pub/Sub layer has no checker of its own).
_NAMES = BaseChannelLayer()


def _only(queue: asyncio.Queue, data: bytes) -> None:
    """Replace what a socket's queue holds with one event (a resync: what it held is stale or incomplete)."""
    while not queue.empty():
        queue.get_nowait()
    queue.put_nowait(data)


class _PubSub(aioredis.client.PubSub):
    """redis-py's Pub/Sub connection, which says when events may have been lost: the connection broke (reading
    from it failed), or it was made again (redis-py re-subscribes on its own, silently: what was published in
    between never arrives)."""

    def __init__(self, *args: Any, lost: Any, confirmed: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost = lost
        self.confirmed = confirmed
        # Reading failed and no connection was made since: told once. The receiver tries again every second while
        # Redis stays down; sockets that reconnected meanwhile are told when it is back (on_connect), not each time.
        self.broken = False
        # UNSUBSCRIBEs sent and not answered yet, per channel: a SUBSCRIBE's answer that comes before one of them
        # does not mean subscribed from now on (a join that failed unsubscribes what it had sent, the next one
        # sends SUBSCRIBE again: Redis answers all three in order).
        self.unsubscribing: dict[str, int] = {}

    async def unsubscribe(self, *args: Any, **kwargs: Any) -> Any:
        for name in args:
            key = name.decode() if isinstance(name, bytes) else str(name)
            self.unsubscribing[key] = self.unsubscribing.get(key, 0) + 1
        return await super().unsubscribe(*args, **kwargs)

    async def on_connect(self, connection: Any) -> None:
        self.unsubscribing.clear()  # a new connection: nothing of the old one is answered any more
        await super().on_connect(connection)
        self.broken = False
        if self.channels:  # a connection made again for subscriptions that existed: events were missed
            self.lost()

    async def handle_message(self, response: Any, ignore_subscribe_messages: bool = False) -> Any:
        # Redis's answer to SUBSCRIBE, one per channel: from now on it sends the channel's messages here.
        if isinstance(response, list) and len(response) > 1:
            kind = response[0].decode() if isinstance(response[0], bytes) else str(response[0])
            name = response[1].decode() if isinstance(response[1], bytes) else str(response[1])
            if kind == "unsubscribe" and name in self.unsubscribing:
                self.unsubscribing[name] -= 1
                if self.unsubscribing[name] <= 0:
                    del self.unsubscribing[name]
            elif kind == "subscribe" and name not in self.unsubscribing:
                self.confirmed(name)
        return await super().handle_message(response, ignore_subscribe_messages)

    async def get_message(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_message(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            if not self.broken:
                self.broken = True
                self.lost()
            raise


class _Shard(RedisSingleShardConnection):
    """One Redis connection of a process: subscriptions in batches, publishes in order and in batches, and a bounded
    queue per socket."""

    _redis: Any  # set by channels_redis (untyped there)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Publishes not yet handed to Redis, oldest first, each with the future its sender waits on, and the log it
        # is also written to (or "").
        self._outbox: list[tuple[str, bytes, asyncio.Future[None], str]] = []
        self._sending: asyncio.Task[None] | None = None
        # When this process last saw its connection break or come back (time.time()): Redis may have restarted
        # then, and the logs lost what was written before (read_logs).
        self.lost_at = 0.0
        # Subscriptions sent and not yet confirmed by Redis: name -> what subscribe_many waits on.
        self._confirming: dict[str, asyncio.Future[None]] = {}

    async def publish(self, channel: str, message: bytes, *, log: str = "") -> None:
        """Publish in the order of the calls, many in one round trip.

        channels_redis held the shard's lock across each PUBLISH's round trip: every event of the process, and every
        socket's connect (new_channel), waited for all publishes before it, one round trip each (and redis-py spends
        a task per command on its socket timeout). Here one sender per shard and event loop takes all publishes that
        are waiting and sends them as one pipeline, then the next batch: the order of a process's events is kept
        (one connection, one batch after the other), a burst costs one round trip, and the lock stays with the
        Pub/Sub connection's subscriptions. The caller waits until Redis took its publish, or its error.

        `log`: the message is also appended to that stream first (in the same pipeline, so a reader that subscribed
        and then reads the log misses nothing in between); entries older than LOG_SECONDS are trimmed as it grows,
        and a log nobody writes to expires."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (channel, message, future, log)
        self._outbox.append(entry)
        if self._sending is None:
            self._sending = asyncio.ensure_future(self._send_outbox())
        try:
            await future
        except asyncio.CancelledError:
            # Its sender gave up (a timeout) before it went out: it is not sent later either, as with the lock it
            # never was, and a hung Redis does not make the outbox grow by every event meanwhile.
            with contextlib.suppress(ValueError):
                self._outbox.remove(entry)
            raise

    async def _send_outbox(self) -> None:
        batch: list[tuple[str, bytes, asyncio.Future[None], str]] = []
        try:
            while self._outbox:
                batch, self._outbox = self._outbox, []
                error: Exception | None = None
                try:
                    self._ensure_redis()
                    async with self._redis.pipeline(transaction=False) as pipe:
                        oldest = f"{int((time.time() - LOG_SECONDS) * 1000)}-0"
                        for channel, message, _future, log_key in batch:
                            if log_key:
                                pipe.xadd(log_key, {"m": message}, minid=oldest, approximate=True)
                                pipe.expire(log_key, LOG_SECONDS * 2)
                            pipe.publish(channel, message)
                        await pipe.execute()
                except Exception as exc:  # handed to each waiting sender
                    error = exc
                for _channel, _message, future, _log in batch:
                    if future.done():  # its sender stopped waiting (a timeout)
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
                batch = []
        finally:
            # Cancelled (flush, the loop's end): nobody waits in vain.
            self._stop_sending(batch)

    def _stop_sending(self, batch: list[tuple[str, bytes, asyncio.Future[None], str]]) -> None:
        """No sender runs any more: what it held (`batch`) and what still waits in the outbox is cancelled."""
        self._sending = None
        for _channel, _message, future, _log in [*batch, *self._outbox]:
            future.cancel()
        self._outbox = []

    def _log_since_key(self) -> str:
        return str(self.channel_layer.prefix) + LOG_SINCE_KEY

    async def read_logs(self, keys: list[str], start: float) -> list[bytes]:
        """The messages of these logs written since `start` (Redis's clock, seconds; the stream ids are its ms).
        LogCut when a log holds more than one read takes (its oldest come first: the newest would be missing), and
        when Redis may have restarted since `start`: a restarted Redis lost the logs of before, and an empty read
        would say that nothing was sent. This process saw its connection break or come back since then, or the logs
        are complete only since later than `start` (LOG_SINCE_KEY, written in another run of this Redis or not at all:
        a process started after the restart noticed nothing). The first read of a run notes that they are complete
        from now on."""
        if self.lost_at >= start:
            raise LogCut(f"the connection to Redis broke or came back since {start:.3f}")
        self._ensure_redis()
        since_key = self._log_since_key()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.info("server")
            pipe.get(since_key)
            for key in keys:
                pipe.xrange(key, min=f"{max(int(start * 1000), 0)}-0", count=LOG_READ_MAX)
            info, noted, *found = await pipe.execute()
        run = str(info.get("run_id", ""))
        noted_run, _space, since = (noted or b"").decode().partition(" ")
        if noted_run != run or not since:  # the first read of this run of Redis: complete from now on
            since = repr(time.time())
            await self._redis.set(since_key, f"{run} {since}")
        if float(since) > start:
            raise LogCut(f"the logs are complete since {float(since):.3f} only, not since {start:.3f}")
        if any(len(entries) >= LOG_READ_MAX for entries in found):
            raise LogCut(f"more than {LOG_READ_MAX} entries in one of {len(keys)} logs since {start:.3f}")
        return [fields[b"m"] for entries in found for _id, fields in entries if b"m" in fields]

    async def flush(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending
            # A sender cancelled before it ran never reached its clean-up: done here, or every later publish would
            # wait for it.
            self._stop_sending([])
        await super().flush()

    def _ensure_redis(self) -> None:
        if self._redis is None:
            # redis-py retries no command of this layer, whatever the host's settings ask: a publish pipeline that
            # failed after Redis ran part of it (the connection broke before the replies came) would be sent again
            # whole, its events published and logged twice. A failed publish goes to its sender as when Redis is
            # down; the Pub/Sub connection recovers by itself (_PubSub), and a failed log read falls back.
            pool = create_pool({**self.host, "retry": Retry(NoBackoff(), 0)})
            self._redis = aioredis.Redis(connection_pool=pool)
            self._pubsub = _PubSub(pool, lost=self._lost, confirmed=self._confirmed)

    def _confirmed(self, name: str) -> None:
        waiting = self._confirming.pop(name, None)
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    def _lost(self) -> None:
        """Redis went away or came back (a restart, a network break): events of that time are gone for good. Every
        socket of this process is told to close and resync (as one that overflowed) instead of showing a silently
        stale page; htmx reconnects it once Redis is there again."""
        self.lost_at = time.time()
        layer = self.channel_layer
        if not layer.channels:
            return
        log.warning("the channel layer's Redis connection broke: %d sockets are closed to resync", len(layer.channels))
        lost = layer.channel_layer.serialize({"type": "layer.lost"})
        for queue in layer.channels.values():
            _only(queue, lost)

    async def subscribe_many(self, names: list[str]) -> None:
        """Subscribe, and return once Redis confirmed it: a socket that reads a log right after joining (a list's
        replay) gets what is published from then on, none of it lost between its read and a subscription Redis had
        not taken yet. Under the lock: a socket joining the same group meanwhile waits for the confirmation too. A
        join Redis did not confirm in time fails and leaves its groups not taken as subscribed: the next join sends
        SUBSCRIBE again and waits for it (or for the late confirmation of the first)."""
        async with self._lock:
            new = [name for name in names if name not in self._subscribed_to]
            if new:
                self._ensure_redis()
                self._ensure_receiver()
                loop = asyncio.get_running_loop()
                waiting = {name: loop.create_future() for name in new}
                self._confirming.update(waiting)
                try:
                    await self._pubsub.subscribe(*new)
                    async with asyncio.timeout(SUBSCRIBE_SECONDS):
                        await asyncio.gather(*waiting.values())
                    self._subscribed_to.update(new)
                finally:
                    for name, future in waiting.items():
                        if self._confirming.get(name) is future:
                            del self._confirming[name]

    async def unsubscribe_many(self, names: list[str], *, unless_joined: bool = False) -> None:
        async with self._lock:
            # A subscription sent but not confirmed in time (subscribe_many) is Redis's all the same once it arrives.
            sent = self._pubsub.channels if self._pubsub is not None else {}
            gone = [name for name in names if name in self._subscribed_to or name.encode() in sent or name in sent]
            if unless_joined:  # a lingering group a socket joined again meanwhile stays subscribed
                gone = [name for name in gone if not self.channel_layer.groups.get(name)]
            if gone:
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.unsubscribe(*gone)
                self._subscribed_to.difference_update(gone)

    def _receive_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        name = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        layer = self.channel_layer
        data = message["data"]
        if name == layer.process_channel:  # to one socket of this process: its name, a newline, the message
            target, _newline, data = data.partition(b"\n")
            targets = [target.decode()]
        elif name in layer.channels:
            targets = [name]
        else:
            targets = list(layer.groups.get(name, ()))
        for channel in targets:
            queue = layer.channels.get(channel)
            if queue is None:
                continue
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                # The socket cannot keep up: what it holds is stale. It gets one event that makes it close and
                # resync (PortalConsumer.layer_overflow) instead of a silently incomplete picture.
                _only(queue, layer.channel_layer.serialize({"type": "layer.overflow"}))


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, capacity: int = 1000, linger: float = 5.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.capacity = capacity
        self.linger = linger
        base: list[RedisSingleShardConnection] = getattr(self, "_shards")  # noqa: B009 (untyped in channels_redis)
        self._shards = [_Shard(shard.host, self) for shard in base]
        # Groups no socket of this process is in, still subscribed until (loop time): name -> until.
        self.lingering: dict[str, float] = {}
        self._sweep: asyncio.TimerHandle | None = None
        # This process's (event loop's) channel: its sockets' channels are "<it>!<socket>".
        self.process_channel = f"{self.prefix}specific.{uuid.uuid4().hex}"

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A socket's channel: a queue of this process, reached through the process's one subscription."""
        if prefix != "specific.":
            return str(await super().new_channel(prefix))
        channel = f"{self.process_channel}!{uuid.uuid4().hex}"
        self.channels[channel] = asyncio.Queue(maxsize=self.capacity)
        # Once per process: the shard knows what it is subscribed to (no round trip, and no wait for its lock,
        # afterwards).
        shard = self._get_shard(self.process_channel)
        if self.process_channel not in shard._subscribed_to:
            await shard.subscribe(self.process_channel)
        return channel

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        process, local, _socket = channel.partition("!")
        if not local:
            await super().send(channel, message)
            return
        data = channel.encode() + b"\n" + self.channel_layer.serialize(message)
        await self._get_shard(process).publish(process, data)

    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = asyncio.Queue(maxsize=self.capacity)
        await self._get_shard(channel).subscribe(channel)

    async def group_add_many(self, groups: Iterable[str], channel: str) -> None:
        if channel not in self.channels:
            raise RuntimeError("group_add_many() is for channels of this process")
        by_shard: dict[int, list[str]] = defaultdict(list)
        added: list[str] = []
        for group in groups:
            assert _NAMES.require_valid_group_name(group), "Group name not valid"
            name = self._get_group_channel_name(group)
            members = self.groups.setdefault(name, set())
            if channel not in members:
                members.add(channel)
                added.append(group)
            if self.lingering.pop(name, None) is None:  # a lingering group is still subscribed
                by_shard[self._shards.index(self._get_shard(name))].append(name)
        try:
            for index, names in by_shard.items():
                await self._shards[index].subscribe_many(names)
        except Exception:
            # The join failed (Redis down, or it did not confirm in time), and with it the socket: it never counted
            # these groups as joined and never leaves them. Left as a member, the process would stay subscribed.
            # No linger: a lingering group counts as subscribed, and these may not be yet.
            gone: dict[int, list[str]] = defaultdict(list)
            for group in added:
                name = self._get_group_channel_name(group)
                members = self.groups.get(name, set())
                members.discard(channel)
                if not members:
                    self.groups.pop(name, None)
                    gone[self._shards.index(self._get_shard(name))].append(name)
            for index, names in gone.items():
                with contextlib.suppress(Exception):
                    await self._shards[index].unsubscribe_many(names, unless_joined=True)
            raise

    async def group_discard_many(self, groups: Iterable[str], channel: str) -> None:
        by_shard: dict[int, list[str]] = defaultdict(list)
        for group in groups:
            name = self._get_group_channel_name(group)
            members = self.groups.get(name)
            if members is None or channel not in members:
                continue
            members.discard(channel)
            if not members:  # the process's last socket on it: Redis stops sending it here (after the linger)
                del self.groups[name]
                if self.linger > 0:
                    self._linger(name)
                else:
                    by_shard[self._shards.index(self._get_shard(name))].append(name)
        for index, names in by_shard.items():
            await self._shards[index].unsubscribe_many(names)

    async def group_send_logged(self, group: str, message: dict[str, Any], log: str) -> None:
        """group_send, and the message kept in the log `log` for a minute (see recent)."""
        assert _NAMES.require_valid_group_name(group), "Group name not valid"
        name = self._get_group_channel_name(group)
        await self._get_shard(name).publish(name, self.channel_layer.serialize(message), log=self.prefix + log)

    async def recent(self, logs: Iterable[str], start: float) -> list[dict[str, Any]]:
        """The messages written to these logs since `start` (time.time() seconds, as Redis's clock tells), in the
        order they were sent per log. A message may be logged on any shard (the one of the group it went to).
        LogCut when a log held more than one read takes, or when Redis may have lost what was logged since `start`
        (read_logs)."""
        keys = sorted({self.prefix + key for key in logs})
        if not keys:
            return []
        found: list[dict[str, Any]] = []
        for shard in self._shards:
            for data in await shard.read_logs(keys, start):
                found.append(self.channel_layer.deserialize(data))
        return found

    def _linger(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        self.lingering[name] = loop.time() + self.linger
        if self._sweep is None:
            self._sweep = loop.call_later(self.linger, lambda: asyncio.ensure_future(self._unsubscribe_lingering()))

    async def _unsubscribe_lingering(self) -> None:
        """Unsubscribe the groups whose linger ended (and that no socket joined again); look again when the next
        one ends. One UNSUBSCRIBE per shard for all of them."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        by_shard: dict[int, list[str]] = defaultdict(list)
        for name, until in list(self.lingering.items()):
            if until <= now:
                del self.lingering[name]
                by_shard[self._shards.index(self._get_shard(name))].append(name)
        if self.lingering:
            wait = max(min(self.lingering.values()) - now, 0.05)
            self._sweep = loop.call_later(wait, lambda: asyncio.ensure_future(self._unsubscribe_lingering()))
        for index, names in by_shard.items():
            await self._shards[index].unsubscribe_many(names, unless_joined=True)

    async def flush(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.lingering = {}
        await super().flush()


class RedisPubSubChannelLayer(_RedisPubSubChannelLayer):
    """channels_redis' Redis Pub/Sub layer with per-process fan-out made cheap for many sockets.

    One Redis message per event and process: a process subscribes to a group once, however many of its sockets
    joined it, and hands each event to them itself. An inbox page follows the fifty rows it shows; with the
    list-based layer every page's join was a hundred Redis commands and every event one push per socket.
    A socket's queue is bounded ("capacity"); one that overflows is told to resync (PortalConsumer).
    """

    def __getattr__(self, name: str) -> Any:
        if name in ("group_add_many", "group_discard_many", "group_send_logged", "recent"):
            return functools.partial(_async_proxy, self, name)
        return super().__getattr__(name)

    def _get_layer(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
