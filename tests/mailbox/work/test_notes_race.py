"""Two colleagues save a note on the same message in the same instant: both notes land, one after the other, and a
third colleague's open page shows both.

Real PostgreSQL, one connection per writer thread, real HTTP requests through the view; the third page is a real
message socket on the real channel layer.
"""

from __future__ import annotations

import asyncio
import re
import threading

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection
from django.test import Client
from django.urls import reverse

from mailbox.consumers import MessageConsumer
from mailbox.models import Message, Note

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the race is specified for PostgreSQL"),
]

WAIT = 30  # seconds a barrier may wait before the test counts as hung


@pytest_asyncio.fixture
async def _close_async_connection():
    yield
    await database_sync_to_async(lambda: connection.close())()


def _write_at_once(message: Message, writers: dict) -> dict[str, int]:
    """Each writer posts its note from a page that loaded version 1, all released together."""
    start = threading.Barrier(len(writers))
    statuses: dict[str, int] = {}
    errors: list[BaseException] = []

    def write(user, body: str) -> None:
        try:
            client = Client()
            client.force_login(user)
            start.wait(timeout=WAIT)
            response = client.post(
                reverse("mailbox:message-note", args=[message.pk]),
                {"version": 1, "body": body},
                HTTP_HX_REQUEST="true",
            )
            statuses[user.username] = response.status_code
        except BaseException as exc:
            errors.append(exc)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(user, body), daemon=True) for user, body in writers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not errors, errors
    return statuses


@pytest.mark.usefixtures("_close_async_connection")
@pytest.mark.asyncio
async def test_two_notes_saved_at_once_both_land_in_order_and_reach_an_open_page(alice, bob, carol, message):
    socket = WebsocketCommunicator(MessageConsumer.as_asgi(), f"/ws/message/{message.pk}/")
    socket.scope["user"] = carol
    socket.scope["url_route"] = {"args": (), "kwargs": {"pk": message.pk}}
    connected, _ = await socket.connect(timeout=5)
    assert connected
    assert 'id="lock-panel"' in await socket.receive_from(timeout=5)

    writers = {alice: "Rückruf bei der Praxis erledigt.", bob: "Befund an Dr. Weber weitergeleitet."}
    statuses = await asyncio.to_thread(_write_at_once, message, writers)

    # Before: the second writer was refused with 409, because the first note had raised the message's version.
    assert statuses == {"anna": 200, "bernd": 200}
    saved = await database_sync_to_async(lambda: list(Note.objects.order_by("created_at", "id")))()
    assert sorted(n.body for n in saved) == sorted(writers.values())
    # In order: the row lock lets one note in after the other, so time and insertion agree.
    assert [n.pk for n in saved] == sorted(n.pk for n in saved)
    assert saved[0].created_at <= saved[1].created_at
    version = await database_sync_to_async(lambda: Message.objects.get(pk=message.pk).version)()
    assert version == 3  # colleagues' other actions from older pages are still stopped

    # The third page's list shows both notes, in the same order (one frame or two, as the events came).
    shown: list[str] = []
    while len(shown) < 2:
        frame = await socket.receive_from(timeout=5)
        found = re.search(r'<div id="note-list" hx-swap-oob="true">(.*?)</div>', frame, re.S)
        if found:
            shown = re.findall(r"<p>(.*?)</p>", found.group(1))
    assert shown == [n.body for n in saved]
    await socket.disconnect()


def test_one_note_posted_twice_at_once_without_javascript_is_saved_once(alice, message):
    # A double click on the plain form (no htmx to drop the second submit) sends the same note twice at once.
    start = threading.Barrier(2)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def post() -> None:
        try:
            client = Client()
            client.force_login(alice)
            start.wait(timeout=WAIT)
            response = client.post(reverse("mailbox:message-note", args=[message.pk]), {"body": "Befund liegt vor"})
            statuses.append(response.status_code)
        except BaseException as exc:
            errors.append(exc)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=post, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not errors, errors
    assert sorted(statuses) == [302, 302]
    assert list(Note.objects.filter(message=message).values_list("body", flat=True)) == ["Befund liegt vor"]
