"""A draft belongs to its department (the sending mailbox): who leaves it loses the draft everywhere, and only a
physician of that department — an eHBA holder with the processing role there — can be chosen to sign it.

An ex-member with an open tab, a forged POST with someone else's id, a KIS naming an outsider, and a signer who
leaves between queueing and the batch's run (or while the terminal waits for the PIN)."""

from __future__ import annotations

import importlib
import threading
import time

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.apps import apps as django_apps
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, connections, transaction
from django.urls import reverse

from audit.models import AuditEvent
from kimportal.errors import NotAllowed, PortalError
from mailbox.models import Membership, Notification
from mailbox.selectors import user_counters
from mailbox.storage import blob_path
from signing import events
from signing.consumers import QueueConsumer
from signing.models import BatchItem, Draft, Signature, SignatureBatch
from signing.selectors import signer_choices
from signing.services.batch import Selected, batch_create
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from signing.services.run import batch_run
from tests.fixtures.konnektor_sim import CT_ID, PIN
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.documents import LETTER_TEXT
from tests.signing.factories import DraftFactory, SignerCardFactory, plain_letters
from tests.signing.test_permissions import ROUTES

TEXT = {"content": LETTER_TEXT, "mime_type": "text/plain", "filename": "brief.txt"}


def _leave(user, mailbox) -> None:
    Membership.objects.filter(user=user, mailbox=mailbox).delete()


def _selection(*drafts: Draft) -> list[str]:
    return [f"{d.pk}:{d.version}:{d.sha256}" for d in drafts]


def _snapshot(draft: Draft) -> tuple:
    fresh = Draft.objects.get(pk=draft.pk)
    return (fresh.version, fresh.state, fresh.subject, fresh.signer_id, fresh.review_state, fresh.last_error)


def _form_data(signer, mailbox, **extra) -> dict:
    return {
        "document_type": "earztbrief",
        "patient_reference": "Muster, Erika",
        "signer": signer.pk,
        "mailbox": mailbox.pk,
        "recipients": "praxis@praxis-test.kim.telematik-test",
        "subject": "Entlassbrief",
        **extra,
    }


@pytest.fixture
def outsider():
    """Dr. Otto Außen: holds an eHBA, works in another department (not a member of the assistant's mailbox)."""
    user = UserFactory(username="aussen", first_name="Otto", last_name="Außen")
    SignerCardFactory(user=user)
    MembershipFactory(mailbox=MailboxFactory(display_name="Chirurgie"), user=user, role=Membership.Role.PROCESSOR)
    return user


# --- who left the department loses the draft everywhere ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["author", "signer"])
def test_who_left_the_department_gets_404_on_every_route_of_the_draft(client, assistant, physician, mailbox, who):
    """The walker: every draft route of the app (from the resolver's list), GET and POST, for the ex-author and the
    ex-signer: not found, nothing changes, nothing is recorded in their name."""
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, **TEXT)
    gone = {"author": assistant, "signer": physician}[who]
    client.force_login(gone)
    assert client.get(reverse("signing:draft-detail", args=[letter.pk])).status_code == 200  # a member sees it
    _leave(gone, mailbox)
    before = _snapshot(letter)
    events_before = AuditEvent.objects.filter(actor_id=gone.pk).count()
    kwargs = {"draft": {"pk": letter.pk}, "draft-version": {"pk": letter.pk, "number": 1}}
    checked = 0
    for name, (kind, methods) in ROUTES.items():
        if kind not in ("draft", "draft-version"):
            continue
        url = reverse(f"signing:{name}", kwargs=kwargs[kind])
        for method in methods:
            data = {**_form_data(physician, mailbox), "version": letter.version, "comment": "ok"}
            response = client.get(url) if method == "GET" else client.post(url, data)
            assert response.status_code == 404, (name, method, response.status_code)
            checked += 1
    assert checked == sum(len(m) for kind, m in ROUTES.values() if kind in ("draft", "draft-version"))
    assert _snapshot(letter) == before
    assert AuditEvent.objects.filter(actor_id=gone.pk).count() == events_before
    # The lists do not name it either (the queue, the central list with all states, the review list).
    for name in ("queue", "drafts", "review-queue"):
        page = client.get(reverse(f"signing:{name}"), {"state": "all"}).content.decode()
        assert letter.subject not in page and letter.patient_reference not in page, name


