"""The rule of bench/load.py's stress figure (`load_stress_users`), apart from the load itself so that it can be
tested: the most users (1–3 s between actions) the server still served.

A level serves its users when the p95 of its pages stays within a second and nothing failed: no request (an
error answer, a timeout, a broken connection) and no websocket (not accepted within 5 s, or closed by the server
while in use). A page whose live updates never arrive is not served, however fast its HTML came: at 300 users a
server can keep p95 under a second while a thousand sockets are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

P95_LIMIT_MS = 1000.0


def served(level: dict[str, Any]) -> bool:
    """Whether a measured level (bench/load.py's figures of one level) served all its users."""
    p95 = level.get("p95_ms")
    return p95 is not None and p95 <= P95_LIMIT_MS and not level.get("errors") and not level.get("ws_failures")


def most_users(levels: Sequence[int], run: Callable[[int], dict[str, Any] | None]) -> tuple[int, list[dict]]:
    """The most users served: `levels` upwards until one is not served; when the first one is not, halves of it (at
    most two, none below 10 users) say how far below it the answer is (0: below them too). `run(users)` measures one
    level, or gives None when the bench's time is up. Every measured level comes back, marked "served"."""
    best, runs = 0, []

    def passes(users: int) -> bool | None:
        result = run(users)
        if result is None:
            return None
        result["served"] = served(result)
        runs.append(result)
        return result["served"]

    for users in levels:
        if not passes(users):
            break
        best = users
    if best == 0 and runs:
        users = levels[0]
        for _ in range(2):
            users //= 2
            if users < 10 or (ok := passes(users)) is None:
                break
            if ok:
                best = users
                break
    return best, runs
