"""The signing queue as people try it who should not get far: a manager without membership, an author who left
the sending mailbox, a physician whose eHBA mapping was removed, someone else's ids in every form, a cancel
twice or too late, a forged cross-site POST, a tab left open after logout."""

from __future__ import annotations

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.backends.db import SessionStore
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from mailbox.models import Membership
from mailbox.services.ingest import message_ingest
from signing import events
from signing.consumers import BatchConsumer, QueueConsumer
from signing.models import BatchItem, ComfortActivation, Draft, ReviewRule, SignatureBatch, SignerCard, Workplace
from signing.services.drafts import draft_withdraw
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.signing.documents import LETTER_TEXT
from tests.signing.factories import DraftFactory, SignerCardFactory, WorkplaceFactory
from tests.signing.test_permissions import ROUTES, url_kwargs

TEXT = {"content": LETTER_TEXT, "mime_type": "text/plain", "filename": "brief.txt"}


def _selection(*drafts: Draft) -> list[str]:
    return [f"{d.pk}:{d.version}:{d.sha256}" for d in drafts]


def _snapshot(draft: Draft) -> tuple:
    fresh = Draft.objects.get(pk=draft.pk)
    return (fresh.version, fresh.state, fresh.subject, fresh.sha256, fresh.signer_id, fresh.last_error)


# --- managers administer, they read no letter without a membership ---------------------------------------------


@pytest.mark.django_db
def test_a_manager_without_membership_reads_no_patient_document(client, manager, assistant, physician, mailbox):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, **TEXT)
    client.force_login(manager)
    for name in ("draft-detail", "draft-document"):
        response = client.get(reverse(f"signing:{name}", args=[letter.pk]))
        assert response.status_code == 404, (name, response.status_code)
    assert "Frau Muster" not in client.get(reverse("signing:drafts"), {"state": "all"}).content.decode()
    assert not AuditEvent.objects.filter(action="signing.document_viewed", actor_id=manager.pk).exists()


@pytest.mark.django_db
def test_a_manager_can_neither_change_nor_sign_nor_cancel_anothers_work(
    client, manager, assistant, physician, mailbox, workplace
):
    SignerCardFactory(user=manager)  # even with an eHBA of their own
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    batch = SignatureBatch.objects.create(signer=physician, workplace=workplace, total=1, job_number="ABC-123")
    before = _snapshot(letter)
    client.force_login(manager)
    edit = client.post(
        reverse("signing:draft-edit", args=[letter.pk]),
        {"subject": "Geändert", "version": letter.version, "document_type": "earztbrief"},
    )
    assert edit.status_code == 404  # not even found: another's letter is not the manager's to see
    client.post(reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(letter)})
    assert not SignatureBatch.objects.filter(signer=manager).exists()
    cancel = client.post(reverse("signing:batch-cancel", args=[batch.pk]))
    assert cancel.status_code == 404
    assert SignatureBatch.objects.get(pk=batch.pk).cancel_requested_at is None
    assert _snapshot(letter) == before
    assert not AuditEvent.objects.filter(actor_id=manager.pk, action__startswith="signing.").exists()


# --- an author who left the sending mailbox --------------------------------------------------------------------


@pytest.mark.django_db
def test_an_author_removed_from_the_mailbox_can_no_longer_change_or_send_from_it(client, assistant, physician, mailbox):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    Membership.objects.filter(user=assistant, mailbox=mailbox).delete()
    before = _snapshot(letter)
    client.force_login(assistant)
    data = {
        "document_type": "earztbrief",
        "patient_reference": "Muster",
        "signer": physician.pk,
        "mailbox": mailbox.pk,
        "recipients": "praxis@praxis-test.kim.telematik-test",
        "subject": "Geändert nach dem Austritt",
        "version": letter.version,
    }
    response = client.post(reverse("signing:draft-edit", args=[letter.pk]), data)
    assert response.status_code == 404  # the draft is the department's: who left it no longer finds it
    assert _snapshot(letter) == before
    response = client.post(
        reverse("signing:draft-create"), {**data, "document": SimpleUploadedFile("brief.txt", LETTER_TEXT)}
    )
    assert response.status_code == 422 and Draft.objects.count() == 1
    # The form offers the mailbox no more.
    page = client.get(reverse("signing:draft-create")).content.decode()
    assert f'<option value="{mailbox.pk}"' not in page


