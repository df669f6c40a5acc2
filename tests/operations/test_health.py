"""/health/ and the checks behind it, against the real simulators, slapd, PostgreSQL and Redis."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection
from django.utils import timezone

from mailbox.models import KimAccount, OutgoingMessage
from mailbox.services.fetch import account_lease_acquire, account_lease_release
from operations.services.health import forget_report, health_report, run_checks
from operations.services.results import ERROR, OK, UNKNOWN, WARNING
from tests.mailbox.factories import KimAccountFactory, MailboxFactory
from tests.operations.conftest import ADDRESS, kim_account
from tests.unreachable import database_unreachable as unreachable

pytestmark = pytest.mark.django_db

COMPONENTS = {
    "database",
    "redis",
    "clock",
    "konnektor",
    "cards",
    "certificates",
    "directory",
    "clientmodul",
    "fetch",
    "outbox",
    "celery_beat",
    "celery_worker",
}


def health(client) -> tuple[int, dict]:
    response = client.get("/health/")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
    return response.status_code, json.loads(response.content)


def test_all_green_is_200_without_login(client, ops):
    status, body = health(client)
    assert (status, body["status"]) == (200, "ok"), body
    assert set(body["components"]) == COMPONENTS
    assert set(body["components"].values()) == {"ok"}
    assert body["failing"] == [] and body["warnings"] == []


def test_the_report_shows_what_it_found(ops):
    report = run_checks()
    assert report.konnektor_version
    types = sorted(card.card_type for card in report.cards)
    assert types == ["HBA", "SMC-B"]
    smcb = next(card for card in report.cards if card.card_type == "SMC-B")
    assert smcb.holder == "Klinikum Test" and smcb.pin_status == "VERIFIABLE" and smcb.state == OK
    assert smcb.certificate is not None and smcb.certificate.days_left is not None
    kinds = sorted(cert.kind for cert in report.certificates)
    assert kinds == ["cm_tls", "ehba", "smcb"]
    [account] = report.accounts
    assert (account.address, account.login_state, account.fetch_state) == (ADDRESS, OK, OK)
    assert "erfolgreich" in str(account.login_text)


def test_konnektor_stopped_is_503_naming_it(client, ops):
    assert health(client)[0] == 200
    ops.konnektor.stop()
    forget_report()
    status, body = health(client)
    assert status == 503
    assert "konnektor" in body["failing"]
    assert body["components"]["konnektor"] == "error"
    # The cards cannot be asked: not checkable, not a second alarm — and their certificates neither (not "all fine"
    # because only the Clientmodul's could be read).
    assert body["components"]["cards"] == "unknown"
    assert body["components"]["certificates"] == "unknown"
    assert "certificates" in body["warnings"]
    # The rest still works.
    assert body["components"]["clientmodul"] == "ok" and body["components"]["directory"] == "ok"


def test_the_report_is_cached_and_a_new_one_follows_once_it_is_old(client, ops, settings):
    first = health_report()
    ops.konnektor.stop()
    # Within the cache period the same report: many monitors cause one round of checks.
    assert health_report() is not None and health_report().checked_at == first.checked_at
    assert health(client)[0] == 200
    # Once it is older than the period, the next caller checks anew.
    settings.KIMPORTAL_HEALTH_CACHE_SECONDS = 0.0
    status, body = health(client)
    assert status == 503 and "konnektor" in body["failing"]


def test_concurrent_callers_share_one_round(ops):
    results = []
    barrier = threading.Barrier(6)

    def ask() -> None:
        barrier.wait()
        try:
            results.append(health_report().checked_at)
        finally:
            connection.close()

    # The threads have no test transaction: they read the committed state only, which is all they need here
    # (the round itself runs in whichever thread wins the lock and finds no account — still one round).
    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6
    assert len(set(results)) == 1


def test_wrong_cm_password_is_red(client, ops):
    KimAccount.objects.filter(pk=ops.account.pk).delete()
    other = MailboxFactory()
    account = kim_account(ops.cm, password="falsch", mailbox=other)
    assert account.pk
    report = run_checks()
    assert report.component("clientmodul").state == ERROR
    [status_] = report.accounts
    assert status_.login_state == ERROR
    assert "Anmeldung abgelehnt" in str(status_.login_text) or "Passwort" in str(status_.login_text)
    forget_report()
    status, body = health(client)
    assert status == 503 and "clientmodul" in body["failing"]


def test_the_login_test_never_competes_with_a_running_fetch(ops):
    token = account_lease_acquire(account_id=ops.account.pk)
    assert token
    try:
        report = run_checks()
    finally:
        account_lease_release(account_id=ops.account.pk, token=token)
    [account] = report.accounts
    assert account.login_state == OK
    assert "Abruf läuft gerade" in str(account.login_text)
    # And the test gives the lease back: a fetch can start right after it.
    run_checks()
    assert account_lease_acquire(account_id=ops.account.pk) is not None


def test_a_stale_fetch_is_yellow_then_red(ops):
    KimAccount.objects.filter(pk=ops.account.pk).update(last_success_at=timezone.now() - timezone.timedelta(minutes=5))
    assert run_checks().component("fetch").state == WARNING
    KimAccount.objects.filter(pk=ops.account.pk).update(last_success_at=timezone.now() - timezone.timedelta(hours=1))
    assert run_checks().component("fetch").state == ERROR


def test_beat_stamp_stale_is_red(client, ops):
    ops.stamp_heartbeats(age=120)
    report = run_checks()
    assert report.component("celery_beat").state == ERROR
    # Without beat nothing is queued: the worker's silence proves nothing.
    assert report.component("celery_worker").state == UNKNOWN
    forget_report()
    status, body = health(client)
    assert status == 503 and "celery_beat" in body["failing"]


def test_worker_silent_while_beat_publishes_is_red(ops):
    from operations.services import heartbeat

    heartbeat.stamp_beat()
    heartbeat.stamp_worker("worker@test", time.time() - 600)
    report = run_checks()
    assert report.component("celery_beat").state == OK
    assert report.component("celery_worker").state == ERROR


def test_the_heartbeat_task_and_beats_publishing_stamp(ops, settings):
    from celery.signals import before_task_publish

    from operations.services import heartbeat
    from operations.tasks import operations_heartbeat

    ops.stamp_heartbeats(age=600)
    # What beat's process does when it queues the heartbeat, and what a worker does when it runs it.
    before_task_publish.send(sender=heartbeat.HEARTBEAT_TASK, body=(), exchange="", routing_key="celery")
    operations_heartbeat.run()
    beat, worker = heartbeat.read_stamps()
    assert beat.age(time.time()) < 5 and worker.age(time.time()) < 5
    assert worker.host


def test_certificate_ending_within_30_days_is_a_warning(ops, cm_factory):
    cm = cm_factory(cert_days_left=12)
    KimAccount.objects.filter(pk=ops.account.pk).update(pop3_port=cm.pop3_port, tls_fingerprint_sha256=cm.fingerprint)
    report = run_checks()
    [cm_cert] = [c for c in report.certificates if c.kind == "cm_tls"]
    assert cm_cert.state == WARNING and 11 <= cm_cert.days_left <= 12
    assert "Läuft in 11 Tagen ab" in str(cm_cert.text) or "Läuft in 12 Tagen ab" in str(cm_cert.text)
    assert report.component("certificates").state == WARNING
    # A warning is no outage: /health/ stays 200 and says what to look at.
    assert report.state == WARNING and report.failing() == [] and "certificates" in report.warnings()


def test_an_expired_certificate_is_red(ops, cm_factory):
    cm = cm_factory(cert_days_left=-1)
    KimAccount.objects.filter(pk=ops.account.pk).update(pop3_port=cm.pop3_port, tls_fingerprint_sha256=cm.fingerprint)
    report = run_checks()
    [cm_cert] = [c for c in report.certificates if c.kind == "cm_tls"]
    assert cm_cert.state == ERROR and "Abgelaufen" in str(cm_cert.text)


def test_directory_down_is_red(ops, settings):
    from tisim.vzd.slapd import free_port

    settings.KIMPORTAL_VZD_URL = f"ldap://127.0.0.1:{free_port()}"
    report = run_checks()
    assert report.component("directory").state == ERROR
    assert "Verzeichnis" in str(report.component("directory").text)


def test_a_blocked_smcb_pin_is_red(ops):
    smcb = next(card for card in ops.konnektor.cards if card.card_type == "SMC-B")
    smcb.pin_state, smcb.left_tries = "BLOCKED", 0
    report = run_checks()
    assert report.component("cards").state == ERROR
    card = next(card for card in report.cards if card.card_type == "SMC-B")
    assert "gesperrt" in str(card.text)


def test_no_smcb_is_red(ops):
    smcb = next(card for card in ops.konnektor.cards if card.card_type == "SMC-B")
    ops.konnektor.remove_card(smcb)
    report = run_checks()
    assert report.component("cards").state == ERROR
    assert "Keine SMC-B" in str(report.component("cards").text)


def test_health_names_no_patient_data_and_no_addresses(client, ops, django_user_model):
    OutgoingMessage.objects.create(
        mailbox=ops.account.mailbox,
        subject="Befund Erika Mustermann, geb. 01.02.1960",
        to=["praxis@praxis-test.kim.telematik-test"],
        state=OutgoingMessage.State.QUEUED,
        queued_at=timezone.now(),
    )
    # Red everywhere the texts would name hosts and addresses: the JSON must still not.
    ops.konnektor.stop()
    KimAccount.objects.filter(pk=ops.account.pk).update(password_encrypted="")
    forget_report()
    response = client.get("/health/")
    text = response.content.decode()
    assert response.status_code == 503
    for secret in (ADDRESS, "Mustermann", "127.0.0.1", "@", ops.konnektor.base_url, "Klinikum Test"):
        assert secret not in text
    body = json.loads(text)
    assert set(body) == {"status", "checked_at", "age_seconds", "components", "failing", "warnings"}
    assert set(body["components"].values()) <= {OK, WARNING, ERROR, UNKNOWN}


def test_outbox_depth_and_a_stuck_outbox(ops):
    def queued(minutes: int, state: str = OutgoingMessage.State.QUEUED) -> None:
        OutgoingMessage.objects.create(
            mailbox=ops.account.mailbox,
            subject="Rückfrage",
            to=["praxis@praxis-test.kim.telematik-test"],
            state=state,
            queued_at=timezone.now() - timezone.timedelta(minutes=minutes),
        )

    queued(1)
    queued(2, OutgoingMessage.State.FAILED)
    report = run_checks()
    [account] = report.accounts
    assert (account.outbox_waiting, account.outbox_failed, account.outbox_uncertain) == (1, 1, 0)
    assert report.component("outbox").state == OK
    queued(1, OutgoingMessage.State.UNCERTAIN)
    assert run_checks().component("outbox").state == WARNING
    queued(90)
    report = run_checks()
    assert report.component("outbox").state == ERROR
    assert report.accounts[0].outbox_waiting == 2


def test_held_mail_of_a_switched_off_account_is_counted_not_alarmed(ops):
    OutgoingMessage.objects.create(
        mailbox=ops.account.mailbox,
        subject="Rückfrage",
        to=["praxis@praxis-test.kim.telematik-test"],
        state=OutgoingMessage.State.HELD,
        queued_at=timezone.now() - timezone.timedelta(hours=3),
    )
    report = run_checks()
    [account] = report.accounts
    assert (account.outbox_waiting, account.outbox_held) == (0, 1)
    # Not a fault (someone switched it off, on purpose): no alarm for its age, but the operators see it.
    assert report.component("outbox").state == OK
    assert "1 zurückgehalten" in str(report.component("outbox").text)
    assert "Zurückgehaltene Nachrichten gehen erst hinaus" in str(account.outbox_text)


def test_held_mail_of_a_switched_off_mailbox_is_counted_too(ops):
    """A switched-off mailbox's account has no line of its own (nothing is fetched or tested), yet the mail its
    outbox holds is still counted: the outbox line and the metrics name it."""
    off = MailboxFactory(address="alt-station@klinik-test.kim.telematik-test", is_active=False)
    KimAccountFactory(mailbox=off)
    for _ in range(2):
        OutgoingMessage.objects.create(
            mailbox=off,
            subject="Rückfrage",
            to=["praxis@praxis-test.kim.telematik-test"],
            state=OutgoingMessage.State.HELD,
            queued_at=timezone.now() - timezone.timedelta(hours=3),
        )
    report = run_checks()
    assert [account.address for account in report.accounts] == [ADDRESS]
    assert report.held_elsewhere == {off.address: 2}
    assert report.component("outbox").state == OK
    assert "2 zurückgehalten" in str(report.component("outbox").text)


def test_redis_down_is_red_and_checks_still_run_rationed(client, ops, settings):
    # Nothing listens on port 1: the store and the ping both fail.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    first = health_report()
    assert first.component("redis").state == ERROR
    assert first.component("konnektor").state == OK
    # Without the shared store this process keeps its own report: still one round per period.
    assert health_report().checked_at == first.checked_at
    status, body = health(client)
    assert status == 503 and "redis" in body["failing"]


def test_database_down_is_red_and_the_accounts_not_checkable(ops, settings, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def refuse(self, sql, params=None):  # a database that refuses queries (a stopped PostgreSQL)
        raise OSError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", refuse)
    report = run_checks()
    monkeypatch.undo()
    assert report.component("database").state == ERROR
    assert report.component("clientmodul").state == UNKNOWN
    assert report.component("konnektor").state == OK  # the Konnektor is asked all the same


def test_a_workplace_the_konnektor_does_not_know_is_a_warning(ops):
    # The account's WorkplaceId is not configured in the Konnektor's information model (fault 4006).
    KimAccount.objects.filter(pk=ops.account.pk).update(workplace_id="Unbekannt-7")
    report = run_checks()
    cards = report.component("cards")
    assert cards.state == WARNING
    assert "Unbekannt-7" in str(cards.text)
    # The cards of the known workplace are still there.
    assert sorted(card.card_type for card in report.cards) == ["HBA", "SMC-B"]


def test_head_and_other_methods(client, ops):
    assert client.head("/health/").status_code == 200
    assert client.post("/health/").status_code == 405
    assert client.delete("/metrics").status_code == 405


def test_an_smcb_certificate_ending_soon_is_a_warning(ops, monkeypatch):
    import datetime as dt

    from tisim.konnektor import pki

    # The simulator issues this card's certificate for 10 days only (a card near the end of its life).
    monkeypatch.setattr(pki, "VALIDITY", dt.timedelta(days=10))
    ops.konnektor.add_smcb("Klinikum Test Haus B", "5-2-987654321")
    report = run_checks()
    ending = [c for c in report.certificates if c.kind == "smcb" and c.days_left is not None and c.days_left < 30]
    assert len(ending) == 1 and ending[0].state == WARNING
    assert "Klinikum Test Haus B" in str(ending[0].label)
    assert report.component("certificates").state == WARNING
    assert "Klinikum Test Haus B" in str(report.component("certificates").text)


@pytest.mark.django_db(transaction=True)
def test_an_unreachable_database_is_red_and_503(client, ops):
    # Really unreachable (nothing listens on the port), not a mocked cursor.
    with unreachable():
        status, body = health(client)
    assert status == 503, body
    assert body["status"] == "error" and body["components"]["database"] == "error"
    assert "database" in body["failing"]
