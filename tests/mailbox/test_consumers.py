"""The live inbox socket: new mail reaches members only, rendered with their permissions."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from kimportal.asgi import application
from mailbox.consumers import InboxConsumer
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.test_views import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    return communicator


@pytest.mark.asyncio
async def test_anonymous_socket_is_refused():
    communicator = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    communicator.scope["user"] = AnonymousUser()
    connected, code = await communicator.connect()
    assert not connected
    assert code == 4401


@pytest.mark.asyncio
async def test_socket_through_the_full_stack_rejects_foreign_origin():
    communicator = WebsocketCommunicator(application, "/ws/inbox/", headers=[(b"origin", b"http://evil.example")])
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.asyncio
async def test_new_message_reaches_members_only():
    member = await database_sync_to_async(UserFactory)(username="mitglied")
    outsider = await database_sync_to_async(UserFactory)(username="aussen")
    box = await database_sync_to_async(MailboxFactory)()
    await database_sync_to_async(MembershipFactory)(mailbox=box, user=member)
    await database_sync_to_async(MembershipFactory)(user=outsider)

    mine = await _connect(member)
    theirs = await _connect(outsider)
    message = await database_sync_to_async(message_ingest)(mailbox=box, uidl="live-1", raw=MAIL_WITH_PDF)

    html = await mine.receive_from(timeout=5)
    assert f'id="msg-{message.pk}"' in html
    assert "Entlassbrief Müller" in html
    assert f"hx-swap-oob=\"afterbegin:[data-live-mailboxes~='mb-{box.pk}']\"" in html
    assert await theirs.receive_nothing(timeout=0.5)
    await mine.disconnect()
    await theirs.disconnect()


@pytest.mark.asyncio
async def test_account_status_change_updates_nav_and_status_line():
    from mailbox import events
    from tests.mailbox.factories import KimAccountFactory

    member = await database_sync_to_async(UserFactory)(username="status-mitglied")
    account = await database_sync_to_async(KimAccountFactory)(status="unreachable", status_message="weg")
    await database_sync_to_async(MembershipFactory)(mailbox=account.mailbox, user=member)
    socket = await _connect(member)
    await database_sync_to_async(events.broadcast_account_status)(mailbox_id=account.mailbox_id)
    html = await socket.receive_from(timeout=5)
    assert 'id="mailbox-nav"' in html and 'hx-swap-oob="true"' in html
    assert f'id="account-status-{account.mailbox_id}"' in html
    assert "Clientmodul nicht erreichbar" in html
    await socket.disconnect()