@pytest.mark.django_db
def test_the_ex_signer_cannot_sign_from_an_open_tab(client, assistant, physician, mailbox, workplace):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    client.force_login(physician)
    assert _selection(letter)[0] in client.get(reverse("signing:queue")).content.decode()  # the tab stays open
    _leave(physician, mailbox)
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(letter)}, follow=True
    )
    assert "nicht (mehr) signieren" in response.content.decode()
    assert not SignatureBatch.objects.exists()
    assert _snapshot(letter)[1] == Draft.State.DRAFT


@pytest.mark.django_db
def test_a_signer_demoted_to_reader_still_sees_but_cannot_sign(client, assistant, physician, mailbox, workplace):
    """Reading the department is not sending from it: the draft shows why it cannot be selected."""
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    Membership.objects.filter(user=physician, mailbox=mailbox).update(role=Membership.Role.READER)
    client.force_login(physician)
    page = client.get(reverse("signing:queue")).content.decode()
    assert letter.subject in page and _selection(letter)[0] not in page
    assert "Rolle „Bearbeiten“ oder „Eigentümer“" in page
    detail = client.get(reverse("signing:draft-detail", args=[letter.pk])).content.decode()
    assert 'id="sign-refusal"' in detail and "nicht (mehr) signieren" in detail
    with pytest.raises(NotAllowed):
        batch_create(signer=physician, workplace=workplace, selected=[Selected(letter.pk, 1, letter.sha256)])
    assert not SignatureBatch.objects.exists()


@pytest.mark.django_db
def test_membership_through_a_group_counts_and_ends_with_it(client, assistant, mailbox):
    """A ward (group) with the processing role: its physicians see and sign; who leaves the group loses both."""
    ward = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=mailbox, user=None, group=ward, role=Membership.Role.PROCESSOR)
    doctor = UserFactory(username="stationsaerztin")
    doctor.groups.add(ward)
    SignerCardFactory(user=doctor)
    assert doctor in signer_choices([mailbox])
    letter = DraftFactory(author=assistant, signer=doctor, mailbox=mailbox, members=False)
    client.force_login(doctor)
    assert _selection(letter)[0] in client.get(reverse("signing:queue")).content.decode()
    doctor.groups.remove(ward)
    assert doctor not in signer_choices([mailbox])
    assert client.get(reverse("signing:draft-detail", args=[letter.pk])).status_code == 404


# --- who may be chosen to sign ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_form_offers_only_signers_of_the_users_departments(client, assistant, physician, outsider, mailbox):
    reader = UserFactory(username="leserin")
    SignerCardFactory(user=reader)
    MembershipFactory(mailbox=mailbox, user=reader, role=Membership.Role.READER)
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-create")).content.decode()
    assert f'<option value="{physician.pk}"' in page
    assert f'<option value="{outsider.pk}"' not in page and f'<option value="{reader.pk}"' not in page


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["other department", "reader only", "former member"])
def test_a_forged_post_naming_a_signer_outside_the_department_is_refused(
    client, assistant, physician, outsider, mailbox, kind
):
    if kind == "other department":
        chosen = outsider
    elif kind == "reader only":
        chosen = outsider
        MembershipFactory(mailbox=mailbox, user=outsider, role=Membership.Role.READER)
    else:
        chosen = physician
        _leave(physician, mailbox)
    client.force_login(assistant)
    response = client.post(
        reverse("signing:draft-create"),
        {**_form_data(chosen, mailbox), "document": SimpleUploadedFile("brief.txt", LETTER_TEXT)},
    )
    assert response.status_code == 422
    assert "kann nicht als Unterzeichner gewählt werden" in response.content.decode()
    assert not Draft.objects.exists()
    assert not AuditEvent.objects.filter(action="signing.draft_created").exists()


