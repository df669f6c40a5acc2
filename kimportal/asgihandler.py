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

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase

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
    """ASGIHandler whose requests run their sync code on reused threads (see the module's docstring), all of it
    in one call.

    Django's ASGIHandler builds its middleware chain for async around an async core (URL resolving, the view
    call): the portal's sync-only middleware then cross from their thread to the event loop for that core, which
    crosses back to the thread for the (sync) view, and both again on the way out — four hand-overs between the
    threads per request, each a wake-up of the other side and a turn at the GIL. Here the chain is built as a
    WSGI server builds it, sync from top to bottom, and the request enters it once from the event loop: one
    hand-over there and one back. What the chain does is Django's own; only the mode it was built in differs
    (async views would still run, adapted by Django, but the portal has none).
    """

    def __init__(self) -> None:
        super().__init__()
        self.executors = _Executors(KEEP_IDLE)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        # Django's sync get_response: URL conf, the chain, the request's closer, the log of an error answer.
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)

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