# --- a physician whose eHBA mapping was removed, with the queue still open -----------------------------------


@pytest.mark.django_db
def test_a_removed_ehba_mapping_ends_signing_even_from_an_open_page(client, manager, physician, assistant, mailbox):
    workplace = WorkplaceFactory()
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    client.force_login(physician)
    page = client.get(reverse("signing:queue")).content.decode()
    assert _selection(letter)[0] in page  # the page with the checkbox stays open ...
    manager_client = Client()
    manager_client.force_login(manager)
    manager_client.post(reverse("signing:manage-card-remove", args=[physician.signer_card.pk]))
    assert not SignerCard.objects.filter(user=physician).exists()
    # ... and its POST after the removal starts nothing.
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(letter)}, follow=True
    )
    assert "kein eHBA" in response.content.decode()
    assert not SignatureBatch.objects.exists()
    assert Draft.objects.get(pk=letter.pk).state == Draft.State.DRAFT
    assert _selection(letter)[0] not in client.get(reverse("signing:queue")).content.decode()


# --- someone else's ids ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_someone_elses_draft_in_a_batch_start_is_refused_and_unchanged(client, physician, assistant, mailbox):
    other = UserFactory(username="zweitaerztin")
    SignerCardFactory(user=other)
    workplace = WorkplaceFactory()
    theirs = DraftFactory(author=assistant, signer=other, mailbox=mailbox)
    mine = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    before = _snapshot(theirs), _snapshot(mine)
    client.force_login(physician)
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(mine, theirs)}, follow=True
    )
    assert "können Sie nicht signieren" in response.content.decode()
    assert not SignatureBatch.objects.exists()
    assert (_snapshot(theirs), _snapshot(mine)) == before
    # The author who is not the signer cannot sign it either, even with an eHBA of their own.
    SignerCardFactory(user=assistant)
    client.force_login(assistant)
    client.post(reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(mine)})
    assert not SignatureBatch.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    ["1:1:" + "0" * 63, "1;DROP TABLE", "-1:1:" + "a" * 64, "99999999999999999999:1:" + "a" * 64, "1:1:" + "A" * 64],
)
def test_a_forged_selection_is_refused_as_such(client, physician, value):
    client.force_login(physician)
    workplace = WorkplaceFactory()
    response = client.post(reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": value}, follow=True)
    assert "Die Auswahl ist ungültig" in response.content.decode()
    assert not SignatureBatch.objects.exists()


@pytest.mark.django_db
def test_one_draft_named_twice_is_refused_unless_it_is_the_same_value(client, physician, assistant, mailbox, settings):
    """A draft at two versions (or digests) in one selection is no selection the page made: refused whichever
    comes first, nothing starts. The same value twice is one draft (and counts once against the limit)."""
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    (current,) = _selection(letter)
    stale = f"{letter.pk}:{letter.version}:" + "0" * 64
    client.force_login(physician)
    workplace = WorkplaceFactory()
    for values in ([stale, current], [current, stale]):
        response = client.post(
            reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": values}, follow=True
        )
        assert "Die Auswahl ist ungültig" in response.content.decode(), values
    assert not SignatureBatch.objects.exists()
    settings.KIMPORTAL_SIGNING_MAX_BATCH = 1
    response = client.post(reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": [current, current]})
    batch = SignatureBatch.objects.get()
    assert response["Location"] == reverse("signing:batch", args=[batch.pk]) and batch.total == 1


@pytest.mark.django_db
def test_more_drafts_than_a_batch_takes_are_refused(client, physician, assistant, mailbox, settings):
    settings.KIMPORTAL_SIGNING_MAX_BATCH = 3
    drafts = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(4)]
    client.force_login(physician)
    response = client.post(
        reverse("signing:batch-start"), {"workplace": WorkplaceFactory().pk, "draft": _selection(*drafts)}, follow=True
    )
    assert "Höchstens 3 Dokumente" in response.content.decode()
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}