@pytest.mark.django_db
def test_the_form_checks_the_signer_against_the_mailbox_chosen(client, assistant, physician, mailbox):
    """Both are members somewhere the assistant sends from, but the physician does not sign for the second one."""
    second = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=second, user=assistant, role=Membership.Role.PROCESSOR)
    client.force_login(assistant)
    response = client.post(
        reverse("signing:draft-create"),
        {**_form_data(physician, second), "document": SimpleUploadedFile("brief.txt", LETTER_TEXT)},
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "Anna Sommer kann für das Postfach „Kardiologie“ nicht signieren" in page
    assert not Draft.objects.exists()


@pytest.mark.django_db
def test_the_service_refuses_a_signer_outside_the_department(assistant, outsider, mailbox):
    data = DraftData(
        document_type="earztbrief", patient_reference="Muster", signer=outsider, mailbox=mailbox, subject="Brief"
    )
    with pytest.raises(PortalError, match="kann für das Postfach „Innere Medizin“ nicht signieren"):
        draft_create(author=assistant, data=data, document=document_check(LETTER_TEXT, "brief.txt"))
    assert not Draft.objects.exists()


@pytest.mark.django_db
def test_an_edit_cannot_move_the_draft_to_an_outsider(client, assistant, physician, outsider, mailbox):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, **TEXT)
    before = _snapshot(letter)
    client.force_login(assistant)
    response = client.post(
        reverse("signing:draft-edit", args=[letter.pk]), {**_form_data(outsider, mailbox), "version": 1}
    )
    assert response.status_code == 422
    assert "kann nicht als Unterzeichner gewählt werden" in response.content.decode()
    assert _snapshot(letter) == before


# --- a signer who left: the draft waits for its author to choose another -------------------------------------------


@pytest.mark.django_db
def test_when_the_signer_left_the_author_is_told_and_chooses_another(client, assistant, physician, mailbox):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox, **TEXT)
    _leave(physician, mailbox)
    client.force_login(assistant)
    detail = client.get(reverse("signing:draft-detail", args=[letter.pk])).content.decode()
    assert 'id="signer-gone"' in detail and "Anna Sommer kann für dieses Postfach nicht mehr signieren" in detail
    listing = client.get(reverse("signing:drafts")).content.decode()
    assert f'id="signer-gone-{letter.pk}"' in listing
    # Keeping the signer who left is refused with the reason; nothing changes.
    refused = client.post(
        reverse("signing:draft-edit", args=[letter.pk]),
        {**_form_data(physician, mailbox), "subject": "Neu", "version": 1},
    )
    assert refused.status_code == 422 and "kann nicht als Unterzeichner gewählt werden" in refused.content.decode()
    assert _snapshot(letter)[0] == 1
    # Another physician of the department: the draft is theirs to sign, the change on the trail with the signer.
    colleague = UserFactory(username="kollege", first_name="Karl", last_name="Kollege")
    SignerCardFactory(user=colleague)
    MembershipFactory(mailbox=mailbox, user=colleague, role=Membership.Role.PROCESSOR)
    done = client.post(
        reverse("signing:draft-edit", args=[letter.pk]), {**_form_data(colleague, mailbox), "version": 1}
    )
    assert done.status_code == 302
    fresh = Draft.objects.get(pk=letter.pk)
    assert (fresh.signer_id, fresh.version) == (colleague.pk, 2)
    event = AuditEvent.objects.filter(action="signing.draft_changed", details__draft=letter.pk).get()
    assert event.details["signer"] == colleague.pk and "signer" in event.details["fields"]
    assert 'id="signer-gone"' not in client.get(reverse("signing:draft-detail", args=[letter.pk])).content.decode()


@pytest.mark.django_db
def test_the_author_may_still_withdraw_a_draft_whose_signer_left(client, assistant, physician, mailbox):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    _leave(physician, mailbox)
    client.force_login(assistant)
    client.post(reverse("signing:draft-withdraw", args=[letter.pk]), {"reason": "Unterzeichner gewechselt"})
    assert Draft.objects.get(pk=letter.pk).state == Draft.State.WITHDRAWN


@pytest.mark.django_db
def test_the_signer_gone_flag_costs_one_query_for_the_whole_list(
    client, assistant, physician, mailbox, django_assert_max_num_queries
):
    for _ in range(15):
        DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    client.force_login(assistant)
    with django_assert_max_num_queries(12):
        page = client.get(reverse("signing:drafts")).content.decode()
    assert "signer-gone-" not in page
    _leave(physician, mailbox)
    page = client.get(reverse("signing:drafts")).content.decode()
    assert page.count('class="error signer-gone"') == 15


