"""Where the operations page keeps its state between processes: Redis when the portal has it, else files.

The check results (cached for a few seconds so that many monitors cause one round of checks) and the Celery
heartbeat (written by beat and by a worker, read by the web server) must be visible to every process of the
installation. The portal's own default cache is per process, so the operations app has a cache of its own:
Redis (``REDIS_URL``) in production, a file cache under ``KIMPORTAL_DATA_DIR`` on the embedded default (the
demo), where all processes run on one machine. No model, no migration: nothing here needs to survive Redis.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.cache.backends.base import BaseCache

KEY_PREFIX = "kimportal-operations"

_lock = threading.Lock()
_stores: dict[tuple[str, str], BaseCache] = {}


def store() -> BaseCache:
    """The shared store for the current settings (one instance per configuration, so tests may override)."""
    redis_url = getattr(settings, "REDIS_URL", "") or ""
    location = redis_url or str(settings.DATA_DIR / "operations-cache")
    key = ("redis" if redis_url else "file", location)
    with _lock:
        cache = _stores.get(key)
        if cache is None:
            cache = _stores[key] = _build(*key)
        return cache


def _build(kind: str, location: str) -> BaseCache:
    params: dict[str, Any] = {"KEY_PREFIX": KEY_PREFIX, "TIMEOUT": 3600}
    if kind == "redis":
        from django.core.cache.backends.redis import RedisCache

        # Short socket timeouts: a health check must not hang on a dead Redis, it must report it.
        params["OPTIONS"] = {"socket_connect_timeout": 2, "socket_timeout": 2}
        return RedisCache(location, params)
    from django.core.cache.backends.filebased import FileBasedCache

    return FileBasedCache(location, params)