@pytest.mark.django_db
def test_an_inactive_or_unknown_workplace_starts_nothing(client, physician, assistant, mailbox):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    retired = Workplace.objects.create(workplace_id="AP-alt", label="Alt", is_active=False)
    client.force_login(physician)
    for workplace in (retired.pk, 999_999, "x"):
        response = client.post(
            reverse("signing:batch-start"), {"workplace": workplace, "draft": _selection(letter)}, follow=True
        )
        assert "Bitte wählen Sie Ihren Arbeitsplatz" in response.content.decode()
    assert not SignatureBatch.objects.exists()


@pytest.mark.django_db
def test_the_back_link_after_a_refusal_never_leaves_the_site(client, physician):
    client.force_login(physician)
    for target in ("https://evil.example/", "//evil.example/", "javascript:alert(1)"):
        response = client.post(reverse("signing:batch-start"), {"next": target})
        assert response.status_code == 302 and response["Location"] == reverse("signing:queue"), target
        response = client.post(reverse("signing:batch-start"), {}, headers={"referer": target})
        assert response["Location"] == reverse("signing:queue"), target


@pytest.mark.django_db
def test_a_letter_withdrawn_after_the_list_was_loaded_is_named_as_withdrawn(client, physician, assistant, mailbox):
    """The author takes a letter back while the physician's list still shows it: the refusal says so, and does not
    claim the letter is being signed or signed already."""
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, subject="Entlassbrief Muster")
    other = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    selection = _selection(letter, other)
    draft_withdraw(user=assistant, draft=letter, reason="falscher Patient")
    client.force_login(physician)
    response = client.post(
        reverse("signing:batch-start"), {"workplace": WorkplaceFactory().pk, "draft": selection}, follow=True
    )
    said = [str(m) for m in response.context["messages"]]
    assert said == ["Zurückgezogen: Entlassbrief Muster. Bitte laden Sie die Liste neu."], said
    assert not SignatureBatch.objects.exists()
    assert Draft.objects.get(pk=other.pk).state == Draft.State.DRAFT


# --- a double click, a tab left open after logout ----------------------------------------------------------------


@pytest.mark.django_db
def test_the_same_selection_sent_twice_leads_to_its_running_batch(client, physician, assistant, mailbox, workplace):
    """A double click sends the form twice and the browser shows the second answer: that is the running batch's
    page with its job number (to compare with the terminal's), not the list with an error."""
    letters = [DraftFactory(author=assistant, signer=physician, mailbox=mailbox) for _ in range(2)]
    data = {"workplace": workplace.pk, "draft": _selection(*letters)}
    client.force_login(physician)
    first = client.post(reverse("signing:batch-start"), data)
    batch = SignatureBatch.objects.get()
    assert first["Location"] == reverse("signing:batch", args=[batch.pk])
    second = client.post(reverse("signing:batch-start"), data)
    assert second.status_code == 302 and second["Location"] == reverse("signing:batch", args=[batch.pk])
    assert SignatureBatch.objects.count() == 1
    # Another selection while that batch runs is still refused, back on the list.
    third = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    response = client.post(reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(third)})
    assert response["Location"] == reverse("signing:queue")
    assert SignatureBatch.objects.count() == 1 and Draft.objects.get(pk=third.pk).state == Draft.State.DRAFT


