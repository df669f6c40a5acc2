"""The Redis channel layer's batched group changes behave like channels_redis' own, on a real Redis."""

from __future__ import annotations

import pytest
import pytest_asyncio
from django.conf import settings

from kimportal.channel_layer import RedisChannelLayer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis layer needs REDIS_URL (the tests set it)")


@pytest_asyncio.fixture
async def layer():
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], prefix="test-batched-groups", group_expiry=600)
    yield layer
    await layer.flush()
    await layer.close_pools()


@pytest.mark.asyncio
async def test_group_add_many_and_discard_many(layer):
    channel = await layer.new_channel()
    other = await layer.new_channel()
    groups = [f"message.{i}" for i in range(50)]
    await layer.group_add_many(groups, channel)
    await layer.group_add("message.7", other)

    await layer.group_send("message.7", {"type": "presence.changed", "n": 1})
    assert (await layer.receive(channel))["n"] == 1
    assert (await layer.receive(other))["n"] == 1

    connection = layer.connection(layer.consistent_hash("message.49"))
    assert 0 < await connection.ttl(layer._group_key("message.49")) <= 600  # expiry set as group_add does

    await layer.group_discard_many(groups[:10], channel)
    await layer.group_send("message.7", {"type": "presence.changed", "n": 2})
    assert (await layer.receive(other))["n"] == 2
    assert await connection.zscore(layer._group_key("message.7"), channel) is None
    assert await connection.zscore(layer._group_key("message.12"), channel) is not None


@pytest.mark.asyncio
async def test_invalid_names_are_refused_like_group_add(layer):
    channel = await layer.new_channel()
    with pytest.raises((AssertionError, TypeError)):
        await layer.group_add_many(["no spaces allowed"], channel)
