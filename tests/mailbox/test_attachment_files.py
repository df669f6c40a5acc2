"""Attachments served from a received message (mailbox.views.files): what the audit trail says was opened."""

from __future__ import annotations

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _mail_with_two_files_of_one_name() -> bytes:
    lines = [
        "From: Dr. Anna Sender <sender@arzt.kim.telematik-test>",
        "To: station@klinik.kim.telematik-test",
        "Subject: Zwei Befunde",
        "Message-ID: <zwei-befunde@arzt.kim.telematik-test>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="b"',
        "",
        "--b",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Anbei zwei Befunde.",
    ]
    for content in ("%PDF-1.4 erster", "%PDF-1.4 zweiter"):
        lines += ["--b", "Content-Type: application/pdf", 'Content-Disposition: attachment; filename="befund.pdf"', ""]
        lines.append(content)
    lines.append("--b--")
    return "\r\n".join(lines).encode("ascii") + b"\r\n"


def test_the_audit_trail_tells_which_of_two_files_of_one_name_was_opened(client):
    member = UserFactory(username="station")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=member)
    message = message_ingest(mailbox=box, uidl="zwei", raw=_mail_with_two_files_of_one_name())
    first, second = message.attachments.order_by("position")
    assert first.filename == second.filename == "befund.pdf"
    client.force_login(member)
    response = client.get(reverse("mailbox:attachment-download", args=[message.pk, second.position]))
    assert b"".join(response.streaming_content).startswith(b"%PDF-1.4 zweiter")
    event = AuditEvent.objects.get(action="attachment.downloaded", message_id=message.pk)
    assert event.details["attachment"] == "befund.pdf"
    assert event.details["position"] == second.position
