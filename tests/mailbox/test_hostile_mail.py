"""Mail a hostile or sloppy sender could write, received through the simulated CM and shown to a member.

Each mail comes in over POP3 as any other, is stored in PostgreSQL, and is then looked at through the
pages a member uses: what a sender controls must neither stall the fetch nor mislead the reader.
"""

from __future__ import annotations

import random

import pytest
from django.urls import reverse

from mailbox.models import Message
from mailbox.parsing.headers import SUBJECT_LIMIT
from mailbox.services.fetch import account_fetch
from mailbox.storage import blob_get
from tests.mailbox.conftest import HOSPITAL, PRAXIS

pytestmark = pytest.mark.django_db(transaction=True)

HEAD = (
    f"From: Praxis Test <{PRAXIS}>\r\nTo: {HOSPITAL}\r\nMessage-ID: <hostile-1@praxis-test.kim.telematik-test>\r\n"
    "Date: Mon, 30 Nov 2026 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
).encode()


def received(cm, account, raw: bytes) -> Message:
    """*raw* delivered to the hospital's maildrop and fetched by the portal; the stored message."""
    uidl = cm.deliver(HOSPITAL, raw)
    result = account_fetch(account_id=account.pk)
    assert result.error == ""
    assert cm.maildrop_uidls(HOSPITAL) == [], "stored, so deleted on the server"
    return Message.objects.get(uidl=uidl)


def test_html_nested_too_deep_for_the_sanitizer_is_shown_as_text_with_a_note(cm, account, member, client):
    # The sanitizer's time grows with the square of the depth: 100,000 levels (1.1 MB) took three minutes.
    html = "<div>" * 5000 + "Befund folgt &amp; Termin" + "</div>" * 5000
    raw = HEAD + b"Subject: Verschachtelt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode() + b"\r\n"

    message = received(cm, account, raw)

    assert message.subject == "Verschachtelt"
    assert message.html_body == ""
    assert message.text_body == "Befund folgt & Termin"
    assert message.is_malformed
    assert any("zu tief verschachtelt" in p for p in message.parse_problem_texts)
    assert blob_get(message.raw_sha256) == raw
    client.force_login(member)
    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert "Diese Nachricht ist fehlerhaft aufgebaut." in page
    assert "zu tief verschachtelt" in page
    assert "Befund folgt &amp; Termin" in page
    assert "<iframe" not in page


def test_sloppy_html_with_unclosed_paragraphs_is_not_too_deep(cm, account):
    html = "<html><body>" + "<p>Zeile<br><li>Punkt" * 2000 + "<div>Ende</div>"
    raw = HEAD + b"Subject: Schlampig\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode() + b"\r\n"

    message = received(cm, account, raw)

    assert "Ende" in message.html_body
    assert not any("zu tief verschachtelt" in p for p in message.parse_problem_texts)


