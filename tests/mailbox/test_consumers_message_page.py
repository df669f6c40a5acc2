"""A message page opens one socket: the message's (presence, heartbeat, lock panel) does what every page's socket
does too (counts, notifications, membership changes), so that reading a message costs one socket, not two."""

from __future__ import annotations

import json
import re

import pytest
from channels.db import database_sync_to_async
from django.test import Client
from django.urls import reverse

from mailbox import events
from mailbox.models import Membership, Presence
from mailbox.services.claims import message_claim
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.test_consumers import _connect, _message_socket, _receive_until, shared_box  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_message_page_opens_one_socket_which_takes_the_watch_and_resync_forms(shared_box):  # noqa: F811
    _box, anna, _bert, message = shared_box
    browser = Client()
    browser.force_login(anna)
    html = browser.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert html.count("ws-connect=") == 1
    socket = re.search(r'<article[^>]*ws-connect="/ws/message/(\d+)/\?page=[^"]+"[^>]*>(.*?)</article>', html, re.S)
    assert socket is not None and socket.group(1) == str(message.pk)
    inside = socket.group(2)
    assert 'id="watch-form"' in inside and 'class="resync-form"' in inside and 'id="presence-form"' in inside


@pytest.mark.asyncio
async def test_the_message_socket_carries_notifications_and_counts_but_no_new_rows(shared_box):  # noqa: F811
    box, anna, _bert, message = shared_box
    page = await _message_socket(anna, message.pk)
    assert 'id="lock-panel"' in await page.receive_from(timeout=5)

    await database_sync_to_async(events.broadcast_user_notification)(user_id=anna.pk)
    assert 'hx-swap-oob="true"' in await _receive_until(page, 'id="notification-badge"')

    # New mail moves the counts; the page shows no list, so no row is prepended (before and after its watch frame).
    await database_sync_to_async(message_ingest)(mailbox=box, uidl="arrives-1", raw=MAIL_WITH_PDF)
    frames = [await _receive_until(page, 'id="mailbox-nav"')]
    await page.send_to(text_data=json.dumps({"watch": "", "new": "", "since": "", "view": "", "at": "", "HEADERS": {}}))
    frames.append(await _receive_until(page, 'id="live-watching"'))
    await database_sync_to_async(message_ingest)(mailbox=box, uidl="arrives-2", raw=MAIL_WITH_PDF)
    frames.append(await _receive_until(page, 'id="mailbox-nav"'))
    assert not any("afterbegin" in f or 'class="msg-row' in f for f in frames), frames
    await page.disconnect()


@pytest.mark.asyncio
async def test_a_watch_frame_is_no_heartbeat_and_keeps_the_writing_state(shared_box):  # noqa: F811
    _box, anna, _bert, message = shared_box
    page = await _message_socket(anna, message.pk)
    await page.send_to(text_data='{"writing": "1", "HEADERS": {}}')
    await page.send_to(text_data=json.dumps({"watch": "", "new": "", "HEADERS": {}}))
    # Frames are handled in order: once the watch is answered, the writing frame was handled before it.
    await _receive_until(page, 'id="live-watching"')
    writing = await database_sync_to_async(lambda: list(Presence.objects.values_list("writing", flat=True)))()
    assert writing == [True]
    await page.disconnect()


@pytest.mark.asyncio
async def test_a_resync_redraws_the_counts_and_the_lock_panel(shared_box):  # noqa: F811
    box, anna, _bert, message = shared_box
    page = await _message_socket(anna, message.pk)
    await page.receive_from(timeout=5)  # the panel on connect
    await page.send_to(text_data='{"resync": "1", "HEADERS": {}}')
    assert box.display_name in await _receive_until(page, 'id="mailbox-nav"')
    assert "Niemand bearbeitet" in await _receive_until(page, 'id="lock-panel"')
    await page.disconnect()


@pytest.mark.asyncio
async def test_leaving_another_mailbox_keeps_the_page_following_its_message(shared_box):  # noqa: F811
    _box, anna, bert, message = shared_box
    other = await database_sync_to_async(MailboxFactory)()
    membership = await database_sync_to_async(MembershipFactory)(mailbox=other, user=anna)
    page = await _message_socket(anna, message.pk)
    await page.receive_from(timeout=5)  # the panel on connect

    await database_sync_to_async(Membership.objects.filter(pk=membership.pk).delete)()
    await database_sync_to_async(events.broadcast_memberships_changed)(user_ids=[anna.pk])
    nav = await _receive_until(page, 'id="mailbox-nav"')
    assert other.display_name not in nav
    # Still a reader of the message's mailbox: a colleague's claim still redraws the panel.
    await database_sync_to_async(message_claim)(user=bert, message=message)
    assert "Bert B" in await _receive_until(page, 'id="lock-panel"')
    await page.disconnect()


@pytest.mark.asyncio
async def test_removed_from_the_messages_mailbox_the_page_socket_closes_with_4403(shared_box):  # noqa: F811
    box, anna, _bert, message = shared_box
    page = await _message_socket(anna, message.pk)
    await page.receive_from(timeout=5)
    await database_sync_to_async(Membership.objects.filter(mailbox=box, user=anna).delete)()
    await database_sync_to_async(events.broadcast_memberships_changed)(user_ids=[anna.pk])
    while True:
        output = await page.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == 4403
    await page.disconnect()
