"""Every way sending can fail, against the simulated CM: what the outbox shows and that nothing is sent twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from mailbox.models import DeliveryAttempt, DeliveryReport, KimAccount, Message, OutgoingMessage, OutgoingRecipient
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.dsn import report_apply
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import (
    MAX_ATTEMPTS,
    TEXT_NO_RECIPIENT,
    outgoing_deliver,
    outgoing_due,
    outgoing_recover_stale,
    outgoing_resolve_uncertain,
    outgoing_retry,
    outgoing_send,
)
from tests.mailbox.conftest import HOSPITAL, PRAXIS, simple_mail
from tests.mailbox.send.conftest import OUTSIDE

pytestmark = pytest.mark.django_db(transaction=True)


def _queued(user, account, to=(PRAXIS,), subject="Befund") -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=user, mailbox_id=account.mailbox_id, data=OutgoingData(subject=subject, body="Text", to=list(to))
    )
    return outgoing_send(user=user, draft=draft, version=draft.version)


def _make_due(outgoing: OutgoingMessage) -> None:
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(next_try_at=timezone.now() - timedelta(seconds=1))


def _copies(cm, message_id: str) -> int:
    return sum(1 for r in cm.sent_messages() if r.message_id == message_id)


def _fetch_reports(account) -> None:
    assert account_fetch(account_id=account.pk).error == ""


def test_421_is_temporary_retried_with_backoff_and_then_sent_once(cm, account, sender, vzd, sent_tasks):
    cm.arm_smtp_fault(HOSPITAL, "421")
    outgoing = _queued(sender, account)
    before = timezone.now()
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    outgoing.refresh_from_db()
    assert outgoing.next_try_at > before + timedelta(seconds=20)
    assert "vorübergehend" in outgoing.last_error_text and "421" in outgoing.last_error_text
    assert "Nächster Versuch" in outgoing.last_error_text
    # Not due yet: a second task (or the beat) does nothing.
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    assert DeliveryAttempt.objects.filter(outgoing=outgoing).count() == 1
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert list(outgoing.attempts.values_list("outcome", "smtp_code")) == [("temporary", 421), ("sent", 250)]
    assert _copies(cm, outgoing.message_id) == 1
    assert AuditEvent.objects.filter(action="outgoing.attempt_failed").count() == 1


def test_backoff_doubles_and_gives_up_after_max_attempts(cm, account, sender, vzd, sent_tasks):
    cm.arm_smtp_fault(HOSPITAL, "421", times=None)
    outgoing = _queued(sender, account)
    delays = []
    for _ in range(MAX_ATTEMPTS):
        _make_due(outgoing)
        start = timezone.now()
        outgoing_deliver(outgoing_id=outgoing.pk)
        outgoing.refresh_from_db()
        if outgoing.next_try_at:
            delays.append(round((outgoing.next_try_at - start).total_seconds() / 30))
    assert delays[:4] == [1, 2, 4, 8]
    assert outgoing.state == OutgoingMessage.State.FAILED
    assert f"Nach {MAX_ATTEMPTS} Versuchen aufgegeben" in outgoing.last_error_text
    assert set(outgoing.recipient_rows.values_list("state", flat=True)) == {"failed"}
    # A person sends it again once the CM is fine.
    cm.clear_faults()
    outgoing_retry(user=sender, outgoing=outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert AuditEvent.objects.filter(action="outgoing.retried").count() == 1


def _fail_for_good(cm, outgoing: OutgoingMessage) -> None:
    cm.arm_smtp_fault(HOSPITAL, "421", times=None)
    for _ in range(MAX_ATTEMPTS):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.FAILED
    cm.clear_faults()


def test_sending_a_failed_message_again_starts_a_new_round_of_tries(cm, account, sender, vzd, sent_tasks):
    # The CM is back but refuses once more: "Erneut senden" is not one try and a second give-up, but a new round
    # with its backoff from 30 s and all its tries.
    outgoing = _queued(sender, account)
    _fail_for_good(cm, outgoing)
    outgoing_retry(user=sender, outgoing=outgoing)
    cm.arm_smtp_fault(HOSPITAL, "421", times=MAX_ATTEMPTS - 1)
    delays = []
    for _ in range(MAX_ATTEMPTS - 1):
        _make_due(outgoing)
        start = timezone.now()
        assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
        outgoing.refresh_from_db()
        delays.append(round((outgoing.next_try_at - start).total_seconds() / 30))
    assert delays[:3] == [1, 2, 4]
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert outgoing.attempts.count() == 2 * MAX_ATTEMPTS
    assert _copies(cm, outgoing.message_id) == 1


def test_the_second_round_gives_up_after_its_own_tries_and_says_how_many(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account)
    _fail_for_good(cm, outgoing)
    outgoing_retry(user=sender, outgoing=outgoing)
    _fail_for_good(cm, outgoing)
    assert outgoing.attempts.count() == 2 * MAX_ATTEMPTS
    assert f"Nach {MAX_ATTEMPTS} Versuchen aufgegeben" in outgoing.last_error_text


def test_sending_a_waiting_message_now_keeps_its_round(cm, account, sender, vzd, sent_tasks):
    # "Jetzt senden" only brings the next try forward: the round goes on, and gives up at its limit.
    cm.arm_smtp_fault(HOSPITAL, "421", times=None)
    outgoing = _queued(sender, account)
    for _ in range(MAX_ATTEMPTS - 1):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.QUEUED
    outgoing_retry(user=sender, outgoing=outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.FAILED
    assert outgoing.attempts.count() == MAX_ATTEMPTS


def test_no_answer_to_mail_from_is_a_timeout_and_temporary(cm, account, sender, vzd, sent_tasks):
    KimAccount.objects.filter(pk=account.pk).update(timeout_seconds=1.0)
    cm.arm_smtp_fault(HOSPITAL, "timeout")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    outgoing.refresh_from_db()
    assert "Zeitüberschreitung" in outgoing.last_error_text
    assert _copies(cm, outgoing.message_id) == 0


def test_cm_down_is_temporary(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account)
    cm.stop()
    try:
        assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    finally:
        cm.start()
    outgoing.refresh_from_db()
    assert "nicht erreichbar" in outgoing.last_error_text
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT


def test_wrong_password_keeps_the_message_queued_and_says_so(cm, account, sender, vzd, sent_tasks):
    account.set_password("falsch")
    account.save()
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    outgoing.refresh_from_db()
    assert "Benutzername oder Passwort falsch" in outgoing.last_error_text
    event = AuditEvent.objects.get(action="outgoing.attempt_failed")
    assert event.details["needs_admin"] is True


def test_553_sender_without_certificate_fails_permanently_with_the_reason(cm, account, sender, vzd, sent_tasks):
    cm.set_sender_without_certificate(HOSPITAL)
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.FAILED
    outgoing.refresh_from_db()
    assert "Absender" in outgoing.last_error_text and "Verschlüsselungszertifikat" in outgoing.last_error_text
    assert "553" in outgoing.last_error_text
    recipient = outgoing.recipient_rows.get()
    assert (recipient.state, recipient.status_code) == ("failed", "553")
    assert AuditEvent.objects.filter(action="outgoing.failed").count() == 1
    # Permanent: the beat does not try again by itself.
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.FAILED
    assert outgoing.attempts.count() == 1


def test_451_after_data_when_no_recipient_has_a_certificate(cm, account, sender, vzd, sent_tasks):
    cm.set_recipient_state(PRAXIS, "no-certificate")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.FAILED
    outgoing.refresh_from_db()
    assert outgoing.last_error_text.startswith(TEXT_NO_RECIPIENT)
    # What is known: the CM also uses 451 for internal errors.
    assert "internen Fehler" in outgoing.last_error_text
    assert cm.maildrop_uidls(PRAXIS) == []


def test_451_internal_error_of_the_cm_says_both_meanings(cm, account, sender, vzd, sent_tasks):
    cm.arm_smtp_fault(HOSPITAL, "451")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.FAILED
    outgoing.refresh_from_db()
    assert "451" in outgoing.last_error_text and "internen Fehler" in outgoing.last_error_text


def test_drop_after_data_is_uncertain_never_resent_and_the_dsn_reconciles_it(cm, account, sender, vzd, sent_tasks):
    cm.arm_smtp_fault(HOSPITAL, "drop-after-data")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.UNCERTAIN
    outgoing.refresh_from_db()
    assert "ungewiss" in outgoing.last_error_text
    attempt = outgoing.attempts.get()
    assert attempt.final_dot_at is not None and attempt.outcome == "uncertain"
    assert outgoing.recipient_rows.get().state == "uncertain"
    # Neither a duplicate task nor the beat sends it again.
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.UNCERTAIN
    assert _copies(cm, outgoing.message_id) == 1
    assert len(cm.maildrop_uidls(PRAXIS)) == 1
    # The Fachdienst's DSN arrives with the next fetch: delivered after all.
    _fetch_reports(account)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    event = AuditEvent.objects.get(action="outgoing.delivered")
    assert event.details["reconciled"] is True


def test_timeout_after_data_is_uncertain_and_a_person_decides(cm, account, sender, vzd, sent_tasks):
    KimAccount.objects.filter(pk=account.pk).update(timeout_seconds=1.0)
    cm.arm_smtp_fault(HOSPITAL, "timeout-after-data")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.UNCERTAIN
    outgoing.refresh_from_db()
    resolved = outgoing_resolve_uncertain(user=sender, outgoing=outgoing, delivered=True, version=outgoing.version)
    assert resolved.state == OutgoingMessage.State.SENT
    assert resolved.recipient_rows.get().state == "sent"
    assert AuditEvent.objects.get(action="outgoing.uncertain_resolved").details["delivered"] is True
    assert _copies(cm, outgoing.message_id) == 1


def test_a_person_who_says_not_delivered_gets_it_sent_again_with_the_same_bytes(cm, account, sender, vzd, sent_tasks):
    KimAccount.objects.filter(pk=account.pk).update(timeout_seconds=1.0)
    cm.arm_smtp_fault(HOSPITAL, "timeout-after-data")
    outgoing = _queued(sender, account)
    outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    outgoing_resolve_uncertain(user=sender, outgoing=outgoing, delivered=False)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    first, second = [r.raw for r in cm.sent_messages() if r.message_id == outgoing.message_id]
    assert first == second


def test_not_delivered_after_the_last_try_of_a_round_sends_in_a_new_round(cm, account, sender, vzd, sent_tasks):
    KimAccount.objects.filter(pk=account.pk).update(timeout_seconds=1.0)
    cm.arm_smtp_fault(HOSPITAL, "421", times=MAX_ATTEMPTS - 1)
    outgoing = _queued(sender, account)
    for _ in range(MAX_ATTEMPTS - 1):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    cm.arm_smtp_fault(HOSPITAL, "timeout-after-data")
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.UNCERTAIN
    outgoing.refresh_from_db()
    outgoing_resolve_uncertain(user=sender, outgoing=outgoing, delivered=False)
    # The person decided to send it again: a refusal for the moment now waits for the next try, it is no give-up.
    cm.arm_smtp_fault(HOSPITAL, "421")
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT


def test_unknown_recipient_fails_by_dsn_and_the_other_is_delivered(cm, account, sender, vzd, sent_tasks):
    cm.set_recipient_state(OUTSIDE, "unknown")
    outgoing = _queued(sender, account, to=(PRAXIS, OUTSIDE))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    _fetch_reports(account)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.PARTIALLY_DELIVERED
    rows = dict(outgoing.recipient_rows.values_list("address", "state"))
    assert rows == {PRAXIS: "delivered", OUTSIDE: "failed"}
    failed = outgoing.recipient_rows.get(address=OUTSIDE)
    assert failed.status_code == "5.1.1" and "unbekannt" in failed.reason_text
    assert failed.report is not None and failed.report.mailbox_id == account.mailbox_id


def test_mail_to_the_outside_world_is_kept_in_the_outside_drop_and_delivered(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account, to=(OUTSIDE,))
    outgoing_deliver(outgoing_id=outgoing.pk)
    (outside,) = cm.outside_messages()
    assert outside.recipients == [OUTSIDE] and outside.message_id == outgoing.message_id
    _fetch_reports(account)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED


def test_recipient_removed_by_the_cm_is_failed_from_its_error_mail(cm, account, sender, vzd, sent_tasks):
    cm.set_recipient_state(OUTSIDE, "no-certificate", code="4005")
    outgoing = _queued(sender, account, to=(PRAXIS, OUTSIDE))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    _fetch_reports(account)
    outgoing.refresh_from_db()
    failed = outgoing.recipient_rows.get(address=OUTSIDE)
    assert failed.state == "failed" and "4005" in failed.status_code
    assert outgoing.state == OutgoingMessage.State.PARTIALLY_DELIVERED
    kinds = set(DeliveryReport.objects.filter(outgoing=outgoing).values_list("kind", flat=True))
    assert "error_mail" in kinds


def test_cm_error_mail_on_demand_is_matched_and_explained(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account, to=(PRAXIS,))
    outgoing_deliver(outgoing_id=outgoing.pk)
    cm.send_error_mail(outgoing.message_id, "4003")
    _fetch_reports(account)
    row = OutgoingRecipient.objects.get(outgoing=outgoing)
    # The DSN said delivered; the error mail came later and concerns the same recipient: the last word wins.
    assert row.status_code == "4003"
    assert row.state == "failed"
    assert DeliveryReport.objects.filter(outgoing=outgoing, kind="error_mail").count() == 1


def test_reports_that_match_nothing_stay_ordinary_messages(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account)
    outgoing_deliver(outgoing_id=outgoing.pk)
    stranger = simple_mail(
        "Unzustellbar",
        In_Reply_To="<not-ours@kim.local>",
        X_KIM_Fehlermeldung="4004",
    )
    cm.deliver(HOSPITAL, stranger)
    _fetch_reports(account)
    unmatched = Message.objects.get(mailbox=account.mailbox, subject="Unzustellbar")
    assert not DeliveryReport.objects.filter(message=unmatched).exists()
    assert unmatched.state == Message.State.NEW
    # A DSN fetched twice (a re-run after a crash) changes nothing twice.
    matched = DeliveryReport.objects.get(outgoing=outgoing)
    assert report_apply(mailbox=account.mailbox, message=matched.message) is None
    assert DeliveryReport.objects.filter(outgoing=outgoing).count() == 1


@pytest.mark.parametrize(
    "status",
    [
        "Final-Recipient: rfc822; fremd@praxis-test.kim.telematik-test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Final-Recipient rfc822 kaputt\r\nAction failed\r\n",
    ],
    ids=["a-recipient-we-never-sent-to", "unreadable-status"],
)
def test_a_report_on_our_message_naming_none_of_its_recipients_stays_a_message_people_read(
    cm, account, sender, vzd, sent_tasks, status
):
    """The mail system's report names our message but no recipient of it (or none it can read). Applied, it was
    done and a "delivery report", hidden from every list, and linked from no recipient on the message's page: it
    was nowhere to be read."""
    outgoing = _queued(sender, account)
    outgoing_deliver(outgoing_id=outgoing.pk)
    _fetch_reports(account)  # the Fachdienst's real DSN
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    report = (
        f"From: Mail Delivery System <mailer-daemon@fachdienst.example>\r\nTo: {HOSPITAL}\r\n"
        f"Subject: Unzustellbar: Befund\r\nMessage-ID: <odd-report@fachdienst.example>\r\n"
        f"In-Reply-To: {outgoing.message_id}\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nNicht zustellbar.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; fachdienst.example\r\n\r\n"
        f"{status}\r\n--b1--\r\n"
    ).encode()
    cm.deliver(HOSPITAL, report)
    _fetch_reports(account)
    kept = Message.objects.get(mailbox=account.mailbox, subject="Unzustellbar: Befund")
    assert not DeliveryReport.objects.filter(message=kept).exists()
    assert kept.state == Message.State.NEW and not kept.is_delivery_report
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    assert outgoing.recipient_rows.get().state == "delivered"


def test_a_delayed_dsn_keeps_the_message_sent_and_the_final_one_settles_it(cm, account, sender, vzd, sent_tasks):
    cm.set_recipient_state(OUTSIDE, "delayed")
    outgoing = _queued(sender, account, to=(OUTSIDE,))
    outgoing_deliver(outgoing_id=outgoing.pk)
    _fetch_reports(account)
    outgoing.refresh_from_db()
    row = outgoing.recipient_rows.get()
    assert outgoing.state == OutgoingMessage.State.SENT
    assert row.state == "delayed" and "verzögert" in row.reason_text
    cm.release_delayed(OUTSIDE, outcome="delivered")
    _fetch_reports(account)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    assert outgoing.recipient_rows.get().state == "delivered"


def test_the_beat_sends_what_is_due_and_never_what_is_uncertain(cm, account, sender, vzd, sent_tasks):
    due = _queued(sender, account, subject="fällig")
    later = _queued(sender, account, subject="später")
    OutgoingMessage.objects.filter(pk=later.pk).update(next_try_at=timezone.now() + timedelta(minutes=5))
    uncertain = _queued(sender, account, subject="ungewiss")
    OutgoingMessage.objects.filter(pk=uncertain.pk).update(state=OutgoingMessage.State.UNCERTAIN)
    assert outgoing_due() == [due.pk]
    # A message whose worker holds a live lease is left alone; an expired one is recovered.
    OutgoingMessage.objects.filter(pk=due.pk).update(
        state=OutgoingMessage.State.SENDING, lease_until=timezone.now() + timedelta(minutes=1)
    )
    assert outgoing_recover_stale() == []
    OutgoingMessage.objects.filter(pk=due.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert outgoing_recover_stale() == [due.pk]
    assert outgoing_due() == [due.pk]


def test_a_worker_that_lost_its_lease_stops_before_the_end_of_data(cm, account, sender, vzd, sent_tasks, monkeypatch):
    import mailbox.services.outbox as outbox

    outgoing = _queued(sender, account)
    real_send = outbox.smtp_send

    def taken_over(*args, **kwargs):
        # Another worker took the message over while this one was still talking to the CM.
        OutgoingMessage.objects.filter(pk=outgoing.pk).update(lease_token="someone-else")
        return real_send(*args, **kwargs)

    monkeypatch.setattr(outbox, "smtp_send", taken_over)
    outgoing_deliver(outgoing_id=outgoing.pk)
    attempt = outgoing.attempts.get()
    assert attempt.outcome == "aborted" and attempt.final_dot_at is None
    assert _copies(cm, outgoing.message_id) == 0 and cm.maildrop_uidls(PRAXIS) == []


def test_the_cms_notice_about_a_received_reply_it_could_not_decrypt_is_no_report_on_our_message(
    cm, account, sender, vzd, sent_tasks
):
    outgoing = _queued(sender, account)
    outgoing_deliver(outgoing_id=outgoing.pk)
    _fetch_reports(account)
    reply = simple_mail("AW: Befund", In_Reply_To=outgoing.message_id, References=outgoing.message_id)
    # KOM-LE-A_2046: headers copied from the undecryptable mail, the mail itself embedded.
    notice = (
        (
            f"From: Praxis Test <{PRAXIS}>\r\nTo: {HOSPITAL}\r\n"
            "Subject: Beim Entschluesseln ist ein Fehler aufgetreten\r\n"
            f"Message-ID: <notice-1@cm.local>\r\nIn-Reply-To: {outgoing.message_id}\r\n"
            "X-KIM-Fehlermeldung: 4009\r\nX-KIM-DecryptionResult: 4009\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n'
            "Schluessel nicht verfuegbar.\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\n"
        ).encode()
        + reply
        + b"\r\n--b1--\r\n"
    )
    cm.deliver(HOSPITAL, notice)
    _fetch_reports(account)
    kept = Message.objects.get(mailbox=account.mailbox, message_id="<notice-1@cm.local>")
    assert not DeliveryReport.objects.filter(message=kept).exists()
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