# --- notifications quote subject and patient: shown only while a member ------------------------------------------


@pytest.mark.django_db
def test_the_ex_signers_bell_and_notifications_no_longer_name_the_draft(client, assistant, physician, mailbox):
    data = DraftData(
        document_type="earztbrief",
        patient_reference="Frau Xylander",
        signer=physician,
        mailbox=mailbox,
        subject="Entlassbrief",
        recipients=["praxis@praxis-test.kim.telematik-test"],
    )
    draft_create(author=assistant, data=data, document=document_check(LETTER_TEXT, "brief.txt"))
    client.force_login(physician)
    assert user_counters(physician)["notifications"] == 1
    assert "Frau Xylander" in client.get(reverse("mailbox:notifications")).content.decode()
    _leave(physician, mailbox)
    assert user_counters(physician)["notifications"] == 0
    assert "Frau Xylander" not in client.get(reverse("mailbox:notifications")).content.decode()
    assert Notification.objects.filter(user=physician).count() == 1  # the row stays (audit), it is not shown
    # Back in the department, it shows again.
    MembershipFactory(mailbox=mailbox, user=physician, role=Membership.Role.PROCESSOR)
    assert "Frau Xylander" in client.get(reverse("mailbox:notifications")).content.decode()


@pytest.mark.django_db
def test_older_notifications_get_their_drafts_mailbox(assistant, physician, mailbox):
    migration = importlib.import_module("signing.migrations.0009_notification_mailbox_id")
    draft = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    old = Notification.objects.create(user=physician, kind="signing_queued", params={"draft": draft.pk}, text="x")
    odd = [
        Notification.objects.create(user=physician, kind="review_requested", params=params, text="x")
        for params in ({"draft": True}, {"draft": [draft.pk]}, {"draft": 999_999}, {"name": "ohne Entwurf"})
    ]
    other = Notification.objects.create(user=physician, kind="mention", params={"draft": draft.pk}, text="x")
    migration.add_mailbox_id(django_apps, None)
    old.refresh_from_db()
    assert old.params == {"draft": draft.pk, "mailbox_id": mailbox.pk}
    for n in [*odd, other]:
        assert "mailbox_id" not in Notification.objects.get(pk=n.pk).params


# --- the batch page and the queue's socket ------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_batch_page_no_longer_names_drafts_of_a_department_left(client, assistant, physician, mailbox, workplace):
    letter = DraftFactory(author=assistant, signer=physician, mailbox=mailbox)
    batch = SignatureBatch.objects.create(signer=physician, workplace=workplace, total=1, state="done")
    BatchItem.objects.create(
        batch=batch, draft=letter, position=0, request_id="D1-V1", document_version=1, document_sha256=letter.sha256
    )
    client.force_login(physician)
    assert letter.patient_reference in client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    _leave(physician, mailbox)
    page = client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    assert letter.patient_reference not in page and letter.subject not in page
    assert "Entwurf nicht mehr zugänglich" in page


@pytest_asyncio.fixture
async def _close_async_connection():
    yield
    await database_sync_to_async(lambda: connection.close())()


@pytest.mark.usefixtures("_close_async_connection")
@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_queue_socket_of_an_ex_member_announces_nothing(mailbox):
    def world():
        author = UserFactory(username="verfasserin")
        signer = UserFactory(username="unterzeichner")
        SignerCardFactory(user=signer)
        letter = DraftFactory(author=author, signer=signer, mailbox=mailbox, subject="Brief an Frau Muster")
        return signer, letter

    signer, letter = await database_sync_to_async(world)()
    socket = WebsocketCommunicator(QueueConsumer.as_asgi(), "/")
    socket.scope["user"] = signer
    connected, _code = await socket.connect(timeout=5)
    assert connected
    try:
        await database_sync_to_async(events.broadcast_drafts_changed)(user_ids=[signer.pk], draft_ids=[letter.pk])
        assert f'data-drafts="{letter.pk}"' in await socket.receive_from(timeout=5)  # a member is told
        await database_sync_to_async(_leave)(signer, mailbox)
        await database_sync_to_async(events.broadcast_drafts_changed)(user_ids=[signer.pk], draft_ids=[letter.pk])
        assert await socket.receive_nothing(timeout=0.5)
    finally:
        await socket.disconnect()


