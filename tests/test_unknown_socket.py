"""A websocket to an address the portal has no socket at is refused in its handshake, without an error logged."""

from __future__ import annotations

import logging

import pytest
from channels.testing import WebsocketCommunicator

from kimportal.asgi import application

HEADERS = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["/ws/gibtsnicht/", "/ws/message/abc/", "/ws/", "/wp-login.php"])
async def test_an_unknown_socket_address_is_refused_quietly(path, caplog) -> None:
    caplog.set_level(logging.INFO)
    communicator = WebsocketCommunicator(application, path, headers=HEADERS)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is False
    await communicator.wait()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.asyncio
async def test_the_origin_check_still_stands_in_front_of_every_route() -> None:
    # A foreign page's socket to a real address is refused before any consumer (without the check, the inbox's
    # consumer would accept it and close it with 4401: connected).
    communicator = WebsocketCommunicator(
        application, "/ws/inbox/", headers=[(b"origin", b"https://evil.example"), (b"host", b"127.0.0.1")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected is False
