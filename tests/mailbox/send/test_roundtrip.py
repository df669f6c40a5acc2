"""Portal → simulated CM → another simulated mailbox → portal: the bytes that arrive follow the gematik rules."""

from __future__ import annotations

import email
import re
from email.policy import default

import pytest

from audit.models import AuditEvent
from mailbox.models import DeliveryReport, Message, OutgoingMessage, OutgoingRecipient
from mailbox.selectors.messages import message_list_for_user
from mailbox.selectors.outbox import outgoing_timeline, thread_for_user
from mailbox.services.compose import (
    OutgoingData,
    outgoing_attachment_add,
    outgoing_draft_save,
    outgoing_forward_start,
    outgoing_reply_start,
)
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver, outgoing_send
from mailbox.storage import blob_get
from tests.mailbox.conftest import HOSPITAL, PRAXIS
from tests.mailbox.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

MESSAGE_ID = re.compile(r"^<[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}@kim\.local>$")
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def _send(user, mailbox_id, **fields) -> OutgoingMessage:
    draft = outgoing_draft_save(user=user, mailbox_id=mailbox_id, data=OutgoingData(**fields))
    return outgoing_send(user=user, draft=draft, version=draft.version)


def test_new_message_reaches_the_practice_with_the_rules_kept_and_comes_back_as_a_reply(
    cm, account, praxis_account, sender, vzd, sent_tasks
):
    draft = outgoing_draft_save(
        user=sender,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(
            subject="Entlassbrief Müller",
            body="Sehr geehrte Kollegin,\n.ein Punkt am Zeilenanfang\nanbei der Brief – mit Umlauten äöü.\n",
            to=[PRAXIS.upper()],
        ),
    )
    outgoing_attachment_add(user=sender, draft=draft, filename="Brief Müller.pdf", content=PDF)
    queued = outgoing_send(user=sender, draft=draft, version=None)
    assert queued.state == OutgoingMessage.State.QUEUED
    assert MESSAGE_ID.match(queued.message_id)
    assert sent_tasks == [("mailbox.tasks.outgoing_deliver", (queued.pk,))]

    assert outgoing_deliver(outgoing_id=queued.pk) == OutgoingMessage.State.SENT
    # Delivering again (a duplicate task) sends nothing.
    assert outgoing_deliver(outgoing_id=queued.pk) == OutgoingMessage.State.SENT
    records = cm.sent_messages()
    assert len(records) == 1
    record = records[0]
    assert record.envelope_from == HOSPITAL
    assert record.recipients == [PRAXIS]
    assert cm.header_violations() == []

    sent = email.message_from_bytes(record.raw, policy=default)
    assert sent["From"].addresses[0].addr_spec == HOSPITAL
    assert "Sender" not in sent and "Reply-To" not in sent
    assert sent["Message-ID"] == queued.message_id
    assert sent["X-KIM-Dienstkennung"] == "KIM-Mail;Default;V1.0"
    assert re.match(r"^[^;]+;\d+\.\d+\.\d+$", sent["X-KIM-Sendersystem"])
    assert re.match(r"^[^@\s]+@[^@\s]+\.[a-z]+$", sent["X-KIM-Support"])
    assert re.match(r"^[A-Za-z0-9._-]+/\d+\.\d+\.\d+$", sent["X-TI-User-Agent"])
    assert sent["Date"] and sent["To"] == PRAXIS
    assert sent.get_content_type() == "multipart/mixed"
    text, pdf = list(sent.iter_parts())
    assert text.get_content_type() == "text/plain"
    assert text.get_content().replace("\r\n", "\n") == (
        "Sehr geehrte Kollegin,\n.ein Punkt am Zeilenanfang\nanbei der Brief – mit Umlauten äöü.\n"
    )
    assert pdf.get_filename() == "Brief Müller.pdf"
    assert pdf.get_content() == PDF
    assert b"x-kas" not in record.raw.lower()
    # No HTML and no multipart/alternative anywhere (KIM-Mail;Default is text/plain only).
    assert {p.get_content_type() for p in sent.walk()} == {"multipart/mixed", "text/plain", "application/pdf"}

    # The practice's portal fetches it: one message, same Message-ID, the attachment intact.
    assert account_fetch(account_id=praxis_account.pk).error == ""
    received = Message.objects.get(mailbox=praxis_account.mailbox)
    assert received.message_id == queued.message_id
    assert received.subject == "Entlassbrief Müller"
    assert received.text_body.startswith("Sehr geehrte Kollegin,\n.ein Punkt am Zeilenanfang\nanbei der Brief")
    assert [a.filename for a in received.attachments.all()] == ["Brief Müller.pdf"]

    # The DSN (NOTIFY=SUCCESS) is matched: the timeline says "zugestellt", the report is no open work.
    assert account_fetch(account_id=account.pk).error == ""
    queued.refresh_from_db()
    assert queued.state == OutgoingMessage.State.DELIVERED
    recipient = OutgoingRecipient.objects.get(outgoing=queued)
    assert (recipient.address, recipient.state, recipient.status_code) == (PRAXIS, "delivered", "2.0.0")
    report = DeliveryReport.objects.get(outgoing=queued)
    assert report.kind == "dsn" and report.message.state == Message.State.DONE
    # It lives on the sent message's timeline, not as a row of the inbox.
    assert report.message.is_delivery_report
    assert report.message_id not in [m.pk for m in message_list_for_user(sender).object_list]
    timeline = outgoing_timeline(queued)
    assert [s.state for s in timeline.recipients[0].steps] == ["queued", "sent", "delivered"]
    assert [a.outcome for a in timeline.attempts] == ["sent"]

    # The practice answers from its portal; the reply is threaded with the letter on the hospital's side.
    praxis_user = UserFactory(username="mfa")
    MembershipFactory(mailbox=praxis_account.mailbox, user=praxis_user)
    reply = outgoing_reply_start(user=praxis_user, message=received)
    assert reply.to == [HOSPITAL] and reply.subject == "AW: Entlassbrief Müller"
    reply_sent = outgoing_send(user=praxis_user, draft=reply, version=reply.version)
    assert outgoing_deliver(outgoing_id=reply_sent.pk) == OutgoingMessage.State.SENT
    wire = email.message_from_bytes(cm.sent_messages()[-1].raw, policy=default)
    assert wire["In-Reply-To"] == queued.message_id
    assert wire["References"] == queued.message_id
    account_fetch(account_id=account.pk)
    answer = Message.objects.get(mailbox=account.mailbox, message_id=reply_sent.message_id)
    assert answer.in_reply_to == queued.message_id
    assert answer.pk in [m.pk for m in message_list_for_user(sender).object_list]  # a reply is inbox mail
    thread = thread_for_user(sender, answer)
    assert [(i.is_sent, (i.outgoing or i.message).message_id) for i in thread] == [
        (True, queued.message_id),
        (False, reply_sent.message_id),
    ]
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions.count("outgoing.queued") == 2 and actions.count("outgoing.sent") == 2
    assert "outgoing.delivered" in actions


