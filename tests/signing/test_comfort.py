"""Komfortsignatur against the simulated Konnektor over its real sockets (mode "basic": the Konnektor offers it only
with a secured connection): activation with one PIN entry at the terminal and a fresh UserId, batches signed
without a PIN, the count going down, exhaustion and expiry in the middle of a batch (the rest asks for the PIN),
ending it (button, logout, another workstation, another card), "plain" refused, and strangers."""

from __future__ import annotations

import html
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connections, transaction
from django.urls import reverse
from django.utils import timezone, translation

from audit.models import AuditEvent
from kimportal.errors import Conflict, NotAllowed
from mailbox.storage import blob_get
from signing.models import ComfortActivation, ComfortUse, Draft, Signature, SignatureBatch, SignerCard
from signing.services.batch import Selected, batch_create
from signing.services.comfort import (
    activation_live_for_user,
    comfort_activate,
    comfort_activation_run,
    comfort_deactivate,
    end_text,
)
from signing.services.run import batch_run
from signing.services.verify import verify_cades_detached
from tests.fixtures.konnektor_sim import CT_ID, PIN, WORKPLACE
from tests.mailbox.factories import MembershipFactory, UserFactory
from tests.signing.factories import DraftFactory, WorkplaceFactory

pytestmark = pytest.mark.django_db

State = ComfortActivation.State
End = ComfortActivation.End


@pytest.fixture
def comfort_sim(konnektor_sim_factory, use_sim):
    """A simulator in mode "basic" (the Komfortsignatur needs Login or Zertifikat); keywords as the factory's."""

    def make(**kwargs):
        kwargs.setdefault("mode", "basic")
        overrides = kwargs.pop("settings", {})
        return use_sim(konnektor_sim_factory(**kwargs), **overrides)

    return make


@pytest.fixture
def workplace(sim_workplace):
    return sim_workplace


def _drafts(n, signer, assistant, mailbox):
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


def _activate(user, workplace, capture) -> ComfortActivation:
    """Ask for an activation and run its task here (as the worker would): the terminal types the PIN itself."""
    with capture(execute=False):
        activation = comfort_activate(user=user, workplace=workplace)
    comfort_activation_run(activation.pk)
    activation.refresh_from_db()
    return activation


def _batch(signer, workplace, drafts, capture) -> SignatureBatch:
    with capture(execute=False):
        batch = batch_create(
            signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts]
        )
    batch_run(batch.pk)
    batch.refresh_from_db()
    return batch


def _pin_prompts(sim) -> list[list[str]]:
    return [p for p in sim.terminal(CT_ID).prompts if not any("Komfortsignatur" in line for line in p)]


def _comfort_prompts(sim) -> list[list[str]]:
    return [p for p in sim.terminal(CT_ID).prompts if any("Komfortsignatur" in line for line in p)]


# --- activation -----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_activation_asks_for_the_pin_once_at_the_terminal_with_a_fresh_user_id(
    comfort_sim, signer, workplace, client, monkeypatch
):
    sim = comfort_sim(auto_pin=None, comfort_max=40)
    client.force_login(signer)
    # Committed (the worker thread must see it) without sending the task: this test is the worker.
    monkeypatch.setattr("signing.services.comfort.enqueue_on_commit", lambda *args: None)
    response = client.post(reverse("signing:comfort-activate"), {"workplace": workplace.pk})
    assert response.status_code == 302
    activation = ComfortActivation.objects.get()
    assert activation.state == State.ACTIVATING
    assert activation.user_id != signer.signer_card.konnektor_user_id  # not the physician's stable UserId
    page = client.get(reverse("signing:comfort")).content.decode()
    assert 'data-state="activating"' in page

    def work() -> None:
        try:
            comfort_activation_run(activation.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=work)
    worker.start()
    terminal = sim.terminal(CT_ID)
    assert terminal.wait_for_prompt(20)
    assert any("Komfortsignatur aktivieren" in line for line in terminal.display)
    page = client.get(reverse("signing:comfort"), headers={"HX-Request": "true", "HX-Target": "comfort-status"})
    assert "Bitte PIN am Kartenterminal eingeben" in page.content.decode()
    terminal.enter_pin(PIN)
    worker.join(timeout=20)
    assert not worker.is_alive()

    activation.refresh_from_db()
    assert activation.state == State.ACTIVE and activation.remaining_count == 40
    assert activation.valid_until is not None and activation.valid_until > timezone.now()
    assert activation.card_handle == sim.cards[0].card_handle
    # The Konnektor's session is bound to exactly this activation's UserId.
    assert sim.cards[0].comfort is not None and sim.cards[0].comfort.user_id == str(activation.user_id)
    page = client.get(reverse("signing:comfort")).content.decode()
    assert "Komfortsignatur aktiv" in page and 'id="comfort-remaining">40<' in page
    assert 'id="comfort-deactivate"' in page
    assert AuditEvent.objects.filter(action="signing.comfort_requested", actor_id=signer.pk).exists()
    assert AuditEvent.objects.get(action="signing.comfort_activated").details["remaining"] == 40

    # Ended and activated again: a new UserId, never the old one.
    comfort_deactivate(user=signer, activation=activation)
    monkeypatch.undo()
    again = ComfortActivation.objects.create(signer=signer, workplace=workplace)
    assert again.user_id != activation.user_id