@pytest.mark.django_db
def test_a_batch_posted_from_a_signed_out_tab_leads_back_to_the_list_after_signing_in(
    client, physician, assistant, mailbox, workplace
):
    """The session ended in another tab; this tab's "Auswahl signieren" goes to the login, and signing in leads to
    the list the tab showed — not to the form's address, which answers only POST (a blank 405 page)."""
    physician.set_password("Kennwort-lang-genug-1")
    physician.save()
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    page = "http://testserver" + reverse("signing:queue") + "?sort=patient"
    response = client.post(
        reverse("signing:batch-start"),
        {"workplace": workplace.pk, "draft": _selection(letter)},
        headers={"referer": page},
    )
    assert response.status_code == 302 and response["Location"].startswith(reverse("login") + "?next=")
    assert not SignatureBatch.objects.exists()
    login = client.get(response["Location"])
    back = client.post(
        response["Location"],
        {"username": physician.username, "password": "Kennwort-lang-genug-1", "next": login.context["next"]},
        follow=True,
    )
    assert back.status_code == 200 and back.redirect_chain[-1][0] == reverse("signing:queue") + "?sort=patient"
    assert _selection(letter)[0] in back.content.decode()  # the letter is still there to select
    assert not SignatureBatch.objects.exists()
    # A referer of another site is not where the login leads back to.
    response = Client().post(reverse("signing:batch-start"), {}, headers={"referer": "https://evil.example/signatur/"})
    assert response.status_code == 302 and "evil" not in response["Location"]


# --- cancel --------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_twice_is_one_request_and_a_finished_batch_stays_finished(client, physician, workplace):
    running = SignatureBatch.objects.create(signer=physician, workplace=workplace, total=1)
    finished = SignatureBatch.objects.create(
        signer=physician, workplace=workplace, total=1, state=SignatureBatch.State.DONE, finished_at=timezone.now()
    )
    client.force_login(physician)
    for _ in range(2):
        assert client.post(reverse("signing:batch-cancel", args=[running.pk])).status_code == 302
    requested = SignatureBatch.objects.get(pk=running.pk).cancel_requested_at
    assert requested is not None
    assert AuditEvent.objects.filter(action="signing.batch_cancel_requested").count() == 1
    client.post(reverse("signing:batch-cancel", args=[finished.pk]))
    fresh = SignatureBatch.objects.get(pk=finished.pk)
    assert (fresh.state, fresh.cancel_requested_at) == (SignatureBatch.State.DONE, None)
    assert AuditEvent.objects.filter(action="signing.batch_cancel_requested").count() == 1


@pytest.mark.django_db
def test_another_physicians_batch_cannot_be_cancelled(client, physician, workplace):
    other = UserFactory(username="zweitaerztin")
    SignerCardFactory(user=other)
    batch = SignatureBatch.objects.create(signer=other, workplace=workplace, total=1, job_number="XYZ-001")
    client.force_login(physician)
    assert client.post(reverse("signing:batch-cancel", args=[batch.pk])).status_code == 404
    assert client.get(reverse("signing:batch", args=[batch.pk])).status_code == 404
    assert f"batch-{batch.pk}" not in client.get(reverse("signing:batches")).content.decode()
    assert SignatureBatch.objects.get(pk=batch.pk).cancel_requested_at is None


