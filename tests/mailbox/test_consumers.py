"""The live inbox socket: new mail reaches members only, rendered with their permissions."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore

from kimportal.asgi import application
from mailbox.consumers import InboxConsumer
from mailbox.consumers.base import _open_per_session
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db(transaction=True)


async def _connect(user, *, watch: tuple[int, ...] = ()) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    communicator.scope["user"] = user
    connected, _ = await communicator.connect()
    assert connected
    if watch:
        await watch_rows(communicator, watch)
    return communicator


async def watch_rows(communicator: WebsocketCommunicator, message_ids, new: str | None = None) -> None:
    """Say which rows the page shows, as portal.js does, and wait until the socket follows them."""
    frame = {"watch": ",".join(str(pk) for pk in message_ids)}
    if new is not None:
        frame["new"] = new
    await communicator.send_to(text_data=json.dumps(frame))
    ack = await communicator.receive_from(timeout=5)
    assert 'id="live-watching"' in ack


@pytest.mark.asyncio
async def test_anonymous_socket_is_refused_after_the_handshake():
    """Refused during the handshake, the browser sees 1006 and htmx reconnects for as long as the tab is open; a
    signed-out socket is accepted and closed with 4401 at once, which htmx takes as final (portal.js then says that
    the session ended). It follows nothing: a frame sent before the close is ignored."""
    communicator = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    communicator.scope["user"] = AnonymousUser()
    assert await communicator.connect() == (True, None)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await communicator.send_to(text_data=json.dumps({"resync": True}))
    assert await communicator.receive_nothing()
    assert _open_per_session == {}
    await communicator.disconnect()


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


async def _message_socket(user, message_id: int, page: str = "") -> WebsocketCommunicator:
    from mailbox.consumers import MessageConsumer

    path = f"/ws/message/{message_id}/" + (f"?page={page}" if page else "")
    communicator = WebsocketCommunicator(MessageConsumer.as_asgi(), path)
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"pk": message_id}}
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _receive_until(communicator: WebsocketCommunicator, needle: str, timeout: float = 5) -> str:
    """Read frames until one contains needle (other events may arrive first)."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        html = await communicator.receive_from(timeout=max(0.1, deadline - loop.time()))
        if needle in html:
            return html


@pytest.fixture
def shared_box():
    box = MailboxFactory()
    a = UserFactory(username="anna", first_name="Anna", last_name="A")
    b = UserFactory(username="bert", first_name="Bert", last_name="B")
    MembershipFactory(mailbox=box, user=a)
    MembershipFactory(mailbox=box, user=b)
    message = message_ingest(mailbox=box, uidl="shared-1", raw=MAIL_WITH_PDF)
    return box, a, b, message


@pytest.mark.asyncio
async def test_presence_and_writing_reach_colleagues_and_vanish_on_leave(shared_box):
    from mailbox.models import Presence

    _box, anna, bert, message = shared_box
    bert_list = await _connect(bert, watch=(message.pk,))
    anna_page = await _message_socket(anna, message.pk)

    html = await _receive_until(bert_list, f'id="row-presence-{message.pk}"')
    assert "Anna A sieht sich die Nachricht an" in html

    await anna_page.send_to(text_data='{"writing": "1", "HEADERS": {}}')
    html = await _receive_until(bert_list, "schreibt")
    assert "Anna A schreibt" in html

    await anna_page.disconnect()
    html = await _receive_until(bert_list, f'id="row-presence-{message.pk}"')
    assert "Anna" not in html
    assert not await database_sync_to_async(Presence.objects.exists)()
    await bert_list.disconnect()


@pytest.mark.asyncio
async def test_arrivals_and_departures_redraw_colleagues_lock_panels(shared_box):
    # The panel comes from the lock selector (holder, lease, who has it open), not from a list row.
    _box, anna, bert, message = shared_box
    bert_page = await _message_socket(bert, message.pk)
    assert "Anna A" not in await _receive_until(bert_page, 'id="detail-presence"')  # his page as it was
    anna_page = await _message_socket(anna, message.pk)
    html = await _receive_until(bert_page, 'id="detail-presence"')
    assert "Anna A" in html
    assert 'data-locked-by-other="0"' in html
    # Anna's socket first draws the panel as it is once it listens (Bert there): read it before he leaves.
    assert "Bert B" in await _receive_until(anna_page, 'id="detail-presence"')
    await bert_page.disconnect()
    html = await _receive_until(anna_page, 'id="detail-presence"')
    assert "Bert B" not in html
    await anna_page.disconnect()