def test_a_wrong_pin_at_activation_says_how_many_tries_are_left(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim()
    sim.arm_fault("wrong-pin")
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    assert activation.state == State.FAILED
    assert "Noch 2 Versuche" in end_text(activation)
    assert sim.cards[0].comfort is None
    client.force_login(signer)
    page = client.get(reverse("signing:comfort")).content.decode()
    assert "Noch 2 Versuche" in page and 'id="comfort-activate"' in page  # can try again
    assert AuditEvent.objects.filter(action="signing.comfort_failed").exists()


def test_activation_without_the_card_in_a_reachable_terminal_is_explained(
    comfort_sim, physician, workplace, django_capture_on_commit_callbacks
):
    comfort_sim()  # the physician's mapped Telematik-ID is not the inserted card's
    activation = _activate(physician, workplace, django_capture_on_commit_callbacks)
    assert activation.state == State.FAILED and "steckt in keinem Kartenterminal" in end_text(activation)


def test_plain_mode_is_refused_with_a_german_explanation(
    konnektor_sim, use_sim, signer, workplace, client, django_capture_on_commit_callbacks
):
    use_sim(konnektor_sim)  # mode "plain"
    client.force_login(signer)
    page = client.get(reverse("signing:comfort")).content.decode()
    assert "nur mit einer gesicherten Verbindung zum Konnektor möglich" in page
    assert 'id="comfort-activate"' not in page
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("signing:comfort-activate"), {"workplace": workplace.pk}, follow=True)
    assert "nur mit einer gesicherten Verbindung" in response.content.decode()
    assert not ComfortActivation.objects.exists()
    with pytest.raises(NotAllowed):
        comfort_activate(user=signer, workplace=workplace)
    assert not _comfort_prompts(konnektor_sim)


def test_no_card_no_activation(comfort_sim, assistant, workplace, client):
    comfort_sim()
    with pytest.raises(NotAllowed):
        comfort_activate(user=assistant, workplace=workplace)
    client.force_login(assistant)
    assert "kein eHBA zugeordnet" in client.get(reverse("signing:comfort")).content.decode()


# --- use in a batch -------------------------------------------------------------------------------------------


