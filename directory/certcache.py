"""Process-local cache of certificate states, keyed by (uid, changeDateTime) of the VZD entry.

KIM clients may cache recipient certificates (gemSpec_CM_KOMLE KOM-LE-A_2026). The key includes the entry's
changeDateTime, which the VZD updates on every change of the entry, so a changed entry is always looked up
again; an entry also expires after KIMPORTAL_VZD_CERT_CACHE_SECONDS and at the next notBefore/notAfter of its
certificates, so "valid" never outlives the certificate.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict

from directory.certificates import CertState

MAX_ENTRIES = 20_000
_lock = threading.Lock()
_cache: OrderedDict[tuple[str, str], tuple[float, CertState]] = OrderedDict()


def get(uid: str, change: str) -> CertState | None:
    if not change:
        return None
    key = (uid, change)
    with _lock:
        item = _cache.get(key)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            del _cache[key]
            return None
        _cache.move_to_end(key)
        return item[1]


def put(uid: str, change: str, state: CertState, *, ttl: float) -> None:
    if not change or ttl <= 0:
        return
    now = dt.datetime.now(dt.UTC)
    boundaries = [t for c in state.certificates for t in (c.not_before, c.not_after) if t is not None and t > now]
    seconds = min([ttl, *[(b - now).total_seconds() for b in boundaries]])
    with _lock:
        _cache[(uid, change)] = (time.monotonic() + seconds, state)
        _cache.move_to_end((uid, change))
        while len(_cache) > MAX_ENTRIES:
            _cache.popitem(last=False)


def clear() -> None:
    with _lock:
        _cache.clear()