@pytest.mark.asyncio
async def test_leaving_the_page_releases_the_lock_and_others_see_it(shared_box):
    from mailbox.models import Message
    from mailbox.services.claims import message_claim

    _box, anna, bert, message = shared_box
    anna_page = await _message_socket(anna, message.pk)
    bert_page = await _message_socket(bert, message.pk)
    result = await database_sync_to_async(message_claim)(user=anna, message=message)
    assert result.won
    html = await _receive_until(bert_page, "In Bearbeitung durch Anna A")
    assert 'data-locked-by-other="1"' in html

    await anna_page.disconnect()
    html = await _receive_until(bert_page, "Niemand bearbeitet")
    assert 'data-locked-by-other="0"' in html
    fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert fresh.claimed_by_id is None
    await bert_page.disconnect()


@pytest.mark.asyncio
async def test_second_tab_keeps_the_lock_when_one_closes(shared_box):
    from mailbox.models import Message
    from mailbox.services.claims import message_claim

    _box, anna, _bert, message = shared_box
    tab1 = await _message_socket(anna, message.pk)
    tab2 = await _message_socket(anna, message.pk)
    await database_sync_to_async(message_claim)(user=anna, message=message)
    await tab1.disconnect()
    fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert fresh.claimed_by_id == anna.pk
    await tab2.disconnect()
    fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert fresh.claimed_by_id is None


@pytest.mark.asyncio
async def test_heartbeat_renews_the_lease(shared_box):
    from datetime import timedelta

    from django.utils import timezone

    from mailbox.models import Message
    from mailbox.services.claims import message_claim

    _box, anna, _bert, message = shared_box
    page = await _message_socket(anna, message.pk)
    await database_sync_to_async(message_claim)(user=anna, message=message)
    soon = timezone.now() + timedelta(seconds=10)
    await database_sync_to_async(Message.objects.filter(pk=message.pk).update)(claim_expires_at=soon)
    await page.send_to(text_data='{"writing": "0"}')
    # The heartbeat runs in the consumer; poll the row for the renewed lease.
    for _ in range(50):
        fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
        if fresh.claim_expires_at > soon + timedelta(seconds=30):
            break
        await page.receive_nothing(timeout=0.05)
    assert fresh.claim_expires_at > soon + timedelta(seconds=30)
    await page.disconnect()


@pytest.mark.asyncio
async def test_state_change_updates_rows_and_counts_for_members_only(shared_box):
    from mailbox.services.states import message_set_state

    _box, anna, bert, message = shared_box
    outsider = await database_sync_to_async(UserFactory)(username="aussen2")
    await database_sync_to_async(MembershipFactory)(user=outsider)
    bert_list = await _connect(bert, watch=(message.pk,))
    outsider_list = await _connect(outsider, watch=(message.pk,))
    await database_sync_to_async(message_set_state)(user=anna, message=message, version=message.version, state="done")
    html = await _receive_until(bert_list, f'id="msg-{message.pk}"')
    assert "erledigt" in html and 'hx-swap-oob="true"' in html
    # The counts follow in their own frame, after a short pause that lets a burst ride along.
    nav = await _receive_until(bert_list, 'id="mailbox-nav"')
    assert 'hx-swap-oob="true"' in nav
    assert await outsider_list.receive_nothing(timeout=0.3)
    await bert_list.disconnect()
    await outsider_list.disconnect()


def test_stale_presence_rows_are_not_shown(shared_box):
    """After a server restart sockets vanish without disconnect handlers: rows expire by TTL."""
    from datetime import timedelta

    from django.utils import timezone

    from mailbox.models import Presence
    from mailbox.selectors import PRESENCE_TTL_SECONDS, presence_for_messages

    _box, anna, bert, message = shared_box
    Presence.objects.create(message=message, user=anna, channel_name="dead-1", last_seen=timezone.now())
    Presence.objects.create(
        message=message,
        user=bert,
        channel_name="dead-2",
        last_seen=timezone.now() - timedelta(seconds=PRESENCE_TTL_SECONDS + 1),
    )
    present = presence_for_messages([message.pk])[message.pk]
    assert [p.name for p in present] == ["Anna A"]