def test_a_batch_signs_without_pin_and_the_count_goes_down(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim(comfort_max=10)
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    assert activation.remaining_count == 10 and len(_comfort_prompts(sim)) == 1
    prompts_before = len(sim.terminal(CT_ID).prompts)

    drafts = _drafts(3, signer, assistant, mailbox)
    batch = _batch(signer, workplace, drafts, django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count) == ("done", 3)
    assert len(sim.terminal(CT_ID).prompts) == prompts_before  # no PIN asked
    assert {s.user_id for s in sim.signed_requests} == {str(activation.user_id)}
    assert all(s.comfort for s in sim.signed_requests)
    for signature in Signature.objects.select_related("draft"):
        verify_cades_detached(
            document=blob_get(signature.draft.sha256),
            cms_der=blob_get(signature.sha256),
            card_certificates=[sim.cards[0].certificate_der],
            ca_pem=sim.qes_ca_pem,
        )
    use = ComfortUse.objects.get(batch=batch)
    assert use.signed_count == 3 and use.fallback_at is None
    activation.refresh_from_db()
    assert activation.remaining_count == 7 == sim.cards[0].comfort.remaining
    used = AuditEvent.objects.get(action="signing.comfort_used")
    assert used.details["signed"] == 3 and used.details["remaining"] == 7
    assert AuditEvent.objects.filter(action="signing.signed", details__comfort_activation=activation.pk).count() == 3

    # The next batch goes on counting down; the page says what is left.
    batch2 = _batch(signer, workplace, _drafts(2, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert batch2.signed_count == 2
    activation.refresh_from_db()
    assert activation.remaining_count == 5
    client.force_login(signer)
    page = client.get(reverse("signing:comfort") + "?aktualisieren=1").content.decode()
    assert 'id="comfort-remaining">5<' in page
    summary = client.get(reverse("signing:batch", args=[batch2.pk])).content.decode()
    assert 'id="count-comfort"' in summary and "mit Komfortsignatur (ohne PIN)" in summary


def test_the_live_batch_page_says_no_pin_is_needed(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, client
):
    comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        batch = batch_create(
            signer=signer,
            workplace=workplace,
            selected=[Selected(d.pk, d.version, d.sha256) for d in _drafts(2, signer, assistant, mailbox)],
        )
    # The batch as its task shows it while SignDocument runs under the activation.
    ComfortUse.objects.create(batch=batch, activation=activation)
    SignatureBatch.objects.filter(pk=batch.pk).update(state=SignatureBatch.State.SIGNING, job_number="ABC-123")
    client.force_login(signer)
    page = client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    assert "Komfortsignatur – keine PIN-Eingabe nötig" in page
    assert "Bitte PIN am Kartenterminal eingeben" not in page


def test_exhausted_in_the_middle_the_rest_asks_for_the_pin(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim(comfort_max=3)
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    drafts = _drafts(5, signer, assistant, mailbox)
    batch = _batch(signer, workplace, drafts, django_capture_on_commit_callbacks)

    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 5, 0)
    by_user = [s.user_id for s in sim.signed_requests]
    assert by_user.count(str(activation.user_id)) == 3  # what the session allowed, without PIN
    assert by_user.count(str(signer.signer_card.konnektor_user_id)) == 2  # the rest with one PIN entry
    assert len(_pin_prompts(sim)) == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.EXHAUSTED)
    use = ComfortUse.objects.get(batch=batch)
    assert use.signed_count == 3 and "aufgebraucht" in use.fallback_shown and "PIN" in use.fallback_shown
    assert AuditEvent.objects.filter(action="signing.comfort_fallback").exists()
    client.force_login(signer)
    page = client.get(reverse("signing:batch", args=[batch.pk])).content.decode()
    assert 'id="comfort-fallback"' in page and "aufgebraucht" in page
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNED}


def _expire(sim, activation) -> None:
    """The clock passes the session's end on both sides: the Konnektor's timer and what it told the portal."""
    sim.cards[0].comfort.expires = time.monotonic() - 1
    ComfortActivation.objects.filter(pk=activation.pk).update(valid_until=timezone.now())


def test_expired_between_two_calls_the_rest_asks_for_the_pin(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, monkeypatch
):
    sim = comfort_sim(settings={"KIMPORTAL_KONNEKTOR_MAX_REQUESTS_PER_CALL": 2})
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    import signing.services.run as run

    original = run.comfort_after_call

    def after_call(session, **kwargs):
        original(session, **kwargs)
        _expire(sim, activation)

    monkeypatch.setattr(run, "comfort_after_call", after_call)
    batch = _batch(signer, workplace, _drafts(4, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count) == ("done", 4)
    assert [s.user_id for s in sim.signed_requests].count(str(activation.user_id)) == 2
    assert len(_pin_prompts(sim)) == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.EXPIRED)
    assert "abgelaufen" in ComfortUse.objects.get(batch=batch).fallback_shown


def test_expired_during_a_call_that_call_is_signed_again_with_the_pin(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, monkeypatch
):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    import signing.services.run as run

    original = run.comfort_before_call

    def before_call(client, session):
        left = original(client, session)
        _expire(sim, activation)  # after the check, before SignDocument: the Konnektor answers 4271
        return left

    monkeypatch.setattr(run, "comfort_before_call", before_call)
    batch = _batch(signer, workplace, _drafts(3, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count, batch.failed_count) == ("done", 3, 0)
    assert {s.user_id for s in sim.signed_requests} == {str(signer.signer_card.konnektor_user_id)}
    assert len(_pin_prompts(sim)) == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.EXPIRED)
    use = ComfortUse.objects.get(batch=batch)
    assert use.signed_count == 0 and "abgelaufen" in use.fallback_shown


# --- ending it ------------------------------------------------------------------------------------------------


def test_deactivate_button_ends_it_here_and_at_the_konnektor(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    client.force_login(signer)
    response = client.post(reverse("signing:comfort-deactivate", args=[activation.pk]), follow=True)
    assert "Die Komfortsignatur wurde beendet." in response.content.decode()
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.DEACTIVATED)
    assert sim.cards[0].comfort is None
    ended = AuditEvent.objects.get(action="signing.comfort_ended")
    assert ended.actor_id == signer.pk and ended.details["reason"] == End.DEACTIVATED
    # The next batch asks for the PIN again, under the physician's own UserId.
    batch = _batch(signer, workplace, _drafts(1, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert batch.signed_count == 1 and len(_pin_prompts(sim)) == 1
    assert not ComfortUse.objects.exists()


def test_logout_ends_it_and_a_logged_out_tab_cannot_activate(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks, client, settings
):
    from celery import current_app

    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    client.force_login(signer)
    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            client.post(reverse("logout"))
    finally:
        current_app.conf.task_always_eager = eager
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.LOGOUT)
    assert sim.cards[0].comfort is None  # the task told the Konnektor
    # The tab that was left open: its forms lead to the sign-in, nothing is activated or ended.
    response = client.post(reverse("signing:comfort-activate"), {"workplace": workplace.pk})
    assert response.status_code == 302 and "login" in response["Location"].lower()
    response = client.post(reverse("signing:comfort-deactivate", args=[activation.pk]))
    assert response.status_code == 302 and "login" in response["Location"].lower()
    assert ComfortActivation.objects.count() == 1


def test_a_batch_at_another_workplace_ends_it_and_asks_for_the_pin(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    # A second workstation served by the same terminal (a shared room).
    sim.terminal(CT_ID).workplaces.append("Arbeitsplatz-2")
    other = WorkplaceFactory(workplace_id="Arbeitsplatz-2", label="Ambulanz", ct_id=CT_ID)
    batch = _batch(signer, other, _drafts(2, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count) == ("done", 2)
    assert len(_pin_prompts(sim)) == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.WORKPLACE)
    assert sim.cards[0].comfort is None
    assert "anderen Arbeitsplatz" in ComfortUse.objects.get(batch=batch).fallback_shown


def test_a_pulled_card_ends_it(comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    sim.remove_card(sim.cards[0], reinsert=True)  # a new handle, the session is gone
    batch = _batch(signer, workplace, _drafts(1, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count) == ("done", 1)
    assert len(_pin_prompts(sim)) == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.CARD)


# --- strangers ------------------------------------------------------------------------------------------------


def test_another_physician_neither_uses_sees_nor_ends_it(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    colleague = UserFactory(username="kollege", first_name="Karl", last_name="Kollege")
    MembershipFactory(mailbox=mailbox, user=colleague)
    card = sim.add_hba("Dr. med. Karl Kollege", "1-20019999999", pin=PIN, ct_id="CT-2", workplaces=(WORKPLACE,))
    SignerCard.objects.create(user=colleague, iccsn=card.iccsn)

    batch = _batch(colleague, workplace, _drafts(2, colleague, assistant, mailbox), django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count) == ("done", 2)
    assert not ComfortUse.objects.filter(batch=batch).exists()
    assert {s.user_id for s in sim.signed_requests} == {str(colleague.signer_card.konnektor_user_id)}
    assert len(sim.terminal("CT-2").prompts) == 1  # the colleague typed their PIN

    client.force_login(colleague)
    page = client.get(reverse("signing:comfort")).content.decode()
    assert "Komfortsignatur nicht aktiv" in page and f'id="comfort-{activation.pk}"' not in page
    assert client.post(reverse("signing:comfort-deactivate", args=[activation.pk])).status_code == 404
    with pytest.raises(NotAllowed):
        comfort_deactivate(user=colleague, activation=activation)
    activation.refresh_from_db()
    assert activation.state == State.ACTIVE and sim.cards[0].comfort is not None


def test_after_a_change_of_card_the_old_activation_is_not_used(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    # The physician's new eHBA, mapped by the manager; the old one still sits in its terminal.
    new_card = sim.add_hba("Dr. med. Anna Sommer", "1-20014567891", pin=PIN, ct_id="CT-2", workplaces=(WORKPLACE,))
    SignerCard.objects.filter(user=signer).update(telematik_id="", iccsn=new_card.iccsn)
    batch = _batch(signer, workplace, _drafts(1, signer, assistant, mailbox), django_capture_on_commit_callbacks)
    assert (batch.state, batch.signed_count) == ("done", 1)
    assert len(sim.terminal("CT-2").prompts) == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.CARD)
    assert sim.cards[0].comfort is None  # the old card's session closed too


def test_a_second_activation_while_one_is_live_is_refused(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks
):
    comfort_sim()
    _activate(signer, workplace, django_capture_on_commit_callbacks)
    with pytest.raises(Conflict):
        comfort_activate(user=signer, workplace=workplace)
    assert ComfortActivation.objects.count() == 1


def test_a_stuck_activation_ends_by_itself(signer, workplace):
    stuck = ComfortActivation.objects.create(signer=signer, workplace=workplace)
    ComfortActivation.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(hours=2))
    assert activation_live_for_user(signer) is None
    stuck.refresh_from_db()
    assert (stuck.state, stuck.end_reason) == (State.FAILED, End.INTERRUPTED)


@pytest.mark.django_db(transaction=True)
def test_two_tabs_activating_at_once_get_one_activation(comfort_sim, signer, workplace, monkeypatch):
    comfort_sim()
    monkeypatch.setattr("signing.services.comfort.enqueue_on_commit", lambda *args: None)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def tab() -> None:
        try:
            barrier.wait(timeout=10)
            with transaction.atomic():
                outcomes.append(comfort_activate(user=signer, workplace=workplace))
        except Conflict as exc:
            outcomes.append(exc)
        finally:
            connections.close_all()

    tabs = [threading.Thread(target=tab) for _ in range(2)]
    for t in tabs:
        t.start()
    for t in tabs:
        t.join(timeout=20)
    assert sorted(type(o).__name__ for o in outcomes) == ["ComfortActivation", "Conflict"]
    assert ComfortActivation.objects.filter(signer=signer).count() == 1


def test_user_ids_are_unique_across_activations(signer, workplace):
    ids = {ComfortActivation.objects.create(signer=signer, workplace=workplace, state=State.ENDED).user_id}
    ids.add(ComfortActivation.objects.create(signer=signer, workplace=workplace, state=State.ENDED).user_id)
    assert len(ids) == 2 and all(isinstance(i, uuid.UUID) and i.version == 4 for i in ids)


@pytest.mark.django_db(transaction=True)
def test_cancelled_while_the_pin_is_asked_the_new_session_closes_at_once(
    comfort_sim, signer, workplace, client, monkeypatch
):
    sim = comfort_sim(auto_pin=None)
    monkeypatch.setattr("signing.services.comfort.enqueue_on_commit", lambda *args: None)
    client.force_login(signer)
    client.post(reverse("signing:comfort-activate"), {"workplace": workplace.pk})
    activation = ComfortActivation.objects.get()

    def work() -> None:
        try:
            comfort_activation_run(activation.pk)
        finally:
            connections.close_all()

    worker = threading.Thread(target=work)
    worker.start()
    terminal = sim.terminal(CT_ID)
    assert terminal.wait_for_prompt(20)
    # "Abbrechen" in the page while the terminal waits; the physician types the PIN anyway.
    client.post(reverse("signing:comfort-deactivate", args=[activation.pk]))
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.CANCELLED)
    terminal.enter_pin(PIN)
    worker.join(timeout=20)
    assert not worker.is_alive()
    activation.refresh_from_db()
    assert activation.state == State.ENDED  # not revived
    assert sim.cards[0].comfort is None  # the session the PIN opened was closed right away


def test_a_hostile_client_saves_nothing(comfort_sim, signer, workplace, client, django_capture_on_commit_callbacks):
    comfort_sim()
    client.force_login(signer)
    inactive = WorkplaceFactory(workplace_id="Alt-1", label="Alt", is_active=False)
    for data in ({}, {"workplace": "x"}, {"workplace": 999999}, {"workplace": inactive.pk}):
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("signing:comfort-activate"), data, follow=True)
        assert "Bitte wählen Sie Ihren Arbeitsplatz" in response.content.decode()
    assert not ComfortActivation.objects.exists()
    assert client.get(reverse("signing:comfort-activate")).status_code == 405
    assert client.post(reverse("signing:comfort-deactivate", args=[424242])).status_code == 404


def test_not_while_a_batch_of_theirs_runs(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks
):
    comfort_sim()
    drafts = _drafts(1, signer, assistant, mailbox)
    with django_capture_on_commit_callbacks(execute=False):
        batch_create(signer=signer, workplace=workplace, selected=[Selected(d.pk, d.version, d.sha256) for d in drafts])
    with pytest.raises(Conflict):
        comfort_activate(user=signer, workplace=workplace)
    assert not ComfortActivation.objects.exists()


def test_a_removed_card_mapping_ends_it_when_the_page_looks(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    SignerCard.objects.filter(user=signer).delete()
    client.force_login(signer)
    page = client.get(reverse("signing:comfort") + "?aktualisieren=1").content.decode()
    assert "Komfortsignatur nicht aktiv" in page and "eHBA-Zuordnung hat sich geändert" in page
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.ACCOUNT)
    assert sim.cards[0].comfort is None


def test_the_page_reads_what_is_left_from_the_konnektor(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim(comfort_max=9)
    _activate(signer, workplace, django_capture_on_commit_callbacks)
    sim.cards[0].comfort.remaining = 6  # signatures made by another client system under the same session
    client.force_login(signer)
    page = client.get(reverse("signing:comfort") + "?aktualisieren=1").content.decode()
    assert 'id="comfort-remaining">6<' in page
    sim.stop()  # the Konnektor cannot be asked: the page says so and keeps what it knew
    page = client.get(reverse("signing:comfort") + "?aktualisieren=1").content.decode()
    assert "konnte nicht abgefragt werden" in page and 'id="comfort-remaining">6<' in page


@pytest.fixture
def eager_tasks():
    from celery import current_app

    eager = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    yield
    current_app.conf.task_always_eager = eager


def test_a_session_that_ends_without_logout_ends_it(
    comfort_sim, signer, workplace, client, django_capture_on_commit_callbacks, eager_tasks
):
    from django.contrib.sessions.models import Session

    from signing.services.comfort import comfort_sweep

    sim = comfort_sim()
    client.force_login(signer)
    with django_capture_on_commit_callbacks(execute=True):  # the task runs in place (eager)
        client.post(reverse("signing:comfort-activate"), {"workplace": workplace.pk})
    activation = ComfortActivation.objects.get()
    assert activation.state == State.ACTIVE and activation.session_key == client.session.session_key
    assert comfort_sweep() == 0  # the session is alive: nothing to do
    # The browser was closed: nobody logs out, the session row runs out (idle limit plus grace).
    Session.objects.filter(session_key=activation.session_key).update(expire_date=timezone.now())
    with django_capture_on_commit_callbacks(execute=True):
        assert comfort_sweep() == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.LOGOUT)
    assert sim.cards[0].comfort is None
    assert AuditEvent.objects.get(action="signing.comfort_ended").details["reason"] == End.LOGOUT


@pytest.mark.parametrize("change", ["password", "deactivated"])
def test_a_password_change_or_deactivation_ends_it(
    change, comfort_sim, signer, workplace, client, django_capture_on_commit_callbacks, eager_tasks
):
    """Another device changes the physician's password, or IT deactivates the account: the sign-in session that
    asked for the activation no longer authenticates them (its row lives on until it expires): the sweep ends it,
    here and at the Konnektor."""
    from signing.services.comfort import comfort_sweep

    sim = comfort_sim()
    client.force_login(signer)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("signing:comfort-activate"), {"workplace": workplace.pk})
    activation = ComfortActivation.objects.get()
    assert activation.state == State.ACTIVE and comfort_sweep() == 0
    if change == "password":
        signer.set_password("ein-neues-Passwort-2026")
    else:
        signer.is_active = False
    signer.save()
    with django_capture_on_commit_callbacks(execute=True):
        assert comfort_sweep() == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.ACCOUNT)
    assert sim.cards[0].comfort is None