# --- CSRF on every POST ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_post_of_the_app_needs_the_csrf_token(manager, assistant, mailbox, workplace):
    """A forged cross-site form (no token) changes nothing on any route, for the most powerful user there is."""
    MembershipFactory(mailbox=mailbox, user=manager, role=Membership.Role.OWNER)
    card = SignerCardFactory(user=manager)
    letter = DraftFactory(author=manager, signer=manager, mailbox=mailbox)
    batch = SignatureBatch.objects.create(signer=manager, workplace=workplace, total=1, job_number="ABC-123")
    rule = ReviewRule.objects.create(mailbox=mailbox, document_type="eau")
    message = message_ingest(mailbox=mailbox, uidl="csrf-1", raw=MAIL_WITH_PDF)
    comfort = ComfortActivation.objects.create(signer=manager, workplace=workplace, state="active")
    world = {"draft": letter, "batch": batch, "card": card, "workplace": workplace, "rule": rule, "message": message}
    world["comfort"] = comfort
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(manager)
    events_before = AuditEvent.objects.count()
    checked = 0
    for name, (kind, methods) in ROUTES.items():
        if "POST" not in methods:
            continue
        url = reverse(f"signing:{name}", kwargs=url_kwargs(kind, world))
        data = {
            "workplace": workplace.pk,
            "draft": _selection(letter),
            "username": assistant.username,
            "telematik_id": "1-X",
            "workplace_id": "AP-forged",
            "label": "forged",
            "subject": "forged",
            "version": letter.version,
        }
        response = forged.post(url, data)
        assert response.status_code == 403, (name, response.status_code)
        checked += 1
    assert checked == sum(1 for _kind, methods in ROUTES.values() if "POST" in methods)
    assert AuditEvent.objects.count() == events_before
    assert ReviewRule.objects.filter(pk=rule.pk).exists()
    assert not SignatureBatch.objects.exclude(pk=batch.pk).exists()
    assert SignatureBatch.objects.get(pk=batch.pk).cancel_requested_at is None
    assert SignerCard.objects.filter(pk=card.pk).exists() and not SignerCard.objects.filter(user=assistant).exists()
    assert not Workplace.objects.filter(workplace_id="AP-forged").exists()
    assert Draft.objects.get(pk=letter.pk).subject == letter.subject


# --- a tab left open after logout, a deactivated account -------------------------------------------------------


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


async def _socket(consumer, user, *, session_key: str | None = None, **kwargs) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(consumer.as_asgi(), "/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"args": (), "kwargs": kwargs}
    if session_key is not None:
        communicator.scope["session"] = SessionStore(session_key=session_key)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    if consumer is BatchConsumer:
        # A batch socket starts with the batch as it is (what changed while the page loaded); later frames are events.
        assert 'id="batch-status"' in await communicator.receive_from(timeout=5)
    return communicator


async def _until_closed(communicator: WebsocketCommunicator) -> dict:
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output


def _world() -> tuple:
    box = MailboxFactory()
    physician = UserFactory(username="tab-aerztin")
    SignerCardFactory(user=physician)
    assistant = UserFactory(username="tab-assistenz")
    MembershipFactory(mailbox=box, user=assistant, role=Membership.Role.PROCESSOR)
    letter = DraftFactory(author=assistant, signer=physician, mailbox=box)
    batch = SignatureBatch.objects.create(signer=physician, workplace=WorkplaceFactory(), total=1)
    BatchItem.objects.create(
        batch=batch, draft=letter, position=0, request_id="r0", document_version=1, document_sha256=letter.sha256
    )
    return physician, assistant, letter, batch


@async_db
async def test_logout_closes_the_queue_and_batch_sockets_of_that_session(settings):
    physician, _assistant, _letter, batch = await database_sync_to_async(_world)()
    client = Client()
    await sync_to_async(client.force_login)(physician)
    key = client.session.session_key
    queue = await _socket(QueueConsumer, physician, session_key=key)
    page = await _socket(BatchConsumer, physician, session_key=key, pk=batch.pk)
    assert (await sync_to_async(client.post)(reverse("logout"))).status_code == 302
    assert (await _until_closed(queue))["code"] == 4401
    assert (await _until_closed(page))["code"] == 4401


@async_db
async def test_an_expired_session_gets_no_more_patient_data():
    """The session ends without the logout view (expired, deleted by an administrator): the next event finds
    it gone and closes the socket instead of sending the letter's subject and patient."""
    physician, _assistant, letter, batch = await database_sync_to_async(_world)()
    client = Client()
    await sync_to_async(client.force_login)(physician)
    key = client.session.session_key
    queue = await _socket(QueueConsumer, physician, session_key=key)
    page = await _socket(BatchConsumer, physician, session_key=key, pk=batch.pk)
    await database_sync_to_async(SessionStore(session_key=key).delete)()
    await database_sync_to_async(events.broadcast_drafts_changed)(user_ids=[physician.pk], draft_ids=[letter.pk])
    await database_sync_to_async(events.broadcast_batch_changed)(batch_id=batch.pk)
    for socket in (queue, page):
        output = await socket.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": 4401}, output


@async_db
async def test_a_deactivated_signers_queue_socket_closes():
    physician, _assistant, letter, _batch = await database_sync_to_async(_world)()
    queue = await _socket(QueueConsumer, physician)
    await database_sync_to_async(type(physician).objects.filter(pk=physician.pk).update)(is_active=False)
    await database_sync_to_async(events.broadcast_drafts_changed)(user_ids=[physician.pk], draft_ids=[letter.pk])
    assert await queue.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


@async_db
async def test_someone_elses_batch_socket_is_refused_even_with_a_forged_event():
    _physician, assistant, _letter, batch = await database_sync_to_async(_world)()
    other = await database_sync_to_async(UserFactory)(username="tab-zweitaerztin")
    communicator = WebsocketCommunicator(BatchConsumer.as_asgi(), "/")
    communicator.scope["user"] = other
    communicator.scope["url_route"] = {"args": (), "kwargs": {"pk": batch.pk}}
    connected, code = await communicator.connect(timeout=5)
    assert (connected, code) == (True, None)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}
    # The author is not the signer: the batch page is the physician's alone.
    communicator = WebsocketCommunicator(BatchConsumer.as_asgi(), "/")
    communicator.scope["user"] = assistant
    communicator.scope["url_route"] = {"args": (), "kwargs": {"pk": batch.pk}}
    connected, code = await communicator.connect(timeout=5)
    assert (connected, code) == (True, None)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}