@pytest.mark.asyncio
async def test_a_new_member_gets_live_mail_without_reloading():
    from mailbox.services.members import membership_set

    owner = await database_sync_to_async(UserFactory)(username="chefin")
    newcomer = await database_sync_to_async(UserFactory)(username="neu")
    box = await database_sync_to_async(MailboxFactory)(display_name="Aufnahme")
    await database_sync_to_async(MembershipFactory)(mailbox=box, user=owner, role="owner")
    socket = await _connect(newcomer)

    await database_sync_to_async(membership_set)(user=owner, mailbox=box, username="neu", role="reader")
    nav = await _receive_until(socket, 'id="mailbox-nav"')
    assert "Aufnahme" in nav
    message = await database_sync_to_async(message_ingest)(mailbox=box, uidl="after-join", raw=MAIL_WITH_PDF)
    html = await _receive_until(socket, f'id="msg-{message.pk}"')
    assert "Entlassbrief" in html
    await socket.disconnect()


@pytest.mark.asyncio
async def test_reloading_the_page_keeps_the_lock(shared_box):
    """Reload: the new page's GET renews the lease before the old page's socket closes."""
    from mailbox.models import Message
    from mailbox.services.claims import message_claim, page_token_new

    _box, anna, _bert, message = shared_box
    first, second = page_token_new(user=anna, message_id=message.pk), page_token_new(user=anna, message_id=message.pk)
    await database_sync_to_async(message_claim)(user=anna, message=message, page=first)  # the first GET
    old_page = await _message_socket(anna, message.pk, page=first)
    await old_page.send_to(text_data='{"writing": "0"}')  # a heartbeat of the old page
    await old_page.receive_nothing(timeout=0.2)

    await database_sync_to_async(message_claim)(user=anna, message=message, page=second)  # the reload's GET
    await old_page.disconnect()
    fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert fresh.claimed_by_id == anna.pk, "closing the old page must not free the reloaded page's lock"

    new_page = await _message_socket(anna, message.pk, page=second)
    await new_page.disconnect()
    fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert fresh.claimed_by_id is None, "closing the last page frees the lock"


@pytest.mark.asyncio
async def test_a_deactivated_account_gets_no_more_patient_data(shared_box):
    from django.contrib.auth import get_user_model

    box, _anna, bert, _message = shared_box
    socket = await _connect(bert)
    await database_sync_to_async(get_user_model().objects.filter(pk=bert.pk).update)(is_active=False)
    await database_sync_to_async(message_ingest)(mailbox=box, uidl="after-leaving", raw=MAIL_WITH_PDF)
    output = await socket.receive_output(timeout=5)
    assert output["type"] == "websocket.close"
    assert output["code"] == 4401


@pytest.mark.asyncio
async def test_a_logged_out_session_gets_no_more_patient_data(shared_box):
    from django.contrib.sessions.backends.db import SessionStore

    box, _anna, bert, _message = shared_box
    session = SessionStore()
    await database_sync_to_async(session.create)()
    communicator = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    communicator.scope["user"] = bert
    communicator.scope["session"] = session
    connected, _ = await communicator.connect()
    assert connected
    await database_sync_to_async(session.delete)()  # what logout does
    await database_sync_to_async(message_ingest)(mailbox=box, uidl="after-logout", raw=MAIL_WITH_PDF)
    output = await communicator.receive_output(timeout=5)
    assert output["type"] == "websocket.close"


@pytest.mark.asyncio
async def test_a_fetch_round_arrives_as_one_frame_with_every_new_row(shared_box):
    from mailbox import events

    box, anna, _bert, first = shared_box
    second = await database_sync_to_async(message_ingest)(mailbox=box, uidl="round-2", raw=MAIL_WITH_PDF)
    socket = await _connect(anna)
    await database_sync_to_async(events.broadcast_messages_created)(
        mailbox_id=box.pk, message_ids=[second.pk, first.pk]
    )
    html = await _receive_until(socket, f'id="msg-{first.pk}"')
    assert f'id="msg-{second.pk}"' in html
    # Each row is prepended: the older one goes first so the newer ends on top.
    assert html.index(f'id="msg-{first.pk}"') < html.index(f'id="msg-{second.pk}"')
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_socket_that_fell_behind_is_closed_so_that_it_resyncs(shared_box):
    import time

    from channels.layers import get_channel_layer

    from mailbox.events import mailbox_group

    box, anna, _bert, message = shared_box
    socket = await _connect(anna)
    # An event that waited in the socket's queue far longer than the lag limit (the server was slow).
    late = {"type": "message.changed", "mailbox_id": box.pk, "message_id": message.pk, "seq": "late"}
    await get_channel_layer().group_send(mailbox_group(box.pk), {**late, "at": time.time() - 60})
    output = await socket.receive_output(timeout=5)
    # 1013 "try again later": one of the codes after which the htmx websocket extension reconnects.
    assert output == {"type": "websocket.close", "code": 1013}