def test_the_sweep_ends_what_ran_out_of_time(comfort_sim, signer, workplace, django_capture_on_commit_callbacks):
    from signing.services.comfort import comfort_sweep

    comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    ComfortActivation.objects.filter(pk=activation.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    assert comfort_sweep() == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.EXPIRED)


def test_the_sweep_notices_a_pulled_card_within_a_minute(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks
):
    from signing.services.comfort import comfort_sweep

    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    ComfortActivation.objects.filter(pk=activation.pk).update(checked_at=timezone.now() - timedelta(minutes=2))
    assert comfort_sweep() == 0  # the card is there: only what is left is read
    activation.refresh_from_db()
    assert activation.state == State.ACTIVE and activation.checked_at > timezone.now() - timedelta(minutes=1)
    sim.remove_card(sim.cards[0])
    ComfortActivation.objects.filter(pk=activation.pk).update(checked_at=timezone.now() - timedelta(minutes=2))
    assert comfort_sweep() == 1
    activation.refresh_from_db()
    assert (activation.state, activation.end_reason) == (State.ENDED, End.CARD)


def test_the_sweep_with_the_konnektor_down_ends_nothing(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks
):
    from signing.services.comfort import comfort_sweep

    sim = comfort_sim()
    activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    ComfortActivation.objects.filter(pk=activation.pk).update(checked_at=timezone.now() - timedelta(minutes=2))
    sim.stop()
    assert comfort_sweep() == 0
    activation.refresh_from_db()
    assert activation.state == State.ACTIVE


