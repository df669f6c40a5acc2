"""A recipient knows our Message-ID: it may write a "delivery report" of its own and send it to us.

Real DSNs come from the Fachdienst and real error mails from our own CM, both with the null sender
(RFC 3461 §6.2: a DSN's envelope sender is the null reverse-path), unencrypted. A participant can only send
from its own address (the Fachdienst enforces A_23421), and the mail system writes that address as the
topmost Return-Path; a mail our CM decrypted carries its results. Neither may change our sent message: the
forgery stays an ordinary message in the inbox, where people see it.
"""

from __future__ import annotations

import pytest

from mailbox.models import DeliveryReport, Message, OutgoingMessage
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver, outgoing_send
from tests.mailbox.conftest import HOSPITAL, PRAXIS, send_as_practice

pytestmark = pytest.mark.django_db(transaction=True)


def _delivered(account, sender) -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=[PRAXIS])
    )
    outgoing = outgoing_send(user=sender, draft=draft, version=draft.version)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert account_fetch(account_id=account.pk).error == ""  # the Fachdienst's real DSN
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    return outgoing


def _forged_dsn(message_id: str, *, fault: str | None) -> bytes:
    # It even writes a null Return-Path of its own: the one the mail system puts on top is what counts.
    head = (
        f"Return-Path: <>\r\nFrom: {PRAXIS}\r\nTo: {HOSPITAL}\r\n"
        "Subject: Zustellbenachrichtigung (fehlgeschlagen)\r\nMessage-ID: <forged-1@praxis-test.kim.telematik-test>\r\n"
        f"In-Reply-To: {message_id}\r\nReferences: {message_id}\r\nAuto-Submitted: auto-replied\r\n"
        + (f"X-Tisim-Fault: {fault}\r\n" if fault else "")
        + 'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n\r\n'
    )
    body = (
        "--b1\r\nContent-Type: text/plain\r\n\r\nNicht zustellbar.\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; fachdienst.example\r\n\r\n"
        f"Final-Recipient: rfc822; {PRAXIS}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {message_id}\r\n\r\n--b1--\r\n"
    )
    return (head + body).encode()


def _kept_as_mail(account, subject: str) -> None:
    assert account_fetch(account_id=account.pk).error == ""
    forged = Message.objects.get(mailbox=account.mailbox, subject=subject)
    assert not DeliveryReport.objects.filter(message=forged).exists()
    assert forged.state == Message.State.NEW and not forged.is_delivery_report


@pytest.mark.parametrize("fault", [None, "unencrypted"], ids=["through-its-cm", "unencrypted"])
def test_a_dsn_written_by_a_recipient_does_not_fail_our_message(cm, account, sender, vzd, sent_tasks, fault):
    outgoing = _delivered(account, sender)
    send_as_practice(cm, _forged_dsn(outgoing.message_id, fault=fault))
    _kept_as_mail(account, "Zustellbenachrichtigung (fehlgeschlagen)")
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    assert outgoing.recipient_rows.get().state == "delivered"


def test_a_reply_claiming_to_be_a_cm_error_mail_does_not_fail_our_message(cm, account, sender, vzd, sent_tasks):
    # An error mail without recipient blocks concerns every recipient: the cheapest forgery of all, a reply
    # (In-Reply-To set as any reply has it) with one more header.
    outgoing = _delivered(account, sender)
    reply = (
        f"From: {PRAXIS}\r\nTo: {HOSPITAL}\r\nSubject: AW: Befund\r\n"
        f"Message-ID: <reply-1@praxis-test.kim.telematik-test>\r\nIn-Reply-To: {outgoing.message_id}\r\n"
        "X-KIM-Fehlermeldung: 4004\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nDanke.\r\n"
    ).encode()
    send_as_practice(cm, reply)
    _kept_as_mail(account, "AW: Befund")
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    assert outgoing.recipient_rows.get().state == "delivered"


def test_the_cms_error_mail_sent_as_our_own_account_is_still_applied(cm, account, sender, vzd, sent_tasks):
    # A CM may hand its error mail to the Fachdienst as our account (A_23421 allows no other sender): then our
    # own address is the Return-Path, which no participant can forge.
    outgoing = _delivered(account, sender)
    error_mail = (
        f"Return-Path: <{HOSPITAL.upper()}>\r\nFrom: KIM-Clientmodul <{HOSPITAL}>\r\nTo: {HOSPITAL}\r\n"
        "Subject: KIM-Nachricht: Fehler beim Versand\r\nMessage-ID: <cm-err-1@cm.local>\r\n"
        f"In-Reply-To: {outgoing.message_id}\r\nX-KIM-Fehlermeldung: 4004\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nNicht verschluesselt.\r\n"
    ).encode()
    cm.deliver(HOSPITAL, error_mail)
    assert account_fetch(account_id=account.pk).error == ""
    outgoing.refresh_from_db()
    row = outgoing.recipient_rows.get()
    assert (row.state, row.status_code) == ("failed", "4004")


def test_the_cms_error_mail_without_any_return_path_is_still_applied(cm, account, sender, vzd, sent_tasks):
    # A mail the CM writes itself never passes a final delivery, so nothing puts a Return-Path on it: gematik's own
    # example of a CM error mail has none (spec/kim/samples/extracted/FAQ_example_integrity_check_failed_error_
    # message.eml). A participant's mail always reaches us through the Fachdienst, whose delivery writes one.
    outgoing = _delivered(account, sender)
    error_mail = (
        f"From: KIM-Clientmodul <{HOSPITAL}>\r\nTo: {HOSPITAL}\r\n"
        "Subject: KIM-Nachricht: Fehler beim Versand\r\nMessage-ID: <cm-err-2@cm.local>\r\n"
        f"In-Reply-To: {outgoing.message_id}\r\nX-KIM-Fehlermeldung: 4004\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nNicht verschluesselt.\r\n"
    ).encode()
    cm.deliver(HOSPITAL, error_mail)
    assert account_fetch(account_id=account.pk).error == ""
    outgoing.refresh_from_db()
    row = outgoing.recipient_rows.get()
    assert (row.state, row.status_code) == ("failed", "4004")