@pytest.mark.asyncio
async def test_a_socket_whose_queue_overflowed_is_closed_so_that_it_resyncs(shared_box):
    from channels.layers import get_channel_layer

    from mailbox.events import mailbox_group

    box, anna, _bert, _message = shared_box
    socket = await _connect(anna)
    # What the channel layer hands a socket whose bounded queue overflowed (kimportal.channel_layer).
    await get_channel_layer().group_send(mailbox_group(box.pk), {"type": "layer.overflow"})
    output = await socket.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 1013}


@pytest.mark.asyncio
async def test_sockets_whose_events_redis_may_have_lost_are_closed_so_that_they_resync(shared_box):
    from channels.layers import get_channel_layer

    from mailbox.events import mailbox_group

    box, anna, _bert, _message = shared_box
    inbox = await _connect(anna)
    # What the channel layer hands every socket of a process whose Redis connection broke (kimportal.channel_layer).
    await get_channel_layer().group_send(mailbox_group(box.pk), {"type": "layer.lost"})
    assert await inbox.receive_output(timeout=5) == {"type": "websocket.close", "code": 1012}


@pytest.mark.asyncio
async def test_a_reconnected_page_asks_for_the_current_state(shared_box):
    box, anna, _bert, message = shared_box
    inbox = await _connect(anna)
    await inbox.send_to(text_data='{"resync": "1"}')
    nav = await _receive_until(inbox, 'id="mailbox-nav"')
    assert box.display_name in nav
    page = await _message_socket(anna, message.pk)
    await page.send_to(text_data='{"resync": "1", "writing": "0"}')
    panel = await _receive_until(page, 'id="lock-panel"')
    assert "Niemand bearbeitet" in panel
    await inbox.disconnect()
    await page.disconnect()


@pytest.mark.asyncio
async def test_a_frame_nested_deeper_than_the_decoder_goes_is_ignored_and_the_socket_lives_on(shared_box):
    box, anna, _bert, message = shared_box
    inbox = await _connect(anna)
    page = await _message_socket(anna, message.pk)
    for socket in (inbox, page):
        await socket.send_to(text_data="[" * 100_000)
    await inbox.send_to(text_data='{"resync": "1"}')
    assert box.display_name in await _receive_until(inbox, 'id="mailbox-nav"')
    await page.send_to(text_data='{"resync": "1"}')
    assert "Niemand bearbeitet" in await _receive_until(page, 'id="lock-panel"')
    await inbox.disconnect()
    await page.disconnect()


@pytest.mark.asyncio
async def test_a_page_hears_only_about_the_rows_it_shows_and_new_mail_where_it_shows_it(shared_box):
    from mailbox.services.claims import message_claim

    box, anna, bert, shown = shared_box
    hidden = await database_sync_to_async(message_ingest)(mailbox=box, uidl="page-2-row", raw=MAIL_WITH_PDF)
    # Bert's list shows one row and no new mail on top (a filtered or later page); the detail page shows none.
    page = await _connect(bert)
    await watch_rows(page, [shown.pk], new="")
    await database_sync_to_async(message_claim)(user=anna, message=hidden)
    await database_sync_to_async(message_ingest)(mailbox=box, uidl="arrives", raw=MAIL_WITH_PDF)
    await database_sync_to_async(message_claim)(user=anna, message=shown)
    frames = []
    while not any('id="mailbox-nav"' in f for f in frames) or not any(f'id="msg-{shown.pk}"' in f for f in frames):
        frames.append(await page.receive_from(timeout=5))
    # The shown row came, and the counts that the new mail moved; nothing about the hidden row or the new mail's row.
    assert not any(f'id="msg-{hidden.pk}"' in f or "afterbegin" in f for f in frames), frames
    await page.disconnect()


