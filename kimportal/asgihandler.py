"""Django's ASGI handler with its request threads kept and reused.

Django runs a request's sync code (middleware and views) in a thread of the request's own: its ASGIHandler
enters asgiref's ThreadSensitiveContext, which makes a one-thread executor per request and shuts it down,
joining the thread, when the request ends. Under load a thread started and joined per request was 6 % of a
server process's CPU. Here a request borrows a one-thread executor from the process's idle ones (or makes
one) and gives it back afterwards; asgiref does not shut down an executor it was given. What a thread
holds between requests is what a threaded WSGI server's threads hold: Django closes or returns the
request's database connection when the request finishes, and its per-request state lives in context
variables, not in the thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

# Idle executors kept per process; more requests at once make more, and those beyond this are shut down when
# they finish (kimportal.middleware.ConcurrencyLimitMiddleware bounds how many run Django at once).
KEEP_IDLE = 32


class _Executors:
    """The process's idle one-thread executors. Used from the event loop's thread only."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []
        self.made = 0

    def take(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()
        self.made += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def give(self, executor: ThreadPoolExecutor) -> None:
        if len(self.idle) < self.keep:
            self.idle.append(executor)
        else:
            executor.shutdown(wait=False)


class PooledThreadsASGIHandler(ASGIHandler):
    """ASGIHandler whose requests run their sync code on reused threads (see the module's docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.executors = _Executors(KEEP_IDLE)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self.executors.take()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.executors.give(executor)


def get_pooled_asgi_application() -> PooledThreadsASGIHandler:
    """django.core.asgi.get_asgi_application() with the pooled handler."""
    import django

    django.setup(set_prefix=False)
    return PooledThreadsASGIHandler()