def test_a_bidi_override_in_a_header_cannot_reverse_what_follows_it(cm, account, member, client):
    # "Dr. Müller \u202e" <ed.tekcor@evil.de> would show as "Dr. Müller <ed.live@rocket.de>".
    raw = (
        b"From: =?utf-8?q?Dr=2E_M=C3=BCller_=E2=80=AE?= <ed.tekcor@evil.de>\r\n"
        b"To: =?utf-8?q?Station_=E2=81=A7?= <" + HOSPITAL.encode() + b">, \xe2\x80\xaeraw@example.de\r\n"
        b"Subject: =?utf-8?q?Befund_=E2=80=AEfdp.exe?=\r\nDate: Mon, 30 Nov 2026 10:00:00 +0100\r\n\r\nHallo\r\n"
    )

    message = received(cm, account, raw)

    assert (message.from_name, message.from_address) == ("Dr. Müller", "ed.tekcor@evil.de")
    assert message.subject == "Befund fdp.exe"
    assert message.to == [f"Station <{HOSPITAL}>", "raw@example.de"]
    client.force_login(member)
    for url in (reverse("mailbox:message-detail", args=[message.pk]), reverse("mailbox:inbox")):
        page = client.get(url).content.decode()
        assert "Dr. Müller" in page
        assert not any(ch in page for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_a_subject_of_two_megabytes_is_stored_shortened_and_kept_whole_in_the_source(cm, account, member, client):
    raw = HEAD + b"Subject: " + b"A" * 2_000_000 + b"\r\nContent-Type: text/plain\r\n\r\nHallo\r\n"

    message = received(cm, account, raw)

    assert message.subject == "A" * SUBJECT_LIMIT + "…"
    assert message.text_body == "Hallo\n"
    assert blob_get(message.raw_sha256) == raw
    client.force_login(member)
    inbox = client.get(reverse("mailbox:inbox"))
    assert inbox.status_code == 200
    assert len(inbox.content) < 200_000


def test_an_executable_dressed_as_a_pdf_is_only_downloaded_and_marked(cm, account, member, client):
    raw = HEAD + (
        b"Subject: Befund\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nAnbei der Befund.\r\n"
        b'--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="befund.pdf.exe"\r\n\r\n'
        b"MZ\x90\x00 not a pdf\r\n"
        b'--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="brief.pdf"\r\n\r\n'
        b"%PDF-1.4 brief\r\n--B--\r\n"
    )
    message = received(cm, account, raw)
    exe, pdf = message.attachments.order_by("position")
    assert (exe.filename, exe.content_type) == ("befund.pdf.exe", "application/pdf")
    client.force_login(member)

    for query in ("", "?inline=1"):
        response = client.get(reverse("mailbox:attachment-download", args=[message.pk, exe.position]) + query)
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"] == 'attachment; filename="befund.pdf.exe"'
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"].startswith("sandbox;")
        assert b"".join(response.streaming_content).startswith(b"MZ")
    shown = client.get(reverse("mailbox:attachment-download", args=[message.pk, pdf.position]) + "?inline=1")
    assert shown["Content-Type"] == "application/pdf"
    assert shown["Content-Disposition"] == 'inline; filename="brief.pdf"'

    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    exe_url = reverse("mailbox:attachment-download", args=[message.pk, exe.position])
    pdf_url = reverse("mailbox:attachment-download", args=[message.pk, pdf.position])
    assert f'href="{exe_url}?inline=1"' not in page, "no 'anzeigen' for the executable"
    assert f'href="{pdf_url}?inline=1"' in page
    assert page.count("Ausführbare Datei: nur öffnen, wenn Sie sie erwarten") == 1


def test_an_overlong_sender_address_keeps_its_domain_and_is_flagged(cm, account, member, client):
    # Cut at the front, the padding would make the sender look like the hospital's own KIM domain.
    local = '"praxis@klinik.kim.telematik' + " " * 400 + '"'
    raw = f"From: Praxis <{local}@evil.de>\r\nTo: {HOSPITAL}\r\nSubject: Befund\r\n\r\nHallo\r\n".encode()

    message = received(cm, account, raw)

    assert message.from_address.startswith("…")
    assert message.from_address.endswith('"@evil.de')
    assert len(message.from_address) == 320
    assert message.is_malformed
    assert "Absenderadresse mit 437 Zeichen zu lang; nur ihr Ende wird angezeigt" in message.parse_problem_texts
    client.force_login(member)
    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert "&quot;@evil.de&gt;" in page
    assert "Absenderadresse mit 437 Zeichen zu lang" in page


def test_an_overlong_mime_header_is_read_only_at_its_start_and_flagged(cm, account, member, client):
    # The stdlib's header parser is quadratic: a 32 KB Content-Type of "(a)" took nine seconds, per part.
    padding = "(a)" * 5000
    long_name = "Entlassbrief " + "Müller " * 25 + ".pdf"  # about 480 characters as RFC 2231 continuations
    continued = "".join(
        f";\r\n filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{chunk}"
        for i, chunk in enumerate(_percent(word) for word in ["Entlassbrief ", *["Müller "] * 25, ".pdf"])
    )
    raw = (
        HEAD
        + (
            "Subject: Lang\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
            "--B\r\nContent-Type: text/plain\r\n\r\nAnbei.\r\n"
            f"--B\r\nContent-Type: application/pdf; name={padding}\r\n"
            f"Content-Disposition: attachment; filename={padding}\r\n\r\n%PDF-1.4 a\r\n"
            f"--B\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment{continued}\r\n\r\n%PDF-1.4 b\r\n"
            "--B--\r\n"
        ).encode()
    )

    message = received(cm, account, raw)

    padded, named = message.attachments.order_by("position")
    assert padded.content_type == "application/pdf"
    assert padded.filename.startswith("(a)(a)") and len(padded.filename) <= 255
    assert named.filename == long_name
    assert message.is_malformed
    length = len(f"application/pdf; name={padding}")
    note = f"Kopfzeile „Content-Type“ zu lang ({length} Zeichen); nur ihr Anfang gelesen (Teil 3)"
    assert note in message.parse_problem_texts
    assert not any("Teil 4" in p for p in message.parse_problem_texts), "a long RFC 2231 name is read whole"
    assert blob_get(message.raw_sha256) == raw


def _percent(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "".join(f"%{b:02X}" for b in c.encode()) for c in text)


def test_binary_garbage_is_stored_whole_flagged_and_explained(cm, account, member, client):
    # Random bytes in lines: POP3 carries a mail as lines, each ending in CRLF (a bare LF arrives as CRLF).
    rnd = random.Random(7)
    lines = [bytes(rnd.choice([b for b in range(256) if b not in b"\r\n"]) for _ in range(76)) for _ in range(260)]
    garbage = b"\r\n".join(lines) + b"\r\n"

    message = received(cm, account, garbage)

    assert blob_get(message.raw_sha256) == garbage
    assert message.is_malformed
    assert "Keine Kopfzeilen gefunden" in message.parse_problem_texts
    client.force_login(member)
    page = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert "Diese Nachricht ist fehlerhaft aufgebaut." in page
    assert "Der Quelltext ist vollständig abrufbar." in page
    inbox = client.get(reverse("mailbox:inbox")).content.decode()
    assert f'id="msg-{message.pk}"' in inbox
    assert "(ohne Absender)" in inbox and "(ohne Betreff)" in inbox
    raw = client.get(reverse("mailbox:message-raw", args=[message.pk]) + "?download=1")
    assert raw.content == garbage
    assert raw["Content-Disposition"] == f'attachment; filename="nachricht-{message.pk}.eml"'
