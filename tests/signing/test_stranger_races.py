"""Races and crashes around a batch, on PostgreSQL with real threads and processes and the simulated Konnektor
over its sockets: a double click, two tabs, an edit while signing starts, the Konnektor gone between two calls,
a worker killed while the terminal waits for the PIN, a signer deactivated before the worker starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.errors import PortalError
from konnektor import KonnektorClient
from signing.models import BatchItem, Draft, Signature, SignatureBatch, SignerCard
from signing.services import batch as batch_service
from signing.services.batch import Selected, batch_create
from signing.services.cards import signer_card_remove, signer_card_set
from signing.services.drafts import DraftData, draft_update
from signing.services.run import batch_run, batches_recover_stale
from tests.fixtures.konnektor_sim import CT_ID, MANDANT, PIN
from tests.signing.factories import plain_letters
from tests.signing.support import together

ROOT = Path(__file__).resolve().parents[2]
_REAL_ENQUEUE = batch_service._enqueue

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch):
    # Committed batches must not reach a broker: these tests are the worker themselves.
    monkeypatch.setattr("signing.services.batch._enqueue", lambda batch: None)


@pytest.fixture
def workplace(sim_workplace):
    return sim_workplace


@pytest.fixture
def use_sim(settings, tmp_path):
    def configure(sim, **overrides):
        ca = tmp_path / "qes-ca.pem"
        ca.write_bytes(sim.qes_ca_pem)
        values = {
            "KIMPORTAL_KONNEKTOR_URL": sim.base_url,
            "KIMPORTAL_KONNEKTOR_MODE": sim.mode,
            "KIMPORTAL_KONNEKTOR_MANDANT": MANDANT,
            "KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM": sim.client_system_id,
            "KIMPORTAL_KONNEKTOR_QES_CA": str(ca),
            "KIMPORTAL_KONNEKTOR_TIMEOUT": 10.0,
            "KIMPORTAL_KONNEKTOR_SIGN_TIMEOUT": 60.0,
            **overrides,
        }
        for name, value in values.items():
            setattr(settings, name, value)
        return values

    return configure


def _selection(drafts) -> list[str]:
    return [f"{d.pk}:{d.version}:{d.sha256}" for d in drafts]


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# --- two clicks, two tabs, an edit in between ---------------------------------------------------------------


@pytest.mark.parametrize("rounds", [5])
def test_a_double_click_starts_one_batch(signer, assistant, mailbox, workplace, rounds):
    for _ in range(rounds):
        drafts = plain_letters(3, signer=signer, author=assistant, mailbox=mailbox)
        clients = [Client(), Client()]
        for c in clients:
            c.force_login(signer)
        data = {"workplace": workplace.pk, "draft": _selection(drafts)}
        answers = together(*(lambda c=c, data=data: c.post(reverse("signing:batch-start"), data) for c in clients))
        assert all(getattr(a, "status_code", None) == 302 for a in answers), answers
        batches = SignatureBatch.objects.filter(items__draft__in=drafts).distinct()
        assert batches.count() == 1
        assert BatchItem.objects.filter(draft__in=drafts).count() == 3
        SignatureBatch.objects.filter(pk=batches.get().pk).update(state=SignatureBatch.State.DONE)


def test_two_tabs_with_different_letters_start_one_batch_at_a_time(signer, assistant, mailbox, workplace):
    first = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    second = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)

    def start(drafts):
        with transaction.atomic():
            return batch_create(
                signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
            )

    answers = together(lambda: start(first), lambda: start(second))
    started = [a for a in answers if isinstance(a, SignatureBatch)]
    refused = [a for a in answers if isinstance(a, PortalError)]
    assert len(started) == 1 and len(refused) == 1, answers
    assert "läuft bereits" in refused[0].message
    # The refused tab's letters are untouched in the queue.
    loser = second if started[0].items.filter(draft=first[0]).exists() else first
    assert {Draft.objects.get(pk=d.pk).state for d in loser} == {Draft.State.DRAFT}


def test_an_edit_racing_the_start_of_signing_never_both_win(signer, assistant, mailbox, workplace):
    """The author saves a new version while the physician presses "Signieren" on the old one: either the edit is
    refused (the draft is being signed) or the batch is (the draft changed) — never a signed old version with a
    saved new one, never a batch that signs the new one."""
    for _ in range(5):
        (draft,) = plain_letters(1, signer=signer, author=assistant, mailbox=mailbox)
        data = DraftData(
            document_type=draft.document_type,
            patient_reference=draft.patient_reference,
            signer=signer,
            mailbox=mailbox,
            subject="Neue Fassung",
            recipients=draft.recipients,
        )

        def edit(draft=draft, data=data):
            return draft_update(user=assistant, draft=draft, version=draft.version, data=data)

        def sign(draft=draft):
            with transaction.atomic():
                return batch_create(
                    signer=signer, workplace=workplace, selected=[Selected(draft.pk, draft.version, draft.sha256)]
                )

        edited, batch = together(edit, sign)
        fresh = Draft.objects.get(pk=draft.pk)
        if isinstance(batch, SignatureBatch):
            assert isinstance(edited, PortalError), edited
            assert (fresh.version, fresh.subject, fresh.state) == (1, draft.subject, Draft.State.SIGNING)
            SignatureBatch.objects.filter(pk=batch.pk).update(state=SignatureBatch.State.DONE)
        else:
            assert isinstance(batch, PortalError) and isinstance(edited, Draft), (edited, batch)
            assert (fresh.version, fresh.subject, fresh.state) == (2, "Neue Fassung", Draft.State.DRAFT)
            assert not BatchItem.objects.filter(draft=draft).exists()


# --- the Konnektor gone in the middle ------------------------------------------------------------------------


def _start(signer, workplace, drafts) -> SignatureBatch:
    with transaction.atomic():
        return batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )


def _worker(batch_id: int) -> threading.Thread:
    def work() -> None:
        try:
            batch_run(batch_id)
        finally:
            connections.close_all()

    thread = threading.Thread(target=work)
    thread.start()
    return thread


def test_the_konnektor_gone_between_two_calls_keeps_what_was_signed(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace
):
    sim = konnektor_sim_factory(auto_pin=None)
    use_sim(sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=2)
    drafts = plain_letters(4, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    worker = _worker(batch.pk)
    terminal = sim.terminal(CT_ID)
    try:
        _wait_for(lambda: terminal.waiting, 20, "the first PIN prompt")
        terminal.enter_pin(PIN)
        _wait_for(
            lambda: SignatureBatch.objects.get(pk=batch.pk).calls_done == 1 and terminal.waiting,
            20,
            "the second call's PIN prompt",
        )
        # The Konnektor crashes while the terminal waits for the second PIN: its sockets are cut without an
        # answer (the simulator's orderly stop() would answer the waiting call as cancelled at the terminal).
        sim._server.close_all()
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == (SignatureBatch.State.FAILED, 2)
    assert "Konnektor" in batch.error_shown
    states = {d.pk: Draft.objects.get(pk=d.pk) for d in drafts}
    signed = [d for d in states.values() if d.state == Draft.State.SIGNED]
    back = [d for d in states.values() if d.state == Draft.State.DRAFT]
    assert len(signed) == 2 and len(back) == 2
    assert all(Signature.objects.get(draft=d).verified for d in signed)
    assert all("Konnektor" in d.last_error_text for d in back)
    assert sorted(BatchItem.objects.filter(batch=batch).values_list("state", flat=True)) == [
        "not_signed",
        "not_signed",
        "signed",
        "signed",
    ]


# --- a worker killed while the terminal waits -----------------------------------------------------------------


def _subprocess_env(values: dict) -> dict[str, str]:
    db = django_settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["KIMPORTAL_BLOB_DIR"] = str(django_settings.KIMPORTAL_BLOB_DIR)
    env.update({k: str(v) for k, v in values.items()})
    return env


def test_a_worker_killed_mid_batch_gives_the_drafts_back(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, client, settings
):
    sim = konnektor_sim_factory(auto_pin=None)
    values = use_sim(sim)
    # A short heartbeat, for the worker (its environment) and for the recovery here.
    settings.KIMPORTAL_SIGNING_HEARTBEAT_SECONDS = 0.2
    values = {**values, "KIMPORTAL_SIGNING_HEARTBEAT_SECONDS": "0.2"}
    drafts = plain_letters(3, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    code = f"from signing.services.run import batch_run; batch_run({batch.pk})"
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=_subprocess_env(values),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    terminal = sim.terminal(CT_ID)

    def renewed() -> bool:
        fresh = SignatureBatch.objects.get(pk=batch.pk)
        return bool(fresh.started_at and fresh.heartbeat_at and fresh.heartbeat_at > fresh.started_at)

    try:
        _wait_for(lambda: terminal.waiting, 60, "the worker's PIN prompt")
        # While SignDocument blocks for the PIN, the worker's heartbeat goes on.
        _wait_for(renewed, 30, "a heartbeat while the terminal waits")
        worker.send_signal(signal.SIGKILL)
    finally:
        worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.PIN and batch.job_number
    assert {Draft.objects.get(pk=d.pk).state for d in drafts} == {Draft.State.SIGNING}

    # The worker is gone, the Konnektor still asks for the PIN of its job.
    assert terminal.waiting and terminal.job_number == batch.job_number
    # The heartbeat stopped with the worker: within six beats the beat task ends the batch, gives the letters back,
    # and stops the job: the terminal asks no more.
    _wait_for(lambda: batches_recover_stale() == 1, 30, "the recovery of the silent batch")
    assert not terminal.waiting
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.FAILED and "unterbrochen" in batch.error_shown
    for draft in drafts:
        fresh = Draft.objects.get(pk=draft.pk)
        assert (fresh.state, fresh.version, fresh.sha256) == (Draft.State.DRAFT, draft.version, draft.sha256)
        assert "unterbrochen" in fresh.last_error_text
    assert not Signature.objects.exists()
    # The late task of the dead batch does nothing; the letters can be signed again.
    batch_run(batch.pk)
    assert SignatureBatch.objects.get(pk=batch.pk).state == SignatureBatch.State.FAILED
    again = _start(signer, workplace, [Draft.objects.get(pk=d.pk) for d in drafts])
    assert again.total == 3


def test_after_a_worker_crash_the_physician_can_cancel_and_sign_again_at_once(
    client, signer, assistant, mailbox, workplace
):
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    # What a killed worker leaves behind: started, waiting for the PIN, nobody left to finish it.
    SignatureBatch.objects.filter(pk=batch.pk).update(
        state=SignatureBatch.State.PIN, started_at=timezone.now() - timedelta(minutes=15), job_number="ABC-123"
    )
    client.force_login(signer)
    client.post(reverse("signing:batch-cancel", args=[batch.pk]))
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(drafts)}, follow=True
    )
    assert "läuft bereits" not in response.content.decode()
    assert SignatureBatch.objects.filter(signer=signer).count() == 2


def test_a_batch_still_waiting_for_a_worker_is_cancelled_at_once(client, signer, assistant, mailbox, workplace):
    """The worker is busy (another physician's PIN entry): "Abbrechen" ends the queued batch now, not when the
    worker gets to it, and its task, when it comes, signs nothing."""
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    client.force_login(signer)
    client.post(reverse("signing:batch-cancel", args=[batch.pk]))
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.CANCELLED and batch.finished_at is not None
    assert {Draft.objects.get(pk=d.pk).state for d in drafts} == {Draft.State.DRAFT}
    assert set(batch.items.values_list("state", flat=True)) == {BatchItem.State.NOT_SIGNED}
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(drafts)}, follow=True
    )
    assert "läuft bereits" not in response.content.decode()
    batch_run(batch.pk)  # the late task
    assert SignatureBatch.objects.get(pk=batch.pk).state == SignatureBatch.State.CANCELLED
    assert not Signature.objects.exists()


@pytest.mark.parametrize("rounds", [5])
def test_cancel_racing_the_workers_start_ends_the_batch_once(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, rounds
):
    """Either the cancel ends the batch before the worker takes it, or the worker takes it and stops at the
    cancel request: never both, never neither."""
    use_sim(konnektor_sim)
    for _ in range(rounds):
        drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
        batch = _start(signer, workplace, drafts)
        together(lambda b=batch: batch_service.batch_cancel(user=signer, batch=b), lambda b=batch: batch_run(b.pk))
        batch.refresh_from_db()
        assert batch.state == SignatureBatch.State.CANCELLED and batch.finished_at is not None
        assert AuditEvent.objects.filter(action="signing.batch_finished", details__batch=batch.pk).count() == 1
        # Back in the queue, unless the card signed before the worker saw the cancel request.
        for draft in Draft.objects.filter(pk__in=[d.pk for d in drafts]):
            assert draft.state in (Draft.State.DRAFT, Draft.State.SIGNED), draft.state
            assert Signature.objects.filter(draft=draft).exists() == (draft.state == Draft.State.SIGNED)


def test_the_heartbeat_goes_on_after_a_database_hiccup(signer, assistant, mailbox, workplace, settings, monkeypatch):
    """One failed heartbeat (the database restarted, a connection dropped) must not end the beats: six missed
    beats later the recovery would end a batch whose worker is alive and waiting for the PIN."""
    from django.db import OperationalError

    from signing.services import run as run_service

    settings.KIMPORTAL_SIGNING_HEARTBEAT_SECONDS = 0.05
    batch = _start(signer, workplace, plain_letters(1, signer=signer, author=assistant, mailbox=mailbox))
    beats: list[str] = []
    real_beat = run_service._beat

    def flaky_beat(batch_id: int) -> None:
        beats.append("failed" if not beats else "ok")
        if len(beats) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        real_beat(batch_id)

    monkeypatch.setattr(run_service, "_beat", flaky_beat)
    heartbeat = run_service._Heartbeat(batch.pk)
    heartbeat.start()
    try:
        _wait_for(
            lambda: SignatureBatch.objects.get(pk=batch.pk).heartbeat_at is not None, 10, "a beat after the hiccup"
        )
    finally:
        heartbeat.stop()
    assert beats[0] == "failed" and "ok" in beats


def test_the_recovery_of_a_silent_batch_stops_its_job_at_the_konnektor(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, settings
):
    """The worker fell silent (no heartbeat) while the terminal waited for the PIN. The recovery ends the batch,
    gives the letters back and sends StopSignature with the batch's job number: the terminal stops asking for the
    PIN of a batch the portal gave up on, and the card is free for the next start at once."""
    sim = konnektor_sim_factory(auto_pin=None)
    use_sim(sim)
    settings.KIMPORTAL_SIGNING_HEARTBEAT_SECONDS = 600  # this worker's heartbeat stays silent during the test
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    worker = _worker(batch.pk)
    terminal = sim.terminal(CT_ID)
    try:
        _wait_for(lambda: terminal.waiting, 20, "the PIN prompt")
        asked_for = terminal.job_number
        assert asked_for == SignatureBatch.objects.get(pk=batch.pk).job_number
        SignatureBatch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(hours=3))
        assert batches_recover_stale() == 1
        assert not terminal.waiting and terminal.display == ["Signatur abgebrochen"]
        with pytest.raises(RuntimeError):
            terminal.enter_pin(PIN)  # nothing asks for a PIN any more
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert not sim.signed_requests and not Signature.objects.exists()
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == (SignatureBatch.State.FAILED, 0) and "unterbrochen" in batch.error_shown
    for draft in Draft.objects.filter(pk__in=[d.pk for d in drafts]):
        assert draft.state == Draft.State.DRAFT and "unterbrochen" in draft.last_error_text
    assert set(batch.items.values_list("state", flat=True)) == {BatchItem.State.NOT_SIGNED}
    # Started again, the same card signs the letters with the next PIN.
    sim.auto_pin = PIN
    again = _start(signer, workplace, list(Draft.objects.filter(pk__in=[d.pk for d in drafts])))
    batch_run(again.pk)
    again.refresh_from_db()
    assert (again.state, again.signed_count) == (SignatureBatch.State.DONE, 2), again.error_shown


def test_a_batch_ended_as_stale_uses_nothing_its_late_worker_still_gets(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, settings
):
    """As above, but the recovery's StopSignature does not reach the Konnektor (the network is down for it) and
    the PIN is typed after all: the card signs, and the late answers are not used — no signature, the letters stay
    in the queue, the batch stays ended (not "running" again)."""
    sim = konnektor_sim_factory(auto_pin=None)
    use_sim(sim)
    settings.KIMPORTAL_SIGNING_HEARTBEAT_SECONDS = 600
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    worker = _worker(batch.pk)
    terminal = sim.terminal(CT_ID)
    try:
        _wait_for(lambda: terminal.waiting, 20, "the PIN prompt")
        # The worker's client has found the Konnektor already; the recovery's own client finds nobody.
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            settings.KIMPORTAL_KONNEKTOR_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
        SignatureBatch.objects.filter(pk=batch.pk).update(heartbeat_at=timezone.now() - timedelta(hours=3))
        assert batches_recover_stale() == 1
        assert {Draft.objects.get(pk=d.pk).state for d in drafts} == {Draft.State.DRAFT}
        assert terminal.waiting
        terminal.enter_pin(PIN)
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(sim.signed_requests) == 2  # the card did sign ...
    assert not Signature.objects.exists()  # ... and nothing of it is used
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count) == (SignatureBatch.State.FAILED, 0) and batch.finished_at is not None
    assert "unterbrochen" in batch.error_shown
    for draft in Draft.objects.filter(pk__in=[d.pk for d in drafts]):
        assert draft.state == Draft.State.DRAFT and "unterbrochen" in draft.last_error_text
    assert set(batch.items.values_list("state", flat=True)) == {BatchItem.State.NOT_SIGNED}


def test_a_batch_without_a_job_number_is_recovered_without_asking_the_konnektor(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace, monkeypatch
):
    """The worker died before it had a job number (discovery, the card, the PIN status): it never sent
    SignDocument, so nothing at the Konnektor asks for this batch's PIN and nothing is stopped."""
    use_sim(konnektor_sim)
    drafts = plain_letters(1, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    long_ago = timezone.now() - timedelta(hours=3)
    SignatureBatch.objects.filter(pk=batch.pk).update(state="pin", started_at=long_ago, heartbeat_at=long_ago)
    stops: list[str] = []
    monkeypatch.setattr(KonnektorClient, "stop_signature", lambda self, ctx, job_number: stops.append(job_number))
    assert batches_recover_stale() == 1
    assert stops == [] and Draft.objects.get(pk=drafts[0].pk).state == Draft.State.DRAFT


def test_a_batch_the_hard_time_limit_ended_names_that_reason(signer, assistant, mailbox, workplace):
    """The pool killed the worker at the hard time limit (its heartbeat went on until then): the recovery says the
    batch took too long, not that it was interrupted."""
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    started = timezone.now() - timedelta(hours=2)
    SignatureBatch.objects.filter(pk=batch.pk).update(
        state="signing", started_at=started, heartbeat_at=started + timedelta(seconds=3650)
    )
    assert batches_recover_stale() == 1
    batch.refresh_from_db()
    assert batch.state == SignatureBatch.State.FAILED and batch.error_shown.startswith(
        "Der Signaturvorgang hat zu lange gedauert"
    )
    for draft in Draft.objects.filter(pk__in=[d.pk for d in drafts]):
        assert draft.state == Draft.State.DRAFT and draft.last_error_text == batch.error_shown


# --- the eHBA taken away while the terminal waits ---------------------------------------------------------------


@pytest.mark.parametrize("change", ["removed", "another card"])
def test_an_ehba_mapping_removed_mid_batch_stops_the_pin_prompt_and_signs_nothing(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, manager, change
):
    """The manager removes the physician's eHBA mapping (card lost, physician gone), or maps another card, while
    the terminal waits for the first of three PINs: the job is stopped at the Konnektor, the terminal asks no more,
    and the page and every letter say why (not the department refusal meant for a signer who left a mailbox)."""
    sim = konnektor_sim_factory(auto_pin=None)
    use_sim(sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=1)
    drafts = plain_letters(3, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    worker = _worker(batch.pk)
    terminal = sim.terminal(CT_ID)
    try:
        _wait_for(lambda: terminal.waiting, 20, "the first PIN prompt")
        # Committed at once (no surrounding transaction): the StopSignature follows the commit.
        if change == "removed":
            signer_card_remove(manager=manager, card=SignerCard.objects.get(user=signer))
        else:
            signer_card_set(manager=manager, user=signer, telematik_id="1-20019999999", iccsn="")
        assert not terminal.waiting and terminal.display == ["Signatur abgebrochen"]
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert not sim.signed_requests and not Signature.objects.exists()
    _assert_ended_for_the_missing_card(batch, drafts)


def test_an_ehba_mapping_removed_mid_batch_uses_nothing_the_card_still_answers(
    konnektor_sim_factory, use_sim, signer, assistant, mailbox, workplace, manager, settings
):
    """As above, but the StopSignature does not reach the Konnektor and the PIN is typed all the same: that
    answer is not used and no further call is made."""
    sim = konnektor_sim_factory(auto_pin=None)
    use_sim(sim, KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL=1)
    drafts = plain_letters(3, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    worker = _worker(batch.pk)
    terminal = sim.terminal(CT_ID)
    try:
        _wait_for(lambda: terminal.waiting, 20, "the first PIN prompt")
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            settings.KIMPORTAL_KONNEKTOR_URL = f"http://127.0.0.1:{closed.getsockname()[1]}"
        signer_card_remove(manager=manager, card=SignerCard.objects.get(user=signer))
        assert terminal.waiting
        terminal.enter_pin(PIN)
    finally:
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(sim.signed_requests) == 1 and not Signature.objects.exists()
    _assert_ended_for_the_missing_card(batch, drafts)


def _assert_ended_for_the_missing_card(batch, drafts) -> None:
    batch.refresh_from_db()
    assert (batch.state, batch.signed_count, batch.failed_count) == (SignatureBatch.State.FAILED, 0, 0)
    assert batch.error_shown.startswith("Ihnen ist kein eHBA mehr zugeordnet")
    for draft in Draft.objects.filter(pk__in=[d.pk for d in drafts]):
        assert (draft.state, draft.last_error_text) == (Draft.State.DRAFT, batch.error_shown)
    assert set(batch.items.values_list("state", flat=True)) == {BatchItem.State.NOT_SIGNED}


# --- a signer deactivated before the worker starts -----------------------------------------------------------


def test_a_signer_deactivated_before_the_worker_starts_signs_nothing(
    konnektor_sim, use_sim, signer, assistant, mailbox, workplace
):
    use_sim(konnektor_sim)
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    batch = _start(signer, workplace, drafts)
    type(signer).objects.filter(pk=signer.pk).update(is_active=False)
    batch_run(batch.pk)
    batch.refresh_from_db()
    assert not konnektor_sim.signed_requests and not Signature.objects.exists()
    assert batch.state == SignatureBatch.State.FAILED and batch.signed_count == 0
    assert {Draft.objects.get(pk=d.pk).state for d in drafts} == {Draft.State.DRAFT}


# --- the broker down when "Signieren" is pressed -----------------------------------------------------------------


@pytest.fixture
def broker_down():
    """Celery's broker unreachable (a closed port), for this test's sends only: a fresh producer pool is made
    from the bad URL, and the process's own settings and pool come back afterwards."""
    from celery import current_app

    conf, amqp = current_app.conf, current_app.amqp
    # The producer pool too: one made by an earlier test's real send holds connections to the working broker.
    saved = conf.broker_url, conf.task_publish_retry, current_app._pool, amqp._producer_pool
    conf.broker_url, conf.task_publish_retry, current_app._pool = "redis://127.0.0.1:9/0", False, None
    amqp._producer_pool = None
    try:
        yield
    finally:
        if current_app._pool is not None:
            current_app._pool.force_close_all()
        conf.broker_url, conf.task_publish_retry, current_app._pool, amqp._producer_pool = saved


def test_a_broker_outage_at_the_start_gives_a_german_answer_and_the_letters_back(
    broker_down, monkeypatch, client, signer, assistant, mailbox, workplace
):
    # The real send this time (the autouse fixture keeps the other tests off the broker).
    monkeypatch.setattr(batch_service, "_enqueue", _REAL_ENQUEUE)
    drafts = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    client.force_login(signer)
    client.raise_request_exception = False
    response = client.post(
        reverse("signing:batch-start"), {"workplace": workplace.pk, "draft": _selection(drafts)}, follow=True
    )
    assert response.status_code == 200, response.status_code
    assert {Draft.objects.get(pk=d.pk).state for d in drafts} == {Draft.State.DRAFT}
    assert not SignatureBatch.objects.filter(state__in=SignatureBatch.ACTIVE_STATES).exists()
    assert "nicht erreichbar" in response.content.decode()


def test_two_physicians_sign_at_the_same_time_each_with_their_own_batch(signer, assistant, mailbox, workplace):
    """The lock that keeps one physician to one batch is her card's row: another physician is not held up."""
    from tests.signing.factories import SignerCardFactory

    colleague = type(signer).objects.create(username="zweitaerztin")
    SignerCardFactory(user=colleague)
    hers = plain_letters(2, signer=signer, author=assistant, mailbox=mailbox)
    theirs = plain_letters(2, signer=colleague, author=assistant, mailbox=mailbox)
    answers = together(lambda: _start(signer, workplace, hers), lambda: _start(colleague, workplace, theirs))
    assert all(isinstance(a, SignatureBatch) for a in answers), answers
    assert {a.signer_id for a in answers} == {signer.pk, colleague.pk}
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNING}
