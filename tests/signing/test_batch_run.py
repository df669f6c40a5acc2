"""The batch task against the simulated Konnektor over its real sockets: discovery, the physician's card, PIN
status, job number, SignDocument calls, every signature checked locally; each fault leaves the drafts intact in the
queue with its German text."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time

import pytest
from billiard.pool import SIG_SOFT_TIMEOUT, soft_timeout_sighandler
from django.db import connections, transaction

from audit.models import AuditEvent
from konnektor import KonnektorClient, error_text
from mailbox.storage import blob_get, blob_path
from signing.models import BatchItem, Draft, Signature, SignatureBatch, SignerCard
from signing.services import run as run_service
from signing.services.batch import Selected, batch_cancel, batch_create
from signing.services.cards import signer_card_remove
from signing.services.run import batch_run
from signing.services.verify import verify_cades_detached, verify_pades
from signing.tasks import signing_batch_run
from tests.fixtures.konnektor_sim import CT_ID, HBA_TELEMATIK_ID, PIN, WORKPLACE
from tests.signing.documents import make_pdf
from tests.signing.factories import DraftFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def workplace(sim_workplace):
    return sim_workplace


def _drafts(n, signer, assistant, mailbox, *, pdf=False):
    if pdf:
        return [
            DraftFactory(author=assistant, signer=signer, mailbox=mailbox, content=make_pdf(f"Brief {i}"))
            for i in range(n)
        ]
    return [
        DraftFactory(
            author=assistant,
            signer=signer,
            mailbox=mailbox,
            content=f"Arztbrief Nr. {i}\nBefund unauffällig.\n".encode(),
            mime_type="text/plain",
            filename=f"brief-{i}.txt",
        )
        for i in range(n)
    ]


def _start(signer, workplace, drafts, django_capture_on_commit_callbacks) -> SignatureBatch:
    # The task is not run on commit here: the tests call it themselves, as the worker would.
    with django_capture_on_commit_callbacks(execute=False):
        return batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )


def test_250_documents_with_one_pin_entry_every_signature_verified(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=250)
    drafts = _drafts(250, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)

    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count, batch.error_text) == ("done", 250, 0, "")
    assert batch.calls_total == 1 and len(batch.job_number) == 7
    signed = konnektor_sim.signed_requests
    assert {s.job_number for s in signed} == {batch.job_number}  # one SignDocument, one PIN entry
    assert {s.sub_batch for s in signed} == {1}
    assert {s.workplace_id for s in signed} == {WORKPLACE}
    assert all(s.include_revocation_info for s in signed)
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNED}
    card_cert = konnektor_sim.cards[0].certificate_der
    for signature in Signature.objects.select_related("draft"):
        assert signature.verified and signature.format == Signature.Format.CADES
        document = blob_get(signature.draft.sha256)
        # Checked once more here, independently of the stored verdict.
        verify_cades_detached(
            document=document,
            cms_der=blob_get(signature.sha256),
            card_certificates=[card_cert],
            ca_pem=konnektor_sim.qes_ca_pem,
        )
        assert bytes(signature.signer_certificate) == card_cert
    assert AuditEvent.objects.filter(action="signing.signed").count() == 250
    assert AuditEvent.objects.get(action="signing.batch_finished").details["signed"] == 250


def test_pdfs_are_signed_as_pades_and_text_as_detached_cades(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    pdfs = _drafts(2, signer, assistant, mailbox, pdf=True)
    texts = _drafts(2, signer, assistant, mailbox)
    batch = _start(signer, workplace, [*pdfs, *texts], django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == ("done", 4)
    # No mixing of signature types in one call: two calls, each its own job number and PIN entry.
    assert batch.calls_total == 2 and len({s.job_number for s in konnektor_sim.signed_requests}) == 2
    for draft in pdfs:
        signature = Signature.objects.get(draft=draft)
        assert signature.format == Signature.Format.PADES
        signed_pdf = blob_get(signature.sha256)
        assert signed_pdf.startswith(blob_get(draft.sha256))
        verify_pades(
            document=blob_get(draft.sha256),
            signed_pdf=signed_pdf,
            card_certificates=[bytes(signature.signer_certificate)],
            ca_pem=konnektor_sim.qes_ca_pem,
        )
    assert {Signature.objects.get(draft=d).format for d in texts} == {Signature.Format.CADES}


def test_the_signed_result_is_shown_and_downloaded_with_an_audit_event(
    client, konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    from django.urls import reverse

    use_sim(konnektor_sim)
    (draft,) = _drafts(1, signer, assistant, mailbox, pdf=True)
    batch_run(_start(signer, workplace, [draft], django_capture_on_commit_callbacks).pk)
    client.force_login(assistant)
    page = client.get(reverse("signing:draft-detail", args=[draft.pk])).content.decode()
    assert "signiert – wartet auf Versand" in page and "lokal geprüft" in page and 'id="sign-one-form"' not in page
    response = client.get(reverse("signing:draft-signed", args=[draft.pk]))
    body = b"".join(response.streaming_content)
    assert response.status_code == 200 and body == blob_get(Signature.objects.get(draft=draft).sha256)
    assert 'filename="' + draft.filename in response["Content-Disposition"]
    viewed = AuditEvent.objects.get(action="signing.document_viewed", actor_id=assistant.pk)
    assert viewed.details["download"] is True


def test_a_signature_that_does_not_check_out_is_not_used(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, tmp_path
):
    # Another CA as the trust: every signature from the card fails the local check and nothing is used.
    from tisim.konnektor.pki import Pki

    other = Pki(tmp_path / "other-pki")
    use_sim(konnektor_sim)
    (tmp_path / "qes-ca.pem").write_bytes(other.qes_ca.cert_pem)
    drafts = _drafts(2, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 0, 2)
    assert not Signature.objects.exists()
    for draft in Draft.objects.all():
        assert draft.state == Draft.State.FAILED
        assert "vertrauenswürdigen QES-Zertifizierungsstelle" in draft.last_error_text


@pytest.mark.parametrize(
    ("fault", "params", "code"),
    [
        ("pin-timeout", {}, 4043),
        ("user-cancel", {}, 4049),
        ("wrong-pin", {}, 4085),
        ("card-removed", {"after": 1}, 4008),
        ("card-busy", {}, 4060),
        ("card-busy", {"code": 4093}, 4093),
        ("transport-pin", {}, 4065),
        ("hba-other-user", {}, 4018),
        ("job-number-reused", {}, 4252),
    ],
)
def test_each_fault_leaves_the_drafts_intact_with_its_german_text(
    konnektor_sim,
    use_sim,
    signer,
    assistant,
    mailbox,
    workplace,
    django_capture_on_commit_callbacks,
    fault,
    params,
    code,
):
    use_sim(konnektor_sim)
    drafts = _drafts(3, signer, assistant, mailbox)
    before = {d.pk: (d.sha256, d.version) for d in drafts}
    konnektor_sim.arm_fault(fault, **params)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)

    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.FAILED
    assert batch.error_code == code
    assert batch.error_shown.startswith(error_text(code)) and batch.error_shown
    if fault == "wrong-pin":
        assert "Noch 2 Versuche" in batch.error_shown
    assert batch.signed_count == 0 and not Signature.objects.exists()
    for draft in Draft.objects.all():
        # Back in the queue, unchanged, with the reason.
        assert (draft.state, draft.sha256, draft.version) == (Draft.State.DRAFT, *before[draft.pk])
        assert draft.last_error_text.startswith(error_text(code)) and draft.last_error_code == code
    assert set(BatchItem.objects.values_list("state", flat=True)) == {BatchItem.State.NOT_SIGNED}
    assert AuditEvent.objects.get(action="signing.batch_finished").details["code"] == code


def test_the_third_wrong_pin_says_the_pin_is_now_blocked(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    konnektor_sim.cards[0].left_tries = 1
    konnektor_sim.arm_fault("wrong-pin")
    batch = _start(signer, workplace, _drafts(1, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.error_code, batch.error_shown) == (4063, error_text(4063))


def test_an_unreachable_konnektor_leaves_everything_as_it_was(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    konnektor_sim.stop()
    drafts = _drafts(2, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert batch.state == "failed" and batch.error_code is None and "Konnektor" in batch.error_shown
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}


def test_blocked_pin_is_explained_before_anything_is_sent(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    konnektor_sim.cards[0].pin_state = "BLOCKED"
    drafts = _drafts(2, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.error_code, batch.job_number) == ("failed", 4063, "")
    assert "gesperrt" in batch.error_shown
    assert not konnektor_sim.signed_requests
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}


def test_a_card_nobody_inserted_is_explained(
    konnektor_sim, use_sim, physician, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)  # the physician's mapped Telematik-ID is not the card's
    drafts = _drafts(1, physician, assistant, mailbox)
    batch = _start(physician, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert batch.state == "failed" and "steckt in keinem Kartenterminal" in batch.error_shown
    assert Draft.objects.get().state == Draft.State.DRAFT


def test_partial_results_signed_ones_proceed_the_failed_stay_with_the_reason(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    drafts = _drafts(4, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    bad = BatchItem.objects.get(batch=batch, draft=drafts[2])
    konnektor_sim.arm_fault("fail-request", request_id=bad.request_id, code=4123)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 3, 1)
    failed = Draft.objects.get(pk=drafts[2].pk)
    assert failed.state == Draft.State.FAILED and failed.last_error_code == 4123
    assert failed.last_error_text == error_text(4123)
    assert {d.state for d in Draft.objects.exclude(pk=failed.pk)} == {Draft.State.SIGNED}
    # The failed one can be signed again in a new batch.
    batch2 = _start(signer, workplace, [failed], django_capture_on_commit_callbacks)
    batch_run(batch2.pk)
    assert Draft.objects.get(pk=failed.pk).state == Draft.State.SIGNED


def test_sub_batches_within_one_call_ask_for_the_pin_again(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    sim = use_sim(konnektor_sim_factory(signatures_per_pin=2), KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=50)
    drafts = _drafts(5, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == ("done", 5)
    assert {s.sub_batch for s in sim.signed_requests} == {1, 2, 3}


def test_calls_split_by_the_configured_limit_each_with_its_own_job_number(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=2)
    drafts = _drafts(5, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.calls_total, batch.calls_done) == ("done", 5, 3, 3)
    assert len({s.job_number for s in konnektor_sim.signed_requests}) == 3


def test_a_batch_runs_once_even_if_the_task_comes_twice(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)
    drafts = _drafts(2, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch_run(batch.pk)
    assert len(konnektor_sim.signed_requests) == 2 and Signature.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_cancel_while_the_terminal_waits_for_the_pin(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, monkeypatch
):
    sim = use_sim(konnektor_sim_factory(auto_pin=None))
    drafts = _drafts(3, signer, assistant, mailbox)
    # Committed (the worker thread must see it), without sending the task: this test is the worker.
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)
    with transaction.atomic():
        batch = batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )

    def work() -> None:
        try:
            batch_run(batch.pk)
        finally:
            connections.close_all()  # this thread's connection must not outlive the test database

    worker = threading.Thread(target=work)
    worker.start()
    terminal = sim.terminal(CT_ID)
    deadline = time.monotonic() + 20
    while not terminal.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert terminal.waiting
    batch.refresh_from_db()
    # The page shows the job number before SignDocument returns, exactly as the terminal does.
    assert batch.state == SignatureBatch.State.PIN and f"#{batch.job_number}" == terminal.display[0]
    batch_cancel(user=signer, batch=batch)
    worker.join(timeout=20)
    assert not worker.is_alive()
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.CANCELLED and batch.signed_count == 0
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}
    assert not sim.signed_requests
    assert AuditEvent.objects.filter(action="signing.batch_cancel_requested", actor_id=signer.pk).exists()


@pytest.mark.parametrize("cancelled_in_call", [1, 2])
def test_a_cancel_while_a_calls_documents_are_read_sends_that_call_no_more(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, monkeypatch, cancelled_in_call
):
    # The PIN is typed at once (auto_pin): a SignDocument sent after the cancel would sign.
    sim = use_sim(konnektor_sim_factory(), KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=2)
    drafts = _drafts(4, signer, assistant, mailbox)
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)
    batch = batch_create(
        signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
    )
    read = run_service._sign_item
    calls = []

    def reading(item, **kwargs):
        # The physician presses "Abbrechen" while the worker reads the documents of this call: the cancel finds
        # no job number of this call yet to stop.
        if "content" not in kwargs and item.position % 2 == 0:  # the bytes of a call's first document
            calls.append(item.position)
            if len(calls) == cancelled_in_call:
                batch_cancel(user=signer, batch=SignatureBatch.objects.get(pk=batch.pk))
        return read(item, **kwargs)

    monkeypatch.setattr(run_service, "_sign_item", reading)
    batch_run(batch.pk)

    batch.refresh_from_db()
    signed = 2 * (cancelled_in_call - 1)
    assert (batch.state, batch.signed_count) == (SignatureBatch.State.CANCELLED, signed)
    assert len(sim.signed_requests) == signed
    assert Draft.objects.filter(state=Draft.State.SIGNED).count() == signed
    assert Draft.objects.filter(state=Draft.State.DRAFT).count() == 4 - signed


def test_an_ehba_mapping_removed_while_a_calls_documents_are_read_sends_that_call_no_more(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, manager, monkeypatch
):
    sim = use_sim(konnektor_sim_factory())  # the PIN is typed at once: a SignDocument sent now would sign
    drafts = _drafts(2, signer, assistant, mailbox)
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)
    batch = batch_create(
        signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
    )
    read = run_service._sign_item

    def reading(item, **kwargs):
        # The manager removes the mapping (card lost) while the worker reads the call's documents.
        if "content" not in kwargs and SignerCard.objects.filter(user=signer).exists():
            signer_card_remove(manager=manager, card=SignerCard.objects.get(user=signer))
        return read(item, **kwargs)

    monkeypatch.setattr(run_service, "_sign_item", reading)
    batch_run(batch.pk)

    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == (SignatureBatch.State.FAILED, 0)
    assert "kein eHBA mehr zugeordnet" in batch.error_shown
    assert not sim.signed_requests
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}


@pytest.mark.parametrize("mode", ["basic", "cert"])
def test_the_secured_connection_modes_from_the_settings(
    konnektor_sim_factory,
    use_sim,
    signer,
    assistant,
    mailbox,
    workplace,
    django_capture_on_commit_callbacks,
    tmp_path,
    mode,
):
    sim = konnektor_sim_factory(mode=mode)
    ca = tmp_path / "konnektor-ca.pem"
    ca.write_bytes(sim.server_ca_pem)
    extra = {"KIMPORTAL_KONNEKTOR_CA": str(ca)}
    if mode == "basic":
        extra.update(KIMPORTAL_KONNEKTOR_USER=sim.basic_user, KIMPORTAL_KONNEKTOR_PASSWORD=sim.basic_password)
    else:
        cert_pem, key_pem = sim.issue_client_certificate("KIMPortal")
        (tmp_path / "client.pem").write_bytes(cert_pem)
        (tmp_path / "client.key").write_bytes(key_pem)
        extra.update(
            KIMPORTAL_KONNEKTOR_CLIENT_CERT=str(tmp_path / "client.pem"),
            KIMPORTAL_KONNEKTOR_CLIENT_KEY=str(tmp_path / "client.key"),
        )
    use_sim(sim, **extra)
    batch = _start(signer, workplace, _drafts(2, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == ("done", 2)


def test_starting_a_batch_queues_the_registered_task(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    """The service names the task; in eager mode (one-process setups) the registered task runs in place."""
    from celery import current_app

    use_sim(konnektor_sim)
    drafts = _drafts(2, signer, assistant, mailbox)
    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            batch = batch_create(
                signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
            )
    finally:
        current_app.conf.task_always_eager = eager
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == ("done", 2)


def test_a_g21_card_signs_with_its_ecc_key_and_that_certificate_is_the_cards(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    from tests.fixtures.konnektor_sim import HBA_HOLDER, PIN

    sim = konnektor_sim_factory(hba=False)
    card = sim.add_hba(HBA_HOLDER, HBA_TELEMATIK_ID, pin=PIN, ct_id=CT_ID, workplaces=(WORKPLACE,), generation="G2.1")
    use_sim(sim)
    drafts = [*_drafts(1, signer, assistant, mailbox), *_drafts(1, signer, assistant, mailbox, pdf=True)]
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 2, 0)
    used = {bytes(s.signer_certificate) for s in Signature.objects.all()}
    assert used and card.certificate_der not in used  # not the RSA certificate ReadCardCertificate names first


def test_a_big_batch_holds_one_calls_documents_at_a_time(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, monkeypatch
):
    """250 documents of up to 25 MB each: read all at once they would be gigabytes in the worker. Each call's
    documents are read when that call comes (the calls are planned by the documents' sizes)."""
    use_sim(konnektor_sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=2)
    drafts = _drafts(5, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    read: list[str] = []
    read_before_call: list[int] = []
    real_get, real_sign = run_service.blob_get, KonnektorClient.sign_documents

    def counting_get(sha256):
        read.append(sha256)
        return real_get(sha256)

    def noting_sign(self, ctx, card_handle, job_number, items):
        read_before_call.append(len(read))
        return real_sign(self, ctx, card_handle, job_number, items)

    monkeypatch.setattr(run_service, "blob_get", counting_get)
    monkeypatch.setattr(KonnektorClient, "sign_documents", noting_sign)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.calls_total) == ("done", 5, 3)
    assert read_before_call == [2, 4, 5]
    assert len(read) == 5


def test_a_document_gone_from_the_store_stops_the_batch_before_the_pin(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=1)
    drafts = _drafts(3, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    blob_path(drafts[2].sha256).unlink()
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert batch.state == "failed" and batch.job_number == ""
    assert batch.error_shown == f"Ein Dokument fehlt im Speicher oder ist beschädigt: {drafts[2].filename}"
    assert not konnektor_sim.signed_requests
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.DRAFT}
    # The missing one is named on its own draft; the others are told without a name (their readers may be
    # another department's).
    reasons = {d.pk: d.last_error_text for d in Draft.objects.all()}
    assert reasons.pop(drafts[2].pk) == batch.error_shown
    assert set(reasons.values()) == {"Ein Dokument dieses Signaturvorgangs fehlt im Speicher oder ist beschädigt."}


def test_a_timeout_while_the_terminal_asks_for_the_pin_ends_that_job_too(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    """The portal gives up waiting for SignDocument; the terminal must stop asking for the PIN of a batch that has
    ended (else a PIN typed late signs documents nobody uses, and the card stays busy for the next start)."""
    sim = use_sim(konnektor_sim_factory(auto_pin=None), KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT=1.5)
    drafts = _drafts(2, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert batch.state == "failed" and "nicht innerhalb von 1.5 Sekunden" in batch.error_shown
    assert all(d.state == Draft.State.DRAFT and d.last_error_text == batch.error_shown for d in Draft.objects.all())
    terminal = sim.terminal(CT_ID)
    deadline = time.monotonic() + 5
    while terminal.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not terminal.waiting
    # Started again at once, the card is free and the PIN typed now signs the new batch.
    sim.auto_pin = PIN
    again = _start(signer, workplace, list(Draft.objects.all()), django_capture_on_commit_callbacks)
    batch_run(again.pk)
    again.refresh_from_db()
    assert (again.state, again.signed_count) == ("done", 2), again.error_text
    assert {s.job_number for s in sim.signed_requests} == {again.job_number}


@pytest.mark.parametrize("pdf", [False, True], ids=["cades", "pades"])
def test_a_signature_answered_for_another_document_is_not_used(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, monkeypatch, pdf
):
    """A Konnektor that mixes up its answers: each carries a real signature of the card, but under the RequestID of
    another document of the call. The answer is matched by RequestID and then checked against that document's own
    bytes, so neither signature is used and both letters stay in the queue with the reason."""
    use_sim(konnektor_sim)
    drafts = _drafts(2, signer, assistant, mailbox, pdf=pdf)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    real_sign = KonnektorClient.sign_documents

    def swapped(self, ctx, card_handle, job_number, items):
        first, second = real_sign(self, ctx, card_handle, job_number, items)
        return [
            dataclasses.replace(first, request_id=second.request_id),
            dataclasses.replace(second, request_id=first.request_id),
        ]

    monkeypatch.setattr(KonnektorClient, "sign_documents", swapped)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 0, 2)
    assert len(konnektor_sim.signed_requests) == 2 and not Signature.objects.exists()
    for draft in Draft.objects.all():
        assert draft.state == Draft.State.FAILED
        assert draft.last_error_text.startswith("Signatur bei der Prüfung abgelehnt")


def test_the_tasks_time_limit_ends_the_batch_with_a_clear_reason_and_stops_the_job(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    """The soft time limit as a Celery prefork child gets it: the pool sends SIGUSR1, billiard's handler raises
    SoftTimeLimitExceeded in the task, here while SignDocument waits for the PIN. The page says the batch took too
    long (not "Interner Fehler"), every letter is back in the queue unsigned, and the terminal asks no more."""
    sim = use_sim(konnektor_sim_factory(auto_pin=None))
    drafts = _drafts(3, signer, assistant, mailbox)
    batch = _start(signer, workplace, drafts, django_capture_on_commit_callbacks)
    terminal = sim.terminal(CT_ID)

    def pool_at_the_soft_limit() -> None:
        if terminal.wait_for_prompt(20):
            os.kill(os.getpid(), SIG_SOFT_TIMEOUT)

    previous = signal.signal(SIG_SOFT_TIMEOUT, soft_timeout_sighandler)
    pool = threading.Thread(target=pool_at_the_soft_limit)
    try:
        pool.start()
        signing_batch_run(batch.pk)
    finally:
        pool.join(timeout=30)
        signal.signal(SIG_SOFT_TIMEOUT, previous)
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.FAILED and batch.job_number
    assert batch.error_shown.startswith("Der Signaturvorgang hat zu lange gedauert")
    assert "Interner Fehler" not in batch.error_shown
    assert not terminal.waiting and terminal.display == ["Signatur abgebrochen"]
    assert not sim.signed_requests and not Signature.objects.exists()
    for draft in Draft.objects.all():
        assert (draft.state, draft.last_error_text) == (Draft.State.DRAFT, batch.error_shown)
    assert set(batch.items.values_list("state", flat=True)) == {BatchItem.State.NOT_SIGNED}
    finished = AuditEvent.objects.get(action="signing.batch_finished", details__batch=batch.pk)
    assert finished.details["not_signed"] == 3 and finished.details["text"] == batch.error_text


@pytest.mark.django_db(transaction=True)
def test_the_ehba_pulled_while_the_terminal_asks_for_the_pin(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, monkeypatch
):
    """The physician pulls the card while the terminal waits for the second call's PIN: the Konnektor ends the job
    (4008); what the first call signed is kept, the rest goes back to the queue with the German reason."""
    sim = use_sim(konnektor_sim_factory(auto_pin=None), KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=2)
    drafts = _drafts(4, signer, assistant, mailbox)
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)
    with transaction.atomic():
        batch = batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
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
        assert terminal.wait_for_prompt(20)
        terminal.enter_pin(PIN)
        deadline = time.monotonic() + 20
        while SignatureBatch.objects.get(pk=batch.pk).calls_done < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert terminal.wait_for_prompt(20)
        sim.remove_card(sim.cards[0])
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive() and not terminal.waiting
    batch.refresh_from_db()
    assert (batch.state, batch.error_code, batch.signed_count) == ("failed", 4008, 2)
    assert batch.error_shown == error_text(4008)
    states = sorted((d.state, d.last_error_text) for d in Draft.objects.all())
    assert states == [
        (Draft.State.DRAFT, error_text(4008)),
        (Draft.State.DRAFT, error_text(4008)),
        (Draft.State.SIGNED, ""),
        (Draft.State.SIGNED, ""),
    ]