@pytest.mark.asyncio
async def test_an_idle_socket_survives_quiet_minutes_of_the_channel_layer():
    """redis-py's read timeout (5 s) once ended an idle consumer's wait with an error: quiet is normal."""
    import asyncio

    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    with pytest.raises(asyncio.TimeoutError):  # our own bound, not redis giving up
        await asyncio.wait_for(layer.receive(channel), timeout=7)


@pytest.mark.django_db
def test_sockets_after_the_first_take_an_events_rows_ready_made(shared_box, django_assert_num_queries):
    # The first socket of a process renders an event's row (database, in a thread); the others of the
    # same audience find it ready on the event loop. Another audience (read state) is not served it.
    from mailbox import events
    from mailbox.consumers.base import CHANGED
    from mailbox.services.reading import message_open

    box, anna, bert, message = shared_box
    carl = UserFactory(username="carl", first_name="Carl", last_name="C")
    MembershipFactory(mailbox=box, user=carl)
    message_open(user=carl, message=message)  # Carl has read it, Anna and Bert have not

    event = {"type": "message.changed", "mailbox_id": box.pk, "message_id": message.pk, "seq": events._seq()}
    rows = [(message.pk, event, CHANGED)]
    first, second, reader = _inbox_consumer(anna), _inbox_consumer(bert), _inbox_consumer(carl)
    assert first._rows_ready(rows) is None
    html = first._render_rows(rows)
    assert f'id="msg-{message.pk}"' in html
    with django_assert_num_queries(0):
        assert second._rows_ready(rows) == html
        assert reader._rows_ready(rows) is None
    assert 'class="msg-row state-' in reader._render_rows(rows)  # read: no "unread" class


@pytest.mark.asyncio
async def test_events_reach_a_socket_without_a_hop_to_the_shared_sync_thread(monkeypatch):
    # channels' default dispatch closes old connections on the one thread-sensitive sync thread before every event
    # and socket; these sockets reach the database only through their own pool (which closes them), so an event
    # fanned out to many pages queues nothing on that thread.
    import channels.consumer

    hops: list[int] = []

    async def counted() -> None:
        hops.append(1)

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counted)
    member = await database_sync_to_async(UserFactory)(username="mitglied")
    box = await database_sync_to_async(MailboxFactory)()
    await database_sync_to_async(MembershipFactory)(mailbox=box, user=member)
    socket = await _connect(member)
    message = await database_sync_to_async(message_ingest)(mailbox=box, uidl="live-hop", raw=MAIL_WITH_PDF)
    assert f'id="msg-{message.pk}"' in await socket.receive_from(timeout=5)
    await watch_rows(socket, [message.pk])
    await socket.disconnect()
    assert hops == []


@pytest.mark.asyncio
async def test_sockets_flushing_one_event_at_once_share_one_render(shared_box, monkeypatch):
    # All sockets that show a row flush its event at the same moment: the first renders it (one thread hop), the
    # others of its audience wait for it and take it ready-made; another audience (read state) renders its own.
    import asyncio

    from mailbox import events
    from mailbox.consumers.base import CHANGED
    from mailbox.services.reading import message_open

    box, anna, bert, message = shared_box
    carl = await database_sync_to_async(UserFactory)(username="carl", first_name="Carl", last_name="C")
    await database_sync_to_async(MembershipFactory)(mailbox=box, user=carl)
    await database_sync_to_async(message_open)(user=carl, message=message)
    renders: list[int] = []
    render_rows = InboxConsumer._render_rows

    def counted(self, rows):
        renders.append(self.user.pk)
        return render_rows(self, rows)

    monkeypatch.setattr(InboxConsumer, "_render_rows", counted)

    event = {"type": "message.changed", "mailbox_id": box.pk, "message_id": message.pk, "seq": events._seq()}
    rows = [(message.pk, event, CHANGED)]
    sockets = [_inbox_consumer(user) for user in (anna, bert, anna, bert, anna, carl)]
    frames = await asyncio.gather(*(socket._rows_html(rows) for socket in sockets))
    assert renders == [anna.pk, carl.pk]
    assert len(set(frames[:5])) == 1 and f'id="msg-{message.pk}"' in frames[0]
    assert frames[5] != frames[0]  # Carl has read it: his row is not "unread"