def test_forward_carries_the_original_unchanged_as_message_rfc822_with_a_new_message_id(
    cm, account, praxis_account, sender, vzd, sent_tasks
):
    original = (
        b"From: Praxis <" + PRAXIS.encode() + b">\r\nTo: " + HOSPITAL.encode() + b"\r\n"
        b"Subject: Befund\r\nMessage-ID: <orig-1@praxis-test.kim.telematik-test>\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nBefund f\xc3\xbcr Herrn M.\r\n.\r\n"
    )
    cm.deliver(HOSPITAL, original)
    account_fetch(account_id=account.pk)
    message = Message.objects.get(mailbox=account.mailbox)
    draft = outgoing_forward_start(user=sender, message=message)
    draft = outgoing_draft_save(
        user=sender,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject=draft.subject, body="Zur Kenntnis.", to=[PRAXIS]),
        draft=draft,
        version=draft.version,
    )
    sent = outgoing_send(user=sender, draft=draft, version=draft.version)
    outgoing_deliver(outgoing_id=sent.pk)
    raw = cm.sent_messages()[-1].raw
    assert cm.header_violations() == []
    wire = email.message_from_bytes(raw, policy=default)
    assert wire["Subject"] == "WG: Befund"
    assert wire["Message-ID"] == sent.message_id != "<orig-1@praxis-test.kim.telematik-test>"
    assert "In-Reply-To" not in wire
    assert wire["References"] == "<orig-1@praxis-test.kim.telematik-test>"
    part = next(p for p in wire.iter_parts() if p.get_content_type() == "message/rfc822")
    assert part.get_content_disposition() == "inline"
    # The original stored when it was fetched, byte for byte (line ends as SMTP carries them), dot-unstuffed.
    assert blob_get(message.raw_sha256).replace(b"\r\n", b"\n") in raw.replace(b"\r\n", b"\n")
