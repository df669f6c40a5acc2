"""The signing sockets: new work reaches the signer's queue live; a batch page follows its batch; every event is
re-read through the user's selectors before anything is sent."""

from __future__ import annotations

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection

from mailbox.models import Membership
from signing import events
from signing.consumers import BatchConsumer, QueueConsumer
from signing.models import SignatureBatch
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory


@pytest_asyncio.fixture
async def _close_async_connection():
    yield
    await database_sync_to_async(lambda: connection.close())()


def async_db(test):
    for mark in (
        pytest.mark.usefixtures("_close_async_connection"),
        pytest.mark.django_db(transaction=True),
        pytest.mark.asyncio,
    ):
        test = mark(test)
    return test


async def _open(consumer, user, **kwargs) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"args": (), "kwargs": kwargs}
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    if consumer is BatchConsumer:
        # A batch socket starts with the batch as it is (what changed while the page loaded); later frames are events.
        assert 'id="batch-status"' in await communicator.receive_from(timeout=5)
    return communicator


def _people():
    box = MailboxFactory()
    physician = UserFactory(username="ws-aerztin", first_name="Anna", last_name="Sommer")
    SignerCardFactory(user=physician)
    MembershipFactory(mailbox=box, user=physician, role=Membership.Role.PROCESSOR)
    assistant = UserFactory(username="ws-assistenz")
    MembershipFactory(mailbox=box, user=assistant, role=Membership.Role.PROCESSOR)
    stranger = UserFactory(username="ws-fremd")
    return box, physician, assistant, stranger


@async_db
async def test_a_new_draft_reaches_the_signers_queue_and_nobody_elses():
    box, physician, assistant, stranger = await database_sync_to_async(_people)()
    mine = await _open(QueueConsumer, physician)
    theirs = await _open(QueueConsumer, stranger)

    def create():
        data = DraftData(
            document_type="eau",
            patient_reference="Muster",
            signer=physician,
            mailbox=box,
            subject="AU Muster",
            recipients=["kasse@kasse-test.kim.telematik-test"],
        )
        return draft_create(author=assistant, data=data, document=document_check(b"AU\n", "au.txt"))

    draft = await database_sync_to_async(create)()
    frames = [await mine.receive_from(timeout=5), await mine.receive_from(timeout=5)]
    html = next(f for f in frames if 'id="queue-notice"' in f)
    assert 'hx-swap-oob="true"' in html
    assert "wartet neu oder geändert auf Ihre Signatur" in html and str(draft.pk) in html
    # The bell in the top bar counts the new notification.
    bell = next(f for f in frames if 'id="notification-badge"' in f)
    assert '<span class="count">1</span>' in bell
    assert await theirs.receive_nothing(timeout=0.3)
    # Even an event naming the draft tells a stranger nothing: the consumer re-reads through the selector.
    await database_sync_to_async(events.broadcast_drafts_changed)(user_ids=[stranger.pk], draft_ids=[draft.pk])
    assert await theirs.receive_nothing(timeout=0.3)
    await mine.disconnect()
    await theirs.disconnect()


@async_db
async def test_the_batch_page_follows_its_batch():
    def world():
        _box, physician, _assistant, _stranger = _people()
        batch = SignatureBatch.objects.create(signer=physician, workplace=WorkplaceFactory(), total=3)
        return physician, batch

    physician, batch = await database_sync_to_async(world)()
    page = await _open(BatchConsumer, physician, pk=batch.pk)

    def job_number_shown():
        SignatureBatch.objects.filter(pk=batch.pk).update(state=SignatureBatch.State.PIN, job_number="QRS-481")
        events.broadcast_batch_changed(batch_id=batch.pk)

    await database_sync_to_async(job_number_shown)()
    html = await page.receive_from(timeout=5)
    assert 'id="batch-status"' in html and 'hx-swap-oob="true"' in html
    assert "#QRS-481" in html and "Bitte PIN am Kartenterminal eingeben" in html

    def asked_again():
        SignatureBatch.objects.filter(pk=batch.pk).update(calls_done=1, calls_total=2, job_number="QRS-482")
        events.broadcast_batch_changed(batch_id=batch.pk)

    await database_sync_to_async(asked_again)()
    html = await page.receive_from(timeout=5)
    assert "#QRS-482" in html and "Bitte PIN erneut am Kartenterminal eingeben" in html and "Schritt 2 von 2" in html

    def finished():
        SignatureBatch.objects.filter(pk=batch.pk).update(
            state=SignatureBatch.State.FAILED, error_code=4043, error_text="Timeout bei der PIN-Eingabe."
        )
        events.broadcast_batch_changed(batch_id=batch.pk)

    await database_sync_to_async(finished)()
    html = await page.receive_from(timeout=5)
    assert 'id="batch-summary"' in html and "Timeout bei der PIN-Eingabe." in html and "4043" in html
    await page.disconnect()


@async_db
async def test_the_batch_page_socket_starts_with_the_batch_as_it_is_now():
    """The page was rendered while the batch was prepared; the Konnektor asked for the PIN before the page's socket
    listened. Its first frame shows the job number the terminal shows."""

    def world():
        _box, physician, _assistant, _stranger = _people()
        batch = SignatureBatch.objects.create(signer=physician, workplace=WorkplaceFactory(), total=1)
        SignatureBatch.objects.filter(pk=batch.pk).update(state=SignatureBatch.State.PIN, job_number="QRS-777")
        return physician, batch

    physician, batch = await database_sync_to_async(world)()
    communicator = WebsocketCommunicator(BatchConsumer.as_asgi(), "/")
    communicator.scope["user"] = physician
    communicator.scope["url_route"] = {"args": (), "kwargs": {"pk": batch.pk}}
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    html = await communicator.receive_from(timeout=5)
    assert 'hx-swap-oob="true"' in html and "#QRS-777" in html and "Bitte PIN am Kartenterminal eingeben" in html
    await communicator.disconnect()


@async_db
async def test_a_deactivated_signer_gets_nothing_more():
    def world():
        _box, physician, _assistant, _stranger = _people()
        return physician, SignatureBatch.objects.create(signer=physician, workplace=WorkplaceFactory(), total=1)

    physician, batch = await database_sync_to_async(world)()
    page = await _open(BatchConsumer, physician, pk=batch.pk)
    await database_sync_to_async(type(physician).objects.filter(pk=physician.pk).update)(is_active=False)
    await database_sync_to_async(events.broadcast_batch_changed)(batch_id=batch.pk)
    assert await page.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await page.disconnect()
