from __future__ import annotations

from django.urls import path

from mailbox.consumers import InboxConsumer, MessageConsumer
from signing.consumers import BatchConsumer, QueueConsumer

# django-stubs types path() for Django views only; Channels routes consumers with it (django-stubs PR #3354).
websocket_urlpatterns = [
    path("ws/inbox/", InboxConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/message/<int:pk>/", MessageConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/signing/queue/", QueueConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/signing/batch/<int:pk>/", BatchConsumer.as_asgi()),  # type: ignore[arg-type]
]