def _inbox_consumer(user) -> InboxConsumer:
    """An inbox socket's consumer as connect() leaves it, for calling its rendering steps directly."""
    socket = InboxConsumer()
    socket.user, socket.language = user, "de"
    return socket


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_session_holds_a_bounded_number_of_sockets_per_process(settings):
    """A script with one session cookie opening thousands of sockets is refused beyond the limit (4429 after the
    handshake, which htmx does not reconnect on); a socket that ends frees its place, and another session of the
    same user has its own."""
    settings.KIMPORTAL_MAX_SOCKETS_PER_SESSION = 2
    user = await database_sync_to_async(UserFactory)(username="viele-tabs")

    async def open_socket(session_key: str) -> WebsocketCommunicator:
        communicator = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
        communicator.scope["user"] = user
        communicator.scope["session"] = SessionStore(session_key=session_key)
        assert await communicator.connect() == (True, None)
        return communicator

    first = await open_socket("sitzung-a")
    second = await open_socket("sitzung-a")
    assert _open_per_session == {"sitzung-a": 2}
    # Closed right after the handshake: refused during it, a browser would see 1006 and htmx would reconnect.
    refused = await open_socket("sitzung-a")
    assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}
    # A frame a script sent before it saw the close is ignored (the refused socket follows nothing).
    await refused.send_to(text_data=json.dumps({"watch": "1", "new": "1", "since": "0"}))
    await refused.disconnect()
    assert _open_per_session == {"sitzung-a": 2}
    other = await open_socket("sitzung-b")
    assert _open_per_session == {"sitzung-a": 2, "sitzung-b": 1}
    await first.disconnect()
    again = await open_socket("sitzung-a")
    assert _open_per_session == {"sitzung-a": 2, "sitzung-b": 1}
    for communicator in (second, other, again):
        await communicator.disconnect()
    # Every socket that ended gave its place back.
    assert not _open_per_session


@pytest.mark.asyncio
async def test_a_message_socket_refused_for_the_socket_limit_leaves_no_presence(shared_box, settings):
    """The message socket writes its presence before the session's limit is asked: a refused socket must take it
    away again, or colleagues see the user on the message though no page of theirs shows it."""
    from mailbox.consumers import MessageConsumer
    from mailbox.models import Presence

    settings.KIMPORTAL_MAX_SOCKETS_PER_SESSION = 1
    _box, anna, _bert, message = shared_box
    page = await _message_socket(anna, message.pk)
    refused = WebsocketCommunicator(MessageConsumer.as_asgi(), f"/ws/message/{message.pk}/")
    refused.scope["user"] = anna
    refused.scope["url_route"] = {"kwargs": {"pk": message.pk}}
    assert await refused.connect() == (True, None)
    assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}
    # A frame a script sent before it saw the close is ignored (the refused socket follows nothing).
    await refused.send_to(text_data=json.dumps({"watch": "1", "new": "1", "since": "0"}))
    await refused.disconnect()
    channels = await database_sync_to_async(lambda: list(Presence.objects.values_list("channel_name", flat=True)))()
    assert len(channels) == 1
    await page.disconnect()
    assert not await database_sync_to_async(Presence.objects.exists)()
    assert not _open_per_session


@pytest.mark.asyncio
async def test_a_socket_whose_handler_failed_leaves_its_groups(monkeypatch):
    """A handler that raises ends the consumer without a websocket_disconnect (the browser sees 1011 and reconnects):
    the process must not keep the dead socket in its mailbox groups, with every event of them queued for nobody."""
    from channels.layers import get_channel_layer

    member = await database_sync_to_async(UserFactory)(username="abgestuerzt")
    box = await database_sync_to_async(MailboxFactory)()
    await database_sync_to_async(MembershipFactory)(mailbox=box, user=member)
    names: list[str] = []

    async def failing(self, text_data=None, bytes_data=None):
        names.append(self.channel_name)
        raise RuntimeError("a bug in a handler")

    communicator = await _connect(member)
    monkeypatch.setattr(InboxConsumer, "receive", failing)
    await communicator.send_to(text_data=json.dumps({"watch": ""}))
    with pytest.raises(RuntimeError):
        await communicator.receive_output(timeout=5)
    layer = get_channel_layer()._get_layer()
    assert names and not [group for group, members in layer.groups.items() if names[0] in members]