# --- reasons in the reader's language (kept untranslated, kimportal.texts) --------------------------------------


def _page_in(client, user, name: str, *args, language: str) -> str:
    client.force_login(user)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return html.unescape(client.get(reverse(name, args=args)).content.decode())


def test_a_failed_activation_says_why_in_the_readers_language(
    comfort_sim, signer, workplace, django_capture_on_commit_callbacks, client
):
    sim = comfort_sim()
    sim.arm_fault("wrong-pin")
    with translation.override("de"):  # the worker's language
        activation = _activate(signer, workplace, django_capture_on_commit_callbacks)
    assert activation.state == State.FAILED
    english = _page_in(client, signer, "signing:comfort", language="en")
    assert "The PIN was wrong. 2 attempts left" in english and "Noch 2 Versuche" not in english
    german = _page_in(client, signer, "signing:comfort", language="de")
    assert "Die PIN war falsch. Noch 2 Versuche" in german and "attempts left" not in german
    event = AuditEvent.objects.get(action="signing.comfort_failed")
    assert isinstance(event.details["text"], list)  # the fault and the hint, each a msgid with its parameters


def test_the_fallback_to_the_pin_says_why_in_the_readers_language(
    comfort_sim, signer, assistant, mailbox, workplace, django_capture_on_commit_callbacks, client
):
    comfort_sim(comfort_max=3)
    _activate(signer, workplace, django_capture_on_commit_callbacks)
    drafts = _drafts(5, signer, assistant, mailbox)
    with translation.override("de"):
        batch = _batch(signer, workplace, drafts, django_capture_on_commit_callbacks)
    english = _page_in(client, signer, "signing:batch", batch.pk, language="en")
    assert "The comfort signature is used up (no signatures left). For the remaining documents" in english
    assert "aufgebraucht" not in english
    german = _page_in(client, signer, "signing:batch", batch.pk, language="de")
    assert "Die Komfortsignatur ist aufgebraucht (keine Signaturen mehr übrig). Für die übrigen" in german
    assert AuditEvent.objects.get(action="signing.comfort_fallback").details["text"] == {
        "msgid": "Die Komfortsignatur ist aufgebraucht (keine Signaturen mehr übrig).",
        "params": {},
    }
