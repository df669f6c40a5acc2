"""Recipients the CM refuses at RCPT TO, one by one, against the simulated CM's real SMTP.

A temporary refusal (4xx) keeps that recipient queued and retries it with the outbox's backoff, up to the
limit of any temporary failure; a permanent one (5xx) fails it at once. A recipient the CM accepted is never
sent the message a second time.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from mailbox.models import OutgoingMessage
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import MAX_ATTEMPTS, TEXT_PARTIAL, outgoing_deliver, outgoing_retry, outgoing_send
from tests.mailbox.conftest import HOSPITAL, PRAXIS
from tests.mailbox.send.conftest import OUTSIDE

pytestmark = pytest.mark.django_db(transaction=True)


def _queued(user, account, to=(PRAXIS, OUTSIDE)) -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=user, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=list(to))
    )
    return outgoing_send(user=user, draft=draft, version=draft.version)


def _make_due(outgoing: OutgoingMessage) -> None:
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(next_try_at=timezone.now() - timedelta(seconds=1))


def _submissions(cm, outgoing: OutgoingMessage) -> list[list[str]]:
    return [sorted(r.recipients) for r in cm.sent_messages() if r.message_id == outgoing.message_id]


def _rows(outgoing: OutgoingMessage) -> dict[str, str]:
    return dict(outgoing.recipient_rows.values_list("address", "state"))


def test_a_temporary_refusal_retries_only_that_recipient_later(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(OUTSIDE, "450")
    outgoing = _queued(sender, account)
    before = timezone.now()

    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "sent", OUTSIDE: "queued"}
    assert outgoing.next_try_at > before + timedelta(seconds=20)
    assert OUTSIDE in outgoing.last_error_text and "450" in outgoing.last_error_text
    assert "Nächster Versuch" in outgoing.last_error_text
    waiting = outgoing.recipient_rows.get(address=OUTSIDE)
    assert "vorübergehend" in waiting.reason_text and waiting.status_code == "450"
    # The retry is scheduled as for any temporary failure.
    assert sent_tasks[-1] == ("mailbox.tasks.outgoing_deliver", (outgoing.pk,))
    # Not due yet: nothing happens.
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED

    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "sent", OUTSIDE: "sent"}
    assert outgoing.last_error_text == ""
    # The practice got one letter, the outside recipient one: the second submission named only the latter.
    assert _submissions(cm, outgoing) == [[PRAXIS], [OUTSIDE]]
    assert len(cm.maildrop_uidls(PRAXIS)) == 1
    assert len(cm.outside_messages()) == 1
    assert list(outgoing.attempts.values_list("outcome", flat=True)) == ["sent", "sent"]
    event = AuditEvent.objects.get(action="outgoing.attempt_failed")
    assert event.details["recipients"] == [OUTSIDE]


def test_a_permanent_refusal_fails_that_recipient_at_once(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(OUTSIDE, "550")
    outgoing = _queued(sender, account)

    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "sent", OUTSIDE: "failed"}
    assert outgoing.next_try_at is None
    assert outgoing.last_error_text == TEXT_PARTIAL
    assert outgoing.recipient_rows.get(address=OUTSIDE).status_code == "550"


def test_all_refused_at_rcpt_each_by_its_own_reply(cm, account, sender, vzd, sent_tasks):
    # The last reply is temporary: the permanently refused recipient must still not be tried again.
    cm.arm_rcpt_fault(PRAXIS, "550")
    cm.arm_rcpt_fault(OUTSIDE, "451")
    outgoing = _queued(sender, account)

    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "queued"}
    assert _submissions(cm, outgoing) == []

    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "sent"}
    assert _submissions(cm, outgoing) == [[OUTSIDE]]
    assert cm.maildrop_uidls(PRAXIS) == []


def test_a_recipient_refused_every_time_fails_after_the_retry_limit(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(OUTSIDE, "452", times=None)
    outgoing = _queued(sender, account)
    for _ in range(MAX_ATTEMPTS):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.SENT
    assert _rows(outgoing) == {PRAXIS: "sent", OUTSIDE: "failed"}
    failed = outgoing.recipient_rows.get(address=OUTSIDE)
    assert f"Nach {MAX_ATTEMPTS} Versuchen aufgegeben" in failed.reason_text and "452" in failed.reason_text
    assert outgoing.last_error_text == TEXT_PARTIAL
    assert outgoing.attempts.count() == MAX_ATTEMPTS
    assert _submissions(cm, outgoing) == [[PRAXIS]]


def test_the_only_recipient_refused_every_time_fails_the_message(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(OUTSIDE, "450", times=None)
    outgoing = _queued(sender, account, to=(OUTSIDE,))
    for _ in range(MAX_ATTEMPTS):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.FAILED
    assert f"Nach {MAX_ATTEMPTS} Versuchen aufgegeben" in outgoing.last_error_text
    assert _rows(outgoing) == {OUTSIDE: "failed"}


def test_sending_again_never_repeats_a_recipient_the_cm_took(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(OUTSIDE, "450")
    outgoing = _queued(sender, account)
    outgoing_deliver(outgoing_id=outgoing.pk)
    # Then the CM breaks down for good: the rest of the message fails after the retry limit.
    cm.arm_smtp_fault(HOSPITAL, "421", times=None)
    for _ in range(MAX_ATTEMPTS - 1):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.FAILED
    assert _rows(outgoing) == {PRAXIS: "sent", OUTSIDE: "failed"}

    cm.clear_faults()
    outgoing_retry(user=sender, outgoing=outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _submissions(cm, outgoing) == [[PRAXIS], [OUTSIDE]]
    assert len(cm.maildrop_uidls(PRAXIS)) == 1


def test_sending_a_waiting_message_now_leaves_the_refused_and_the_accepted_alone(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(PRAXIS, "550")
    cm.arm_rcpt_fault(OUTSIDE, "450")
    third = HOSPITAL  # a copy to the own mailbox: the third address in the directory with a certificate
    outgoing = _queued(sender, account, to=(PRAXIS, OUTSIDE, third))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "queued", third: "sent"}

    outgoing_retry(user=sender, outgoing=outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "sent", third: "sent"}
    assert _submissions(cm, outgoing) == [[third], [OUTSIDE]]


def _fetch_reports(account) -> None:
    assert account_fetch(account_id=account.pk).error == ""


def test_sending_a_failed_message_again_never_repeats_a_recipient_whose_delivery_is_delayed(
    cm, account, sender, vzd, sent_tasks
):
    # The CM took the letter for OUTSIDE (the Fachdienst reports it delayed), PRAXIS was refused for the moment and
    # then the CM broke down for good: the message fails for PRAXIS. "Erneut senden" is for PRAXIS only.
    cm.set_recipient_state(OUTSIDE, "delayed")
    cm.arm_rcpt_fault(PRAXIS, "450")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    _fetch_reports(account)
    assert _rows(outgoing) == {PRAXIS: "queued", OUTSIDE: "delayed"}
    cm.arm_smtp_fault(HOSPITAL, "421", times=None)
    for _ in range(MAX_ATTEMPTS - 1):
        _make_due(outgoing)
        outgoing_deliver(outgoing_id=outgoing.pk)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.FAILED
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "delayed"}

    cm.clear_faults()
    outgoing_retry(user=sender, outgoing=outgoing)
    assert _rows(outgoing) == {PRAXIS: "queued", OUTSIDE: "delayed"}
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _submissions(cm, outgoing) == [[OUTSIDE], [PRAXIS]]


def test_an_error_mail_naming_no_recipient_concerns_only_those_the_cm_was_given(cm, account, sender, vzd, sent_tasks):
    # The CM took the letter for PRAXIS and refused OUTSIDE for the moment; its error mail about that submission
    # names nobody. It is not about OUTSIDE, who still waits for its next try.
    cm.arm_rcpt_fault(OUTSIDE, "450")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    cm.send_error_mail(outgoing.message_id, "4004", recipients=[])
    _fetch_reports(account)

    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "queued"}
    assert outgoing.state == OutgoingMessage.State.QUEUED
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "sent"}
    assert _submissions(cm, outgoing) == [[PRAXIS], [OUTSIDE]]


def test_a_report_on_the_first_recipients_does_not_settle_an_uncertain_later_attempt(
    cm, account, sender, vzd, sent_tasks
):
    # PRAXIS got the letter in the first attempt; OUTSIDE was refused for the moment. The answer to the second
    # attempt (OUTSIDE only) is lost after the end of DATA: uncertain. PRAXIS's DSN arriving now is about the first
    # submission; it proves nothing about OUTSIDE's, which stays for its own report or a person.
    cm.set_hold_dsns(True)
    cm.arm_rcpt_fault(OUTSIDE, "450")
    outgoing = _queued(sender, account)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    cm.arm_smtp_fault(HOSPITAL, "drop-after-data")
    _make_due(outgoing)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.UNCERTAIN
    assert _rows(outgoing) == {PRAXIS: "sent", OUTSIDE: "uncertain"}
    first, second = cm.held_dsns()
    assert PRAXIS.encode() in first.raw and OUTSIDE.encode() in second.raw

    cm.deliver(HOSPITAL, first.raw)
    _fetch_reports(account)
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "delivered", OUTSIDE: "uncertain"}
    assert outgoing.state == OutgoingMessage.State.UNCERTAIN

    cm.deliver(HOSPITAL, second.raw)
    _fetch_reports(account)
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "delivered", OUTSIDE: "delivered"}
    assert outgoing.state == OutgoingMessage.State.DELIVERED
