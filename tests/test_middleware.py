"""kimportal.middleware: at most N requests of one process run Django at once."""

from __future__ import annotations

import threading

from django.test import RequestFactory

from kimportal.middleware import ConcurrencyLimitMiddleware


def test_no_more_than_the_limit_run_at_once_and_the_rest_wait_their_turn(settings):
    settings.KIMPORTAL_WEB_CONCURRENCY = 3
    inside, peak, done = [0], [0], []
    lock, release = threading.Lock(), threading.Event()

    def view(request):
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        release.wait(timeout=10)
        with lock:
            inside[0] -= 1
        done.append(request.path)
        return "ok"

    middleware = ConcurrencyLimitMiddleware(view)
    threads = [threading.Thread(target=middleware, args=(RequestFactory().get(f"/r{i}"),)) for i in range(10)]
    for thread in threads:
        thread.start()
    # Wait (bounded) until the slots are full; the other seven must be waiting, not running.
    for _ in range(1000):
        with lock:
            if inside[0] == 3:
                break
        release.wait(timeout=0.005)
    assert inside[0] == 3
    release.set()
    for thread in threads:
        thread.join(timeout=10)
    assert peak[0] == 3
    assert len(done) == 10
