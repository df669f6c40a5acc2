"""A page is rendered before its sockets listen: what changed in between reaches it once they do."""

from __future__ import annotations

import json
import time

import pytest
from channels.db import database_sync_to_async

from mailbox.models import Message
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.test_consumers import _connect, _message_socket, _receive_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("kept_logs")]


@pytest.fixture
def ward():
    box = MailboxFactory()
    other = MailboxFactory()
    foreign = MailboxFactory()
    anna = UserFactory(username="anna", first_name="Anna", last_name="A")
    bert = UserFactory(username="bert", first_name="Bert", last_name="B")
    for user in (anna, bert):
        MembershipFactory(mailbox=box, user=user)
    MembershipFactory(mailbox=other, user=anna)
    shown = message_ingest(mailbox=box, uidl="shown", raw=MAIL_WITH_PDF)
    return box, other, foreign, anna, bert, shown


async def _declare(socket, *, watch, new, since, view: str = "all", at: float | None = None) -> list[str]:
    """The page's first watch frame (portal.js), then every frame until the counts follow the rows (or nothing)."""
    frame = {"watch": ",".join(map(str, watch)), "new": ",".join(map(str, new)), "since": str(since), "view": view}
    if at is not None:
        frame["at"] = f"{at:.3f}"
    await socket.send_to(text_data=json.dumps(frame))
    frames = [await socket.receive_from(timeout=5)]
    assert 'id="live-watching"' in frames[0]
    while not await socket.receive_nothing(timeout=0.8):
        frames.append(await socket.receive_from(timeout=5))
    return frames


def _ingest(box, uidl: str) -> Message:
    return message_ingest(mailbox=box, uidl=uidl, raw=MAIL_WITH_PDF)


@pytest.mark.asyncio
async def test_mail_stored_before_the_socket_listened_is_sent_once_it_does(ward):
    box, other, foreign, anna, _bert, shown = ward
    # The page was rendered showing `shown` (the newest then); meanwhile the worker stored two letters for the ward,
    # one for a mailbox the page does not show new mail of, and one for a mailbox Anna is not in.
    first = await database_sync_to_async(_ingest)(box, "window-1")
    second = await database_sync_to_async(_ingest)(box, "window-2")
    elsewhere = await database_sync_to_async(_ingest)(other, "window-other")
    stranger = await database_sync_to_async(_ingest)(foreign, "window-foreign")
    socket = await _connect(anna)

    frames = await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk)
    html = "".join(frames)
    assert f'id="msg-{first.pk}"' in html and f'id="msg-{second.pk}"' in html
    assert f"afterbegin:[data-live-mailboxes~='mb-{box.pk}']" in html
    # Oldest first: each row is prepended, so the newest ends on top as in the list.
    assert html.index(f'id="msg-{first.pk}"') < html.index(f'id="msg-{second.pk}"')
    for absent in (shown, elsewhere, stranger):
        assert f'id="msg-{absent.pk}"' not in html
    assert any('id="mailbox-nav"' in f for f in frames), "the counts the new mail moved follow"

    # The list changes (a row claimed, a page swapped in with the same "since"): nothing is sent twice.
    again = await _declare(socket, watch=[shown.pk, first.pk, second.pk], new=[box.pk], since=shown.pk)
    assert not any("afterbegin" in f for f in again), again
    await socket.disconnect()


@pytest.mark.asyncio
async def test_rows_the_page_shows_or_the_socket_already_sent_are_not_sent_again(ward):
    box, _other, _foreign, anna, _bert, shown = ward
    # Stored after "since" was taken but before the list was read: the page shows it.
    on_page = await database_sync_to_async(_ingest)(box, "on-page")
    socket = await _connect(anna)
    # Stored after the socket listened, before the page's watch frame: its event brought the row already.
    told = await database_sync_to_async(_ingest)(box, "told")
    await _receive_until(socket, f'id="msg-{told.pk}"')

    frames = await _declare(socket, watch=[shown.pk, on_page.pk], new=[box.pk], since=shown.pk)
    assert not any("afterbegin" in f for f in frames), frames
    await socket.disconnect()


@pytest.mark.asyncio
async def test_mail_its_view_leaves_out_is_no_news_to_an_open_list(ward):
    box, _other, _foreign, anna, bert, shown = ward
    done = await database_sync_to_async(_ingest)(box, "done-already")
    await database_sync_to_async(Message.objects.filter(pk=done.pk).update)(state=Message.State.DONE)
    assigned = await database_sync_to_async(_ingest)(box, "assigned-already")
    await database_sync_to_async(Message.objects.filter(pk=assigned.pk).update)(assignee=bert)
    fresh = await database_sync_to_async(_ingest)(box, "fresh")
    socket = await _connect(anna)

    # "Nicht zugewiesen": its newest row was `shown`; the done and the assigned letter are not news to it.
    html = "".join(await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, view="unassigned"))
    assert f'id="msg-{fresh.pk}"' in html
    assert f'id="msg-{done.pk}"' not in html and f'id="msg-{assigned.pk}"' not in html
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_filtered_list_or_a_page_without_since_gets_no_rows(ward):
    box, _other, _foreign, anna, _bert, shown = ward
    await database_sync_to_async(_ingest)(box, "later")
    socket = await _connect(anna)
    assert not any("afterbegin" in f for f in await _declare(socket, watch=[shown.pk], new=[], since=shown.pk))
    assert not any("afterbegin" in f for f in await _declare(socket, watch=[shown.pk], new=[box.pk], since=""))
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_message_page_shows_a_claim_taken_before_its_socket_listened(ward):
    from mailbox.services.claims import message_claim

    _box, _other, _foreign, anna, bert, shown = ward
    # Anna's page was rendered with the message free; Bert took it before her page's socket listened.
    await database_sync_to_async(message_claim)(user=bert, message=shown)
    page = await _message_socket(anna, shown.pk)
    html = await _receive_until(page, 'id="lock-panel"')
    assert 'data-locked-by-other="1"' in html
    assert "In Bearbeitung durch Bert B" in html
    await page.disconnect()


