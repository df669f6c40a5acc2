from __future__ import annotations

from django.urls import path

from mailbox.consumers import InboxConsumer, MessageConsumer

websocket_urlpatterns = [
    path("ws/inbox/", InboxConsumer.as_asgi()),
    path("ws/message/<int:pk>/", MessageConsumer.as_asgi()),
]