# --- a signer who leaves between queueing and signing -------------------------------------------------------------


def _assert_refused(drafts: list[Draft], batch: SignatureBatch) -> None:
    for d in drafts:
        fresh = Draft.objects.get(pk=d.pk)
        # Back in the queue (an open state) with the reason; no signature is kept.
        assert fresh.is_open and fresh.state == Draft.State.FAILED, fresh.state
        assert "darf für das Absender-Postfach nicht mehr signieren" in fresh.last_error_text
        assert not Signature.objects.filter(draft=d).exists()
        item = BatchItem.objects.get(batch=batch, draft=d)
        assert item.state == BatchItem.State.FAILED and "nicht mehr signieren" in item.text_shown
        event = AuditEvent.objects.get(action="signing.sign_failed", details__draft=d.pk)
        assert event.details["reason"] == "signer_not_allowed"


@pytest.mark.django_db
def test_a_signer_removed_after_queueing_signs_nothing_of_that_department(
    konnektor_sim, use_sim, signer, assistant, mailbox, sim_workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=2)
    other = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=other, user=assistant, role=Membership.Role.PROCESSOR)
    left = plain_letters(3, signer=signer, author=assistant, mailbox=mailbox)
    kept = plain_letters(2, signer=signer, author=assistant, mailbox=other)
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_create(
            signer=signer, workplace=sim_workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in left + kept]
        )
    _leave(signer, mailbox)  # while the batch waits for its worker
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 2, 3)
    assert batch.calls_done == batch.calls_total
    signed_ids = {s.request_id for s in konnektor_sim.signed_requests}
    assert signed_ids == {f"D{d.pk}-V{d.version}" for d in kept}  # the card never saw the others
    assert all(Draft.objects.get(pk=d.pk).state == Draft.State.SIGNED for d in kept)
    _assert_refused(left, batch)


@pytest.mark.django_db(transaction=True)
def test_a_signer_removed_while_the_terminal_waits_for_the_pin_gets_no_signature_used(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, sim_workplace, monkeypatch
):
    """The card signs once the PIN is typed, but the portal asks again when the answer comes: a signature for a
    department the signer has left in the meantime is not kept, and the draft stays in the queue."""
    sim = use_sim(konnektor_sim_factory(auto_pin=None))
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)
    with transaction.atomic():
        batch = batch_create(
            signer=signer, workplace=sim_workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )

    def work() -> None:
        try:
            batch_run(batch.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=work)
    worker.start()
    terminal = sim.terminal(CT_ID)
    try:
        deadline = time.monotonic() + 20
        while not terminal.waiting and time.monotonic() < deadline:
            time.sleep(0.05)
        assert terminal.waiting
        _leave(signer, mailbox)
        terminal.enter_pin(PIN)
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 0, 2)
    assert len(sim.signed_requests) == 2  # the card did sign ...
    _assert_refused(drafts, batch)  # ... and the portal used none of it


def _missing_document_batch(signer, assistant, mailbox, sim_workplace, capture):
    """A batch over two departments that stopped before the PIN: the letter of `mailbox` was gone from the store."""
    other = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=other, user=assistant, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=other, user=signer, role=Membership.Role.PROCESSOR)
    gone = DraftFactory(author=assistant, signer=signer, mailbox=mailbox, filename="Muster-Erika-Entlassbrief.txt")
    kept = DraftFactory(author=assistant, signer=signer, mailbox=other, filename="brief-kardio.txt")
    with capture(execute=False):
        batch = batch_create(
            signer=signer, workplace=sim_workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in (gone, kept)]
        )
    blob_path(gone.sha256).unlink()
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert batch.state == "failed" and gone.filename in batch.error_shown
    return batch, gone