@pytest.mark.asyncio
async def test_a_late_event_of_a_row_the_catch_up_sent_does_not_add_it_twice(ward):
    from mailbox import events

    box, _other, _foreign, anna, _bert, shown = ward
    stored = await database_sync_to_async(_ingest)(box, "late-event")
    socket = await _connect(anna)
    html = "".join(await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk))
    assert html.count(f'id="msg-{stored.pk}"') == 1
    # The message's own event reaches the socket only now (a busy channel layer): the row is on the page already.
    await database_sync_to_async(events.broadcast_message_created)(mailbox_id=box.pk, message_id=stored.pk)
    await database_sync_to_async(events.broadcast_messages_created)(mailbox_id=box.pk, message_ids=[stored.pk])
    frames = []
    while not await socket.receive_nothing(timeout=0.8):
        frames.append(await socket.receive_from(timeout=5))
    assert not any(f'id="msg-{stored.pk}"' in frame for frame in frames), frames
    await socket.disconnect()


# --- The short event logs: what was sent between the list's read ("at") and the socket's subscription -----------


@pytest.mark.asyncio
async def test_a_colleague_claiming_a_shown_row_before_the_socket_listened_reaches_the_list(ward):
    from mailbox.services.claims import message_claim

    _box, _other, _foreign, anna, bert, shown = ward
    read_at = time.time()  # Anna's list was read with the row free
    await database_sync_to_async(message_claim)(user=bert, message=shown)
    socket = await _connect(anna)
    html = "".join(await _declare(socket, watch=[shown.pk], new=[], since="", at=read_at))
    # The row is drawn again, now taken by Bert (before the logs, the list showed it free until the next load).
    assert f'id="msg-{shown.pk}"' in html
    assert "Bert" in html
    assert "afterbegin" not in html  # a shown row is updated in place, not added
    await socket.disconnect()


@pytest.mark.asyncio
async def test_mail_committed_after_the_read_with_an_older_id_than_the_list_knew_reaches_it(ward):
    box, _other, _foreign, anna, _bert, shown = ward
    read_at = time.time()
    # Two fetches at once: the letter with the lower id committed after the list was read, the higher one before.
    # The list shows the higher one and knows it as its newest ("since"): the database catch-up (ids after it)
    # cannot see the other.
    late = await database_sync_to_async(_ingest)(box, "late-commit")
    newest = await database_sync_to_async(_ingest)(box, "early-commit")
    socket = await _connect(anna)
    html = "".join(await _declare(socket, watch=[shown.pk, newest.pk], new=[box.pk], since=newest.pk, at=read_at))
    assert f'id="msg-{late.pk}"' in html
    assert f"afterbegin:[data-live-mailboxes~='mb-{box.pk}']" in html
    assert html.count(f'id="msg-{newest.pk}"') == 0  # shown already
    assert 'id="mailbox-nav"' in html, "the counts the new mail moved follow"
    await socket.disconnect()


@pytest.mark.asyncio
async def test_events_sent_before_the_list_was_read_are_not_replayed(ward):
    from mailbox.services.claims import message_claim

    box, _other, _foreign, anna, bert, shown = ward
    await database_sync_to_async(message_claim)(user=bert, message=shown)
    before = await database_sync_to_async(_ingest)(box, "before-read")
    # The list was read after both (beyond the margin for clocks): it shows them as they are.
    read_at = time.time() + 0.3
    socket = await _connect(anna)
    html = "".join(await _declare(socket, watch=[shown.pk, before.pk], new=[box.pk], since=before.pk, at=read_at))
    assert f'id="msg-{shown.pk}"' not in html and f'id="msg-{before.pk}"' not in html
    await socket.disconnect()


