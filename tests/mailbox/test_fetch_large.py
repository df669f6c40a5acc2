"""Large mails (KIM 1.5: up to 700 MiB) arrive without the fetching worker holding them in memory.

A 30 MB mail goes through the simulator's real POP3: RETR streams into the blob store, the parse
reads that file, the attachment is decoded straight into its blob. tracemalloc's peak of the whole
fetch stays far below the mail's size (the bench measures a 200 MB mail's RSS), and the mail
queued behind it arrives as well. The parser's file path gives what the in-memory one gives.
"""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
from email.message import EmailMessage

import pytest

from mailbox.models import Attachment, Message
from mailbox.parsing import SpilledPayload, parse_message, parse_message_file
from mailbox.services.fetch import account_fetch
from mailbox.storage import blob_get, blob_path
from tests.mailbox.conftest import HOSPITAL, PRAXIS, simple_mail

PDF_BYTES = 22 * 1024 * 1024  # ≈ 30 MB once base64-encoded


def _large_mail(payload: bytes) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Radiologie <{PRAXIS}>"
    msg["To"] = HOSPITAL
    msg["Subject"] = "Großer Befund mit Bildern"
    msg["Message-ID"] = "<gross-1@praxis-test.kim.telematik-test>"
    msg.set_content("Sehr geehrte Kollegen,\nanbei die Aufnahmen.\n")
    msg.add_alternative("<p>Sehr geehrte Kollegen,<br>anbei die Aufnahmen.</p>", subtype="html")
    msg.add_attachment(payload, maintype="application", subtype="pdf", filename="Aufnahmen.pdf")
    return msg.as_bytes()


@pytest.mark.django_db(transaction=True)
def test_a_large_mail_is_streamed_to_disk_and_the_mail_behind_it_arrives(cm, account):
    payload = os.urandom(PDF_BYTES)
    raw = _large_mail(payload)
    assert len(raw) > 29_000_000
    raw = cm.maildrop_read(HOSPITAL, cm.deliver(HOSPITAL, raw))  # as the CM keeps it: CRLF
    cm.deliver(HOSPITAL, simple_mail("Dahinter"))

    tracemalloc.start()
    try:
        result = account_fetch(account_id=account.pk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert result.error == ""
    assert sorted(Message.objects.values_list("subject", flat=True)) == ["Dahinter", "Großer Befund mit Bildern"]
    # Far below the mail's size: neither the 30 MB mail nor its 22 MB attachment were ever held whole.
    assert peak < 12_000_000, f"peak {peak / 1e6:.1f} MB"
    large = Message.objects.get(subject="Großer Befund mit Bildern")
    assert large.size == len(raw) and large.pop3_size == len(raw)
    assert "anbei die Aufnahmen" in large.text_body and "<p>" in large.html_body
    pdf = Attachment.objects.get(message=large)
    assert (pdf.filename, pdf.content_type, pdf.size) == ("Aufnahmen.pdf", "application/pdf", PDF_BYTES)
    assert pdf.sha256 == hashlib.sha256(payload).hexdigest()
    with blob_path(pdf.sha256).open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == pdf.sha256
    assert blob_get(large.raw_sha256) == raw
    assert cm.maildrop_uidls(HOSPITAL) == []
    # No spool file is left behind in the store.
    incoming = blob_path(large.raw_sha256).parents[2] / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())


class _MemorySink:
    def __init__(self) -> None:
        self.data = bytearray()
        self.size = 0

    def write(self, data: bytes) -> None:
        self.data += data
        self.size += len(data)

    def finish(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def discard(self) -> None:
        self.data.clear()


def _payload(attachment) -> bytes:
    if isinstance(attachment.payload, SpilledPayload):
        assert isinstance(attachment.payload.handle, _MemorySink)
        return bytes(attachment.payload.handle.data)
    return attachment.payload


def _mixed_mail(*, lf_only: bool = False) -> bytes:
    inner = EmailMessage()
    inner["Subject"] = "Weitergeleiteter Befund"
    inner["From"] = "a@praxis.kim.telematik-test"
    inner.set_content("innen")
    inner.add_attachment(os.urandom(2_000_000), maintype="application", subtype="octet-stream", filename="in.bin")
    msg = EmailMessage()
    msg["From"] = f"Praxis <{PRAXIS}>"
    msg["To"] = HOSPITAL
    msg["Subject"] = "Gemischt"
    msg.set_content("Text\n.\n..Punkte\n")
    msg.add_alternative("<p>HTML</p>", subtype="html")
    msg.add_attachment(os.urandom(3_000_000), maintype="application", subtype="pdf", filename="befund.pdf")
    msg.add_attachment("Zeile äöü\n" * 300_000, subtype="plain", filename="log.txt", cte="quoted-printable")
    msg.add_attachment(inner)
    msg.add_attachment(b"klein", maintype="application", subtype="octet-stream", filename="klein.bin")
    raw = msg.as_bytes()
    return raw.replace(b"\r\n", b"\n") if lf_only else raw


@pytest.mark.parametrize("lf_only", [False, True], ids=["crlf", "lf"])
def test_the_file_parse_gives_what_the_memory_parse_gives(lf_only):
    raw = _mixed_mail(lf_only=lf_only)
    in_memory = parse_message(raw)
    from_file = parse_message_file(io.BytesIO(raw), spill=_MemorySink)

    for name in ("from_address", "subject", "text_body", "html_body", "problems", "is_malformed", "to"):
        assert getattr(from_file, name) == getattr(in_memory, name), name
    assert [(a.filename, a.content_type, a.size) for a in from_file.attachments] == [
        (a.filename, a.content_type, a.size) for a in in_memory.attachments
    ]
    assert [_payload(a) for a in from_file.attachments] == [a.payload for a in in_memory.attachments]
    spilled = [a.filename for a in from_file.attachments if isinstance(a.payload, SpilledPayload)]
    assert spilled == ["befund.pdf", "log.txt", "Weitergeleiteter Befund.eml"], "large parts never in memory"


def test_a_huge_text_body_is_offered_as_an_attachment_with_a_note():
    raw = b"From: a@b.de\r\nSubject: Lang\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + b"Zeile\r\n" * 400_000
    parsed = parse_message_file(io.BytesIO(raw), spill=_MemorySink)
    assert parsed.subject == "Lang"
    assert parsed.text_body == ""
    [attachment] = parsed.attachments
    assert attachment.content_type == "text/plain" and attachment.size == 7 * 400_000
    assert any("sehr groß" in p for p in parsed.problem_texts)


def test_an_irregular_huge_mail_keeps_its_headers():
    # A multipart whose boundary never comes, 40 MB of it: kept raw, read for its headers only.
    raw = (
        b"From: a@b.de\r\nSubject: Kaputt\r\nContent-Type: multipart/mixed; boundary=XYZ\r\n\r\n"
        + (b"x" * 998 + b"\r\n") * 70_000
    )
    parsed = parse_message_file(io.BytesIO(raw), spill=_MemorySink)
    assert parsed.subject == "Kaputt" and parsed.from_address == "a@b.de"
    assert parsed.is_malformed
    assert any("nur die Kopfzeilen" in p for p in parsed.problem_texts)
