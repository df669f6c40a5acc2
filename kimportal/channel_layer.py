"""The Redis channel layer, with one timing fixed.

channels_redis waits for a socket's next event with a blocking BZPOPMIN of 5 s, and redis-py's read
timeout is also 5 s: on a quiet channel the two met, and the read timed out first — a TimeoutError that
ended the idle consumer. Blocking for 2 s keeps every wait well inside the read timeout.
"""

from __future__ import annotations

from channels_redis.core import RedisChannelLayer as _RedisChannelLayer


class RedisChannelLayer(_RedisChannelLayer):
    brpop_timeout = 2