@pytest.mark.asyncio
async def test_replayed_mail_passes_the_view_and_membership_like_the_database_catch_up(ward):
    box, other, _foreign, anna, bert, shown = ward
    read_at = time.time()
    assigned = await database_sync_to_async(_ingest)(box, "assigned-meanwhile")
    await database_sync_to_async(Message.objects.filter(pk=assigned.pk).update)(assignee=bert)
    elsewhere = await database_sync_to_async(_ingest)(other, "not-shown-mailbox")
    fresh = await database_sync_to_async(_ingest)(box, "fresh-meanwhile")
    socket = await _connect(anna)
    html = "".join(
        await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, view="unassigned", at=read_at)
    )
    assert f'id="msg-{fresh.pk}"' in html
    assert f'id="msg-{assigned.pk}"' not in html and f'id="msg-{elsewhere.pk}"' not in html
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_list_read_longer_ago_than_the_logs_keep_catches_up_from_the_database(ward, monkeypatch):
    from mailbox.consumers import inbox

    box, _other, _foreign, anna, _bert, shown = ward
    stored = await database_sync_to_async(_ingest)(box, "long-ago")
    socket = await _connect(anna)
    monkeypatch.setattr(inbox, "get_channel_layer", lambda: pytest.fail("the logs are not read for an old list"))
    html = "".join(await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, at=time.time() - 55))
    assert f'id="msg-{stored.pk}"' in html
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_log_read_cut_at_its_limit_falls_back_to_the_database(ward, monkeypatch):
    """A burst (a retention run redrawing thousands of rows) fills the window beyond what one read takes: the newest
    events, the mail among them, were cut off and the list was told nothing. A cut read cannot tell: the database
    catch-up reads the new mail instead."""
    from kimportal import channel_layer
    from mailbox.events import mailbox_group, send_to_group

    box, _other, _foreign, anna, _bert, shown = ward
    monkeypatch.setattr(channel_layer, "LOG_READ_MAX", 3)
    read_at = time.time()
    for _ in range(3):
        await database_sync_to_async(send_to_group)(
            mailbox_group(box.pk), {"type": "counts.changed", "mailbox_id": box.pk}
        )
    late = await database_sync_to_async(_ingest)(box, "after-the-burst")
    socket = await _connect(anna)
    html = "".join(await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, at=read_at))
    assert f'id="msg-{late.pk}"' in html
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_client_asking_again_and_again_gets_no_more_log_reads_than_the_window_allows(ward, monkeypatch):
    from mailbox.consumers import inbox

    box, _other, _foreign, anna, _bert, shown = ward
    reads = []
    real = inbox.get_channel_layer

    class Counting:
        def __init__(self, layer):
            self.layer = layer

        async def recent(self, logs, start):
            reads.append(start)
            return await self.layer.recent(logs, start)

    monkeypatch.setattr(inbox, "get_channel_layer", lambda: Counting(real()))
    socket = await _connect(anna)
    now = time.time()
    # A hostile page: thirty watch frames, each with another "at" (each would be a read of the logs).
    for n in range(30):
        frame = {"watch": str(shown.pk), "new": str(box.pk), "since": str(shown.pk), "at": f"{now - n:.3f}"}
        await socket.send_to(text_data=json.dumps(frame))
        assert 'id="live-watching"' in await socket.receive_from(timeout=5)
    assert len(reads) == inbox.CATCH_UP_BURST
    await socket.disconnect()


# --- A list swapped while the socket stays open (a page link, a filter, a search) ----------------------------------


async def _swapped(socket, box, shown) -> tuple[float, Message]:
    """The page showed its first list (read, then declared); it swaps in another, read at the returned time. Mail
    stored right after that read reaches the socket live and is prepended to the list still on the page: the one
    the swap replaces."""
    await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, at=time.time())
    read_at = time.time()
    late = await database_sync_to_async(_ingest)(box, "while-swapping")
    await _receive_until(socket, f'id="msg-{late.pk}"')
    return read_at, late


@pytest.mark.asyncio
async def test_mail_sent_to_the_list_a_swap_replaced_reaches_the_list_swapped_in(ward):
    box, _other, _foreign, anna, _bert, shown = ward
    socket = await _connect(anna)
    read_at, late = await _swapped(socket, box, shown)
    # The list swapped in was read before the mail was stored (it knows the same newest message): its replay sends the
    # row again, as the one it went to is gone.
    html = "".join(await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, at=read_at))
    assert html.count(f'id="msg-{late.pk}"') == 1
    assert f"afterbegin:[data-live-mailboxes~='mb-{box.pk}']" in html
    # A list that shows it (read after it was stored) is not sent it again.
    again = await _declare(socket, watch=[shown.pk, late.pk], new=[box.pk], since=late.pk, at=time.time())
    assert not any(f'id="msg-{late.pk}"' in frame for frame in again), again
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_swapped_list_whose_logs_cannot_tell_catches_up_from_the_database(ward, monkeypatch):
    """As above, and the log read is cut (a burst): the database catch-up runs although the list knew the same newest
    message as the one before it."""
    from kimportal import channel_layer

    box, _other, _foreign, anna, _bert, shown = ward
    socket = await _connect(anna)
    read_at, late = await _swapped(socket, box, shown)
    monkeypatch.setattr(channel_layer, "LOG_READ_MAX", 1)
    html = "".join(await _declare(socket, watch=[shown.pk], new=[box.pk], since=shown.pk, at=read_at))
    assert html.count(f'id="msg-{late.pk}"') == 1
    await socket.disconnect()