@pytest.mark.asyncio
async def test_a_message_page_socket_connects_in_one_database_hop_and_draws_its_panel_at_once(shared_box, monkeypatch):
    """Every message page opens a socket: its user, the message's visibility and the user's role, the presence join and
    the panel as it is now take one trip to a database thread (three were the connect, an access check and the
    panel's render), and the panel shows the holder, the reader's own arrival and their role's actions."""
    from channels.db import DatabaseSyncToAsync

    from mailbox.models import Membership
    from mailbox.services.claims import message_claim

    _box, anna, bert, message = shared_box
    await database_sync_to_async(Membership.objects.filter(user=anna).update)(role=Membership.Role.OWNER)
    assert (await database_sync_to_async(message_claim)(user=bert, message=message)).won
    hops: list[str] = []
    original = DatabaseSyncToAsync.thread_handler

    def counted(self, *args, **kwargs):
        hops.append(getattr(self.func, "__qualname__", repr(self.func)))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DatabaseSyncToAsync, "thread_handler", counted)
    anna_page = await _message_socket(anna, message.pk)
    html = await _receive_until(anna_page, 'id="lock-panel"')
    assert "In Bearbeitung durch Bert B" in html and 'data-locked-by-other="1"' in html
    assert "Anna A" in html  # her own page, joined before the panel was read
    assert "Sperre aufheben" in html  # an owner's action: the role came with the panel
    assert await anna_page.receive_nothing(timeout=0.3)
    assert len(hops) == 1, hops
    await anna_page.disconnect()


@pytest.mark.asyncio
async def test_a_worker_holding_its_limit_of_sockets_refuses_more_with_try_again_later(shared_box, settings):
    """Past KIMPORTAL_MAX_SOCKETS_PER_WORKER a socket is accepted and closed with 1013, on which the browser backs off
    and reconnects (refused in its handshake it would see 1006); it reads nothing, joins nothing, writes no presence,
    and the refusal is counted. Once a socket closed, the next one connects again."""
    from kimportal import requestmetrics
    from mailbox.models import Presence

    settings.KIMPORTAL_MAX_SOCKETS_PER_WORKER = 1
    _box, anna, bert, message = shared_box
    refusals = requestmetrics.SOCKETS_REFUSED.labels("message", "1013")
    before = refusals._value.get()
    inbox = await _connect(anna)
    refused = WebsocketCommunicator(InboxConsumer.as_asgi(), "/ws/inbox/")
    refused.scope["user"] = bert
    assert await refused.connect() == (True, None)
    assert await refused.receive_output(timeout=5) == {"type": "websocket.close", "code": 1013}
    await refused.disconnect()
    from mailbox.consumers import MessageConsumer

    page = WebsocketCommunicator(MessageConsumer.as_asgi(), f"/ws/message/{message.pk}/")
    page.scope["user"] = bert
    page.scope["url_route"] = {"kwargs": {"pk": message.pk}}
    assert await page.connect() == (True, None)
    assert await page.receive_output(timeout=5) == {"type": "websocket.close", "code": 1013}
    await page.disconnect()
    assert refusals._value.get() == before + 1
    assert not await database_sync_to_async(Presence.objects.exists)()
    assert sum(_open_per_session.values()) == 1
    await inbox.disconnect()
    again = await _message_socket(bert, message.pk)
    assert 'id="lock-panel"' in await again.receive_from(timeout=5)
    await again.disconnect()
    assert not _open_per_session


@pytest.mark.asyncio
async def test_a_refused_message_socket_ignores_a_panel_event_while_its_close_goes_through():
    # Refused (signed out, no access) it still holds the message's group until the close is through: a panel event
    # then found no user or role to ask and raised in the consumer.
    from mailbox.consumers.message import MessageConsumer
    from signing.services.received import PANEL

    consumer = MessageConsumer()
    consumer.closed, consumer.mailbox_id, consumer.message_id = True, None, 1
    sent: list = []
    consumer._send = sent.append  # type: ignore[method-assign,assignment]
    await consumer.message_panel_changed({"type": "message.panel_changed", "message_id": 1, "panel": PANEL})
    assert sent == []
