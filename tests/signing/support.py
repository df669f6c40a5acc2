"""Helpers shared by the signing tests (not fixtures: those are in conftest.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def together(*jobs: Callable[[], object]) -> list[object]:
    """Run the jobs in threads released at the same moment; their results (or exceptions) in order. Each thread
    closes its database connections (they are its own)."""
    barrier = threading.Barrier(len(jobs))
    results: list[object] = [None] * len(jobs)

    def run(n: int, job: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            results[n] = job()
        except Exception as exc:  # the test inspects what each side got
            results[n] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n, job)) for n, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results