@pytest.mark.django_db
def test_an_old_batch_names_a_missing_document_only_while_its_draft_is_visible(
    client, konnektor_sim, use_sim, signer, assistant, mailbox, sim_workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    batch, gone = _missing_document_batch(signer, assistant, mailbox, sim_workplace, django_capture_on_commit_callbacks)
    client.force_login(signer)
    page = client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    assert gone.filename in page  # a member still sees which document is missing
    _leave(signer, mailbox)
    for url in (reverse("signing:batch", args=[batch.pk]), reverse("signing:batches")):
        page = client.get(url).content.decode()
        assert gone.filename not in page, url
        assert "fehlt im Speicher oder ist beschädigt" in page, url


@pytest.mark.django_db
def test_a_batch_stored_before_the_draft_was_kept_with_the_reason_names_no_document_left(
    client, signer, mailbox, workplace
):
    """Rows written before a missing document's draft was kept with the reason carry its file name only: it is
    shown only when a draft of the batch the user sees now has that name."""
    letter = DraftFactory(signer=signer, mailbox=mailbox, filename="Muster-Erika-Entlassbrief.txt")
    legacy = {
        "msgid": "Ein Dokument fehlt im Speicher oder ist beschädigt: %(name)s",
        "params": {"name": letter.filename},
    }
    batch = SignatureBatch.objects.create(
        signer=signer, workplace=workplace, total=1, state="failed", error_text=legacy
    )
    BatchItem.objects.create(
        batch=batch,
        draft=letter,
        position=0,
        request_id="D1-V1",
        document_version=1,
        document_sha256=letter.sha256,
        state="not_signed",
        text=legacy,
    )
    client.force_login(signer)
    assert letter.filename in client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    _leave(signer, mailbox)
    for url in (reverse("signing:batch", args=[batch.pk]), reverse("signing:batches")):
        page = client.get(url).content.decode()
        assert letter.filename not in page, url
        assert "fehlt im Speicher oder ist beschädigt" in page, url


@pytest.mark.django_db
def test_a_missing_document_is_named_on_its_own_draft_only(
    client, konnektor_sim, use_sim, signer, assistant, mailbox, sim_workplace, django_capture_on_commit_callbacks
):
    """Every letter of a stopped batch goes back with the reason; a letter of another department must not carry
    the missing document's file name to readers who may not see that document."""
    use_sim(konnektor_sim)
    other = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=other, user=signer, role=Membership.Role.PROCESSOR)
    kardio = UserFactory(username="kardio")
    MembershipFactory(mailbox=other, user=kardio, role=Membership.Role.PROCESSOR)
    gone = DraftFactory(author=assistant, signer=signer, mailbox=mailbox, filename="Muster-Erika-Entlassbrief.txt")
    kept = DraftFactory(author=kardio, signer=signer, mailbox=other, filename="brief-kardio.txt")
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_create(
            signer=signer, workplace=sim_workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in (gone, kept)]
        )
    blob_path(gone.sha256).unlink()
    batch_run(batch.pk)
    assert gone.filename in Draft.objects.get(pk=gone.pk).last_error_text  # its own readers learn which one
    client.force_login(kardio)
    for url in (reverse("signing:draft-detail", args=[kept.pk]), reverse("signing:drafts")):
        page = client.get(url).content.decode()
        assert gone.filename not in page, url
        assert "fehlt im Speicher oder ist beschädigt" in page, url


@pytest.mark.django_db
def test_a_draft_given_another_documents_named_reason_before_the_rule_shows_it_without_the_name(
    client, signer, mailbox
):
    """Rows written before a stopped batch named the missing document on its own draft only: every draft of the
    batch kept the named reason. Its pages show the file name only where it is that draft's own."""
    kardio = UserFactory(username="kardio")
    other = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=other, user=kardio, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=other, user=signer, role=Membership.Role.PROCESSOR)
    legacy = {
        "msgid": "Ein Dokument fehlt im Speicher oder ist beschädigt: %(name)s",
        "params": {"name": "Muster-Erika-Entlassbrief.txt"},
    }
    kept = DraftFactory(author=kardio, signer=signer, mailbox=other, filename="brief-kardio.txt", last_error=legacy)
    client.force_login(kardio)
    for url in (reverse("signing:draft-detail", args=[kept.pk]), reverse("signing:drafts")):
        page = client.get(url).content.decode()
        assert "Muster-Erika-Entlassbrief.txt" not in page, url
        assert "fehlt im Speicher oder ist beschädigt" in page, url