# --- one eHBA, one person ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["telematik_id", "iccsn"])
def test_one_ehba_cannot_be_mapped_to_two_people(client, manager, physician, assistant, field):
    """A second mapping of the same card would let another person's batches run on the physician's eHBA (their
    job numbers on her terminal): a typo or a mix-up at the managers' page must be refused, not stored."""
    card = physician.signer_card
    if field == "iccsn":
        card.iccsn = "80276001011699901234"
        card.save()
    value = getattr(card, field)
    client.force_login(manager)
    response = client.post(
        reverse("signing:manage-cards"),
        {"username": assistant.username, "telematik_id": "", "iccsn": "", field: value},
    )
    assert response.status_code == 422
    assert "bereits" in response.content.decode()
    assert not SignerCard.objects.filter(user=assistant).exists()
    # Changing the physician's own mapping (same card) stays possible.
    response = client.post(
        reverse("signing:manage-cards"),
        {"username": physician.username, "telematik_id": card.telematik_id, "iccsn": card.iccsn},
    )
    assert response.status_code == 302


@async_db
async def test_a_hostile_page_cannot_open_the_signing_sockets_with_the_users_cookie(settings):
    """Cross-site WebSocket hijacking: another site's page, in the physician's browser, sends her session cookie
    along; the full ASGI stack refuses its Origin before any consumer runs, and lets the portal's own page in."""
    from kimportal.asgi import application

    physician, _assistant, _letter, batch = await database_sync_to_async(_world)()
    client = Client()
    await sync_to_async(client.force_login)(physician)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    for path in ("/ws/signing/queue/", f"/ws/signing/batch/{batch.pk}/"):
        headers = [(b"cookie", cookie), (b"host", b"localhost")]
        hostile = WebsocketCommunicator(application, path, headers=[*headers, (b"origin", b"https://evil.example")])
        connected, _code = await hostile.connect(timeout=5)
        assert not connected, path
        await hostile.disconnect()
        own = WebsocketCommunicator(application, path, headers=[*headers, (b"origin", b"http://localhost")])
        connected, _code = await own.connect(timeout=5)
        assert connected, path
        await own.disconnect()
