from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import path, re_path

from mailbox.consumers import InboxConsumer, MessageConsumer
from signing.consumers import BatchConsumer, QueueConsumer

# django-stubs types path() for Django views only; Channels routes consumers with it (django-stubs PR #3354).
websocket_urlpatterns = [
    path("ws/inbox/", InboxConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/message/<int:pk>/", MessageConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/signing/queue/", QueueConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/signing/batch/<int:pk>/", BatchConsumer.as_asgi()),  # type: ignore[arg-type]
]


class UnknownSocket(AsyncWebsocketConsumer):
    """A socket to an address the portal has no socket at (a scanner, a mistyped or outdated address): refused in its
    handshake (HTTP 403), quietly. Without it Channels' router raised ValueError ("No route found"), which the
    server logged as an error of the application, with a traceback, for every try."""

    async def connect(self) -> None:
        await self.close()


# After the portal's routes (kimportal.asgi): every other address.
unknown_socket = re_path(r"", UnknownSocket.as_asgi())  # type: ignore[arg-type]
