"""A browser that gives up while its socket connects (a slow server, a closed tab): the socket ends quietly.

uvicorn, the production server, skips an accept on a connection that is already closing, and then refuses the
socket's first frame ("Expected ASGI message 'websocket.accept' … but got 'websocket.send'"). Raised out of the
consumer, that was an error with a traceback in the log per such socket, and the socket's disconnect never ran: the
presence it had joined stayed until its lease ended. This runs the real server with the portal's application.
"""

from __future__ import annotations

import logging
import threading

import pytest
import uvicorn
from django.conf import settings
from django.test import Client
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from kimportal.asgi import application
from mailbox.consumers.base import PortalConsumer
from mailbox.models import Presence
from tests.mailbox.test_consumers import shared_box  # noqa: F401
from tisim.vzd.slapd import free_port

pytestmark = pytest.mark.django_db(transaction=True)


class _Server:
    """uvicorn in a thread, configured as deploy/gunicorn.conf.py configures it (websockets' sans-I/O protocol)."""

    def __init__(self) -> None:
        self.port = free_port()
        # log_config=None: uvicorn's loggers propagate to the root logger, where the test reads them.
        config = uvicorn.Config(
            application, host="127.0.0.1", port=self.port, ws="websockets-sansio", lifespan="off", log_config=None
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        ready = threading.Event()
        while not self.server.started and self.thread.is_alive():
            ready.wait(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        # Shutting down waits for the connections' tasks: after this, every consumer has ended.
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()

    def close_connections_now(self) -> int:
        """Close the server's side of every open connection, as a client's FIN or RST does: the transport is closing
        and uvicorn learns of it in a later turn of the loop. Called on the server's loop thread."""
        closed = 0
        for protocol in list(self.server.server_state.connections):
            protocol.transport.close()
            closed += 1
        return closed


def test_a_socket_whose_client_gave_up_during_its_connect_ends_quietly(shared_box, settings_override, caplog):  # noqa: F811
    _box, anna, _bert, message = shared_box
    browser = Client()
    browser.force_login(anna)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    with _Server() as server:
        accepted = PortalConsumer.accept
        gone: list[int] = []

        async def accept_after_the_client_left(self, subprotocol=None, headers=None):
            # The consumer's connect read the database, joined the presence and rendered its panel: meanwhile the
            # client went away.
            gone.append(server.close_connections_now())
            await accepted(self, subprotocol, headers)

        caplog.set_level(logging.INFO)
        PortalConsumer.accept = accept_after_the_client_left  # type: ignore[method-assign]
        try:
            url = f"ws://127.0.0.1:{server.port}/ws/message/{message.pk}/"
            with pytest.raises((WebSocketException, OSError)):
                with connect(url, additional_headers={"Cookie": cookie, "Origin": "http://localhost"}, open_timeout=10):
                    pass
        finally:
            PortalConsumer.accept = accepted  # type: ignore[method-assign]

    assert gone == [1]  # the message socket's connect reached its accept with its connection closing
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    # Its disconnect ran: the presence it had joined is gone at once, not when its lease ends.
    assert not Presence.objects.filter(message=message).exists()


@pytest.fixture
def settings_override(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    return settings
