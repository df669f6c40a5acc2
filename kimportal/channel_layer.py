"""The Redis channel layer, with one timing fixed and group changes in batches.

channels_redis waits for a socket's next event with a blocking BZPOPMIN of 5 s, and redis-py's read
timeout is also 5 s: on a quiet channel the two met, and the read timed out first — a TimeoutError that
ended the idle consumer. Blocking for 2 s keeps every wait well inside the read timeout.

An inbox page follows the rows it shows by joining one group per row: fifty group_add calls were a
hundred round trips (ZADD, then EXPIRE) on the event loop per page load. group_add_many and
group_discard_many send them in one pipeline per Redis shard.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):
    brpop_timeout = 2

    def _keys_by_shard(self, groups: Iterable[str]) -> dict[int, list[str]]:
        shards: dict[int, list[str]] = defaultdict(list)
        for group in groups:
            assert self.require_valid_group_name(group), "Group name not valid"
            shards[self.consistent_hash(group)].append(self._group_key(group))
        return shards

    async def group_add_many(self, groups: Iterable[str], channel: str) -> None:
        """group_add for each group, as channels_redis does it (ZADD with the time, then EXPIRE)."""
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        now = time.time()
        for index, keys in self._keys_by_shard(groups).items():
            pipe = self.connection(index).pipeline(transaction=False)
            for key in keys:
                pipe.zadd(key, {channel: now})
                pipe.expire(key, self.group_expiry)
            await pipe.execute()

    async def group_discard_many(self, groups: Iterable[str], channel: str) -> None:
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        for index, keys in self._keys_by_shard(groups).items():
            pipe = self.connection(index).pipeline(transaction=False)
            for key in keys:
                pipe.zrem(key, channel)
            await pipe.execute()
