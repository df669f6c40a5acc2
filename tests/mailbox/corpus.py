"""Hostile and broken raw mails, generated in code (no binary fixtures in the repo).

Every builder returns the complete RFC 5322 message as bytes with CRLF line endings,
as the Clientmodul delivers it over POP3.  Output is deterministic (fixed seeds), so
tests can compare exact payloads.  ``HOSTILE_CORPUS`` names every case; the ingest tests
push each of them through the real POP3 path.

Longer than our usual modules on purpose: it is data (one builder per case), and the cases are
read side by side when a new one is added.
"""

from __future__ import annotations

import base64
import hashlib
import quopri
import random
from collections.abc import Callable

CRLF = b"\r\n"

SENDER = "praxis.sender@arzt.kim.telematik-test"
RECIPIENT = "klinik.empfang@klinik.kim.telematik-test"
DATE = "Thu, 06 Oct 2022 11:27:22 +0200"

LARGE_ATTACHMENT_SIZE = 20 * 1024 * 1024
UMLAUT_FILENAME = "Entlassbrief Müller.pdf"
ENCODED_SUBJECT_TEXT = "Befund für Frau Jürgens – Größe & Gewicht"
LATIN1_BODY_TEXT = "Größe: 1,80 m\nGewicht: 75 kg\nÜberweisung wegen Schmerzen\n"
INTEGRITY_NOTICE_TEXT = (
    "Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt. Dies kann eine technisches "
    "Ursache haben oder auf eine missbräuchliche Nutzung des KIM-Dienstes hinweisen."
)
ORIGINAL_SUBJECT = "Arztbrief Schmidt"
ORIGINAL_BODY = "Sehr geehrte Kollegin, anbei der Arztbrief. Grüße"
HOSTILE_HTML = (
    "<html><head><title>Titel-geheim</title><style>body{background:url(https://tracker.example/css.png)}</style>"
    '<script>alert("script-content")</script></head>'
    "<body onload=\"alert('onload')\">"
    "<p>Sehr geehrte <b>Kollegin</b>,</p>"
    "<table><tr><td>Befund</td><td>unauffällig</td></tr></table>"
    '<img src="https://tracker.example/pixel.gif" alt="pixel">'
    '<img src="x" onerror="alert(\'onerror\')">'
    '<img src="cid:logo123@klinik" alt="Logo">'
    "<a href=\"javascript:alert('js-link')\">Klick mich</a> "
    '<a href="https://www.gematik.de/">gematik</a> '
    '<a href="  JaVaScRiPt:alert(1)">Klick 2</a>'
    '<iframe src="https://evil.example/frame">iframe-content</iframe>'
    '<object data="https://evil.example/x.swf">object-content</object>'
    '<embed src="https://evil.example/y.swf">'
    '<form action="https://evil.example/steal"><input name="pin">form-content</form>'
    '<svg onload="alert(\'svg\')"><script>alert("svg-script")</script></svg>'
    '<div style="background-image: url(https://tracker.example/bg.png)">Stil</div>'
    '<p style="color: red">rot</p>'
    "</body></html>"
)


def _lines(*lines: str | bytes) -> bytes:
    """Join header/body lines with CRLF; str lines are ASCII (non-ASCII must be explicit bytes)."""
    return CRLF.join(line if isinstance(line, bytes) else line.encode("ascii") for line in lines)


def _base64_lines(data: bytes) -> bytes:
    # encodebytes wraps at 76 characters as MIME requires; convert its LF to CRLF.
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _quoted_printable(text: str) -> bytes:
    return quopri.encodestring(text.encode("utf-8")).replace(b"\n", CRLF)


def _std_headers(subject: str = "Test", *, message_id: str = "<corpus-1@arzt.kim.telematik-test>") -> list[str]:
    return [
        f"From: Dr. Anna Sender <{SENDER}>",
        f"To: {RECIPIENT}",
        f"Subject: {subject}",
        f"Date: {DATE}",
        f"Message-ID: {message_id}",
        "X-KIM-Dienstkennung: KIM-Mail;Default;V1.0",
        "X-KIM-DecryptionResult: 00",
        "X-KIM-IntegrityCheckResult: 01",
        "MIME-Version: 1.0",
    ]


# --------------------------------------------------------------------------------------
# MIME structure
# --------------------------------------------------------------------------------------


def make_broken_boundary_unused() -> bytes:
    """multipart/mixed declares a boundary that never appears in the body."""
    return _lines(
        *_std_headers("Grenze nie benutzt"),
        'Content-Type: multipart/mixed; boundary="never-used-boundary"',
        "",
        "Dieser Text steht ohne MIME-Struktur im Inhalt.",
        "--some-other-boundary",
        "Content-Type: text/plain",
        "",
        "Noch mehr Text.",
        "",
    )


def make_broken_boundary_unclosed() -> bytes:
    """The closing ``--boundary--`` is missing (truncated transfer)."""
    return _lines(
        *_std_headers("Grenze nie geschlossen"),
        'Content-Type: multipart/mixed; boundary="open-boundary"',
        "",
        "--open-boundary",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Erster Teil, danach bricht die Nachricht ab.",
        "--open-boundary",
        "Content-Type: application/pdf",
        "Content-Disposition: attachment; filename=abgeschnitten.pdf",
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERi0xLjQK",
        "",
    )


def make_missing_boundary_parameter() -> bytes:
    """multipart/mixed without any boundary parameter."""
    return _lines(
        *_std_headers("Keine Grenze"),
        "Content-Type: multipart/mixed",
        "",
        "--x",
        "Content-Type: text/plain",
        "",
        "Text ohne gueltige Struktur.",
        "--x--",
        "",
    )


def make_deep_nesting(depth: int = 200) -> bytes:
    """Hundreds of nested multiparts: must not blow the recursion limit of the walker."""
    head = [*_std_headers("Tief verschachtelt"), 'Content-Type: multipart/mixed; boundary="b0"', ""]
    body: list[str] = []
    for level in range(1, depth):
        body += [f"--b{level - 1}", f'Content-Type: multipart/mixed; boundary="b{level}"', ""]
    body += [f"--b{depth - 1}", "Content-Type: text/plain", "", "ganz innen"]
    for level in range(depth - 1, -1, -1):
        body.append(f"--b{level}--")
    return _lines(*head, *body, "")


# --------------------------------------------------------------------------------------
# Charsets
# --------------------------------------------------------------------------------------


def make_undeclared_8bit_utf8_headers() -> bytes:
    """Raw UTF-8 bytes in Subject and From without RFC 2047 encoding."""
    return _lines(
        "From: Jürgen Groß".encode() + f" <{SENDER}>".encode(),
        f"To: {RECIPIENT}",
        b"Subject: " + "Überweisung Größe".encode(),
        f"Date: {DATE}",
        "Message-ID: <utf8-header@arzt.kim.telematik-test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        b"Text",
        "",
    )


def make_undeclared_8bit_latin1_headers() -> bytes:
    """Raw Latin-1 bytes in Subject and From without RFC 2047 encoding."""
    return _lines(
        b"From: " + "Jürgen Groß".encode("latin-1") + f" <{SENDER}>".encode(),
        f"To: {RECIPIENT}",
        b"Subject: " + "Überweisung Größe".encode("latin-1"),
        f"Date: {DATE}",
        "Message-ID: <latin1-header@arzt.kim.telematik-test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Text",
        "",
    )


def make_latin1_body_without_charset() -> bytes:
    """8-bit Latin-1 body, Content-Type without charset parameter."""
    body = LATIN1_BODY_TEXT.replace("\n", "\r\n").encode("latin-1")
    return _lines(
        *_std_headers("Latin-1 ohne Zeichensatz"),
        "Content-Type: text/plain",
        "Content-Transfer-Encoding: 8bit",
        "",
        body,
    )


def make_unknown_charset() -> bytes:
    """A charset nobody knows; the UTF-8 body must still be readable."""
    return _lines(
        *_std_headers("Unbekannter Zeichensatz"),
        "Content-Type: text/plain; charset=x-klingon-9",
        "Content-Transfer-Encoding: 8bit",
        "",
        "Größe".encode(),
        "",
    )


def make_rfc2047_subject() -> bytes:
    """Subject as two folded RFC 2047 encoded words (B and Q encoding mixed)."""
    first, second = ENCODED_SUBJECT_TEXT[:20], ENCODED_SUBJECT_TEXT[20:]
    b_word = "=?utf-8?B?" + base64.b64encode(first.encode()).decode() + "?="
    # Second word in windows-1252 (the en dash is not in latin-1), hand-made Q encoding.
    q_text = "".join(
        ch if ch.isascii() and ch.isalnum() else "_" if ch == " " else "".join(f"={b:02X}" for b in ch.encode("cp1252"))
        for ch in second
    )
    q_word = f"=?windows-1252?Q?{q_text}?="
    headers = _std_headers("placeholder")
    headers[2] = f"Subject: {b_word}\r\n {q_word}"
    return _lines(*headers, "Content-Type: text/plain; charset=us-ascii", "", "Text", "")


# --------------------------------------------------------------------------------------
# Headers
# --------------------------------------------------------------------------------------


def make_missing_date_and_message_id() -> bytes:
    return _lines(
        f"From: {SENDER}",
        f"To: {RECIPIENT}",
        "Subject: Ohne Datum",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Kein Date, keine Message-ID.",
        "",
    )


def make_invalid_date() -> bytes:
    headers = _std_headers("Kaputtes Datum")
    headers[3] = "Date: gestern irgendwann um 25:99"
    return _lines(*headers, "Content-Type: text/plain", "", "Text", "")


def make_extreme_dates() -> bytes:
    """A date the database cannot store once converted to UTC (year 10000)."""
    headers = _std_headers("Datum am Ende der Zeit")
    headers[3] = "Date: Fri, 31 Dec 9999 23:59:59 -1200"
    return _lines(*headers, "Content-Type: text/plain", "", "Text", "")


def make_repeated_integrity_results() -> bytes:
    """X-KIM-IntegrityCheckResult twice (06 and 08), X-KIM-DecryptionResult twice."""
    return _lines(
        f"From: {SENDER}",
        f"To: {RECIPIENT}, Zweite Empfaengerin <zweite@klinik.kim.telematik-test>",
        "Cc: =?utf-8?Q?M=C3=BCller=2C_Hans?= <hans.mueller@klinik.kim.telematik-test>",
        "Subject: Integritaet zweifach",
        f"Date: {DATE}",
        "Message-ID: <repeated@arzt.kim.telematik-test>",
        "In-Reply-To: <original@klinik.kim.telematik-test>",
        "References: <a@x.test>\r\n <original@klinik.kim.telematik-test>",
        "X-KIM-Dienstkennung:  Arztbrief;VHitG-Versand;V1.2 ",
        "X-KIM-Dienstkennung: KIM-Mail;Default;V1.0",
        "X-KIM-DecryptionResult: 00",
        "X-KIM-DecryptionResult: X99",
        "X-KIM-IntegrityCheckResult: 06",
        "X-KIM-IntegrityCheckResult: 08",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Text",
        "",
    )


def make_kim_error_mail() -> bytes:
    """CM error mail (4018: large messages not enabled) with the encrypted original embedded."""
    original = _lines(
        f"From: {SENDER}",
        f"To: {RECIPIENT}",
        "Subject: KOM-LE-Nachricht",
        f"Date: {DATE}",
        "X-KOM-LE-Version: 1.5",
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
        "Content-Transfer-Encoding: base64",
        "",
        "MIAGCSqGSIb3DQEHA6CAMIACAQAxggE=",
        "",
    )
    return _lines(
        f"From: {SENDER}",
        f"To: {RECIPIENT}",
        "Subject: =?utf-8?Q?Die_KIM-Nachricht_kann_nicht_empfangen_werden?=",
        f"Date: {DATE}",
        "Message-ID: <error-4018@cm.kim.telematik-test>",
        "X-KIM-Fehlermeldung: 4018",
        "X-KIM-Fehlermeldung: X012",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="err"',
        "",
        "--err",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        "Der Empfang gro=C3=9Fer Nachrichten ist nicht aktiviert.",
        "--err",
        "Content-Type: message/rfc822",
        "",
        original,
        "--err--",
        "",
    )


# --------------------------------------------------------------------------------------
# Nested messages and attachments
# --------------------------------------------------------------------------------------


def make_original_message() -> bytes:
    """The decrypted original that a CM embeds into its integrity-failure notice."""
    return _lines(
        f"Date: {DATE}",
        f"Subject: {ORIGINAL_SUBJECT}",
        "Message-Id: <original-inner@arzt.kim.telematik-test>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="=-inner=="',
        f"From: {SENDER}",
        f"To: {RECIPIENT}",
        "X-KIM-Dienstkennung: Arztbrief;VHitG-Versand;V1.2",
        "",
        "--=-inner==",
        "Content-Type: text/plain; charset=utf-8",
        "",
        ORIGINAL_BODY.encode(),
        "--=-inner==",
        "Content-Type: image/png; name=att_0_test.png",
        "Content-Disposition: attachment; filename=att_0_test.png",
        "Content-Transfer-Encoding: base64",
        "",
        "AA==",
        "",
        "--=-inner==--",
        "",
    )


def make_integrity_failure_notice() -> bytes:
    """CM notice (IntegrityCheckResult 08) with the original as message/rfc822, like the gematik FAQ sample."""
    return _lines(
        "Message-Id: <notice@laptop-praxis>",
        f"Date: {DATE}",
        f"From: {SENDER}",
        f"To: {RECIPIENT}",
        "Subject: =?utf-8?Q?Sicherheitsverletzung_erkannt?=",
        "X-KIM-DecryptionResult: 00",
        "X-KIM-IntegrityCheckResult: 08",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="=-outer=="',
        "",
        "",
        "--=-outer==",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _quoted_printable(INTEGRITY_NOTICE_TEXT),
        "",
        "--=-outer==",
        "Content-Type: message/rfc822",
        "",
        make_original_message(),
        "--=-outer==--",
        "",
    )


def large_attachment_payload(size: int = LARGE_ATTACHMENT_SIZE) -> bytes:
    """Deterministic incompressible bytes (fixed seed) so tests can compare hashes."""
    return random.Random(20_221_006).randbytes(size)


def large_attachment_sha256(size: int = LARGE_ATTACHMENT_SIZE) -> str:
    return hashlib.sha256(large_attachment_payload(size)).hexdigest()


def make_large_attachment(size: int = LARGE_ATTACHMENT_SIZE) -> bytes:
    """A mail with one *size*-byte PDF attachment (base64, 76-character lines)."""
    return _lines(
        *_std_headers("Grosser Anhang"),
        'Content-Type: multipart/mixed; boundary="large-boundary"',
        "",
        "--large-boundary",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Siehe Anhang.",
        "--large-boundary",
        'Content-Type: application/pdf; name="gross.pdf"',
        'Content-Disposition: attachment; filename="gross.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(large_attachment_payload(size)) + b"--large-boundary--",
        "",
    )


HOSPITAL_LETTER_PDF_SIZE = 24 * 1024
_LETTER_PARAGRAPH = (
    "Wir berichten über Frau Müller, geb. 12.03.1948, die sich vom 02.10. bis 06.10.2022 in unserer "
    "stationären Behandlung befand. Diagnosen: Dekompensierte Herzinsuffizienz (NYHA III), Vorhofflimmern, "
    "arterielle Hypertonie. Therapie und Verlauf: Rekompensation unter i.v. Diurese, Gewichtsabnahme 4,5 kg; "
    "Entlassung in gebessertem Allgemeinzustand. Procedere: Kontrolle der Nierenwerte und Elektrolyte in "
    "einer Woche, Gewichtskontrolle täglich, Wiedervorstellung bei Zunahme über 2 kg in drei Tagen."
)


def make_hospital_letter() -> bytes:
    """An everyday discharge letter of ≈50 KB: text and HTML alternatives plus a PDF (for bench/parsing.py)."""
    paragraphs = [f"{number}. {_LETTER_PARAGRAPH}" for number in range(1, 15)]
    text = "Sehr geehrte Frau Kollegin,\n\n" + "\n\n".join(paragraphs) + "\n\nMit freundlichen Grüßen\n"
    rows = "".join(
        f'<tr><td style="padding: 2px">{day:02d}.10.2022</td><td>Kreatinin</td><td>{1 + day / 10:.1f} mg/dl</td></tr>'
        for day in range(2, 7)
    )
    html = (
        '<html><head><meta charset="utf-8"><style>p { margin: 0 }</style></head><body>'
        "<p>Sehr geehrte Frau Kollegin,</p>"
        + "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs)
        + f'<table border="1">{rows}</table><p>Mit freundlichen <b>Grüßen</b></p></body></html>'
    )
    pdf = b"%PDF-1.4\n" + random.Random(4242).randbytes(HOSPITAL_LETTER_PDF_SIZE) + b"\n%%EOF\n"
    return _lines(
        *_std_headers("=?utf-8?q?Entlassbrief_M=C3=BCller?=", message_id="<letter-1@arzt.kim.telematik-test>"),
        'Content-Type: multipart/mixed; boundary="mixed"',
        "",
        "--mixed",
        'Content-Type: multipart/alternative; boundary="alt"',
        "",
        "--alt",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _quoted_printable(text),
        "--alt",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _quoted_printable(html),
        "--alt--",
        "--mixed",
        'Content-Type: application/pdf; name="Entlassbrief.pdf"',
        'Content-Disposition: attachment; filename="Entlassbrief.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(pdf) + b"--mixed--",
        "",
    )


def make_many_recipients(count: int = 100_000) -> bytes:
    """A To: with *count* addresses with RFC 2047 display names (≈7 MB of header at 100,000)."""
    addresses = b",\r\n ".join(
        b"=?utf-8?q?Station_%d_K=C3=BCche?= <station%d@klinik.kim.telematik-test>" % (i, i) for i in range(count)
    )
    return _lines(
        f"From: Dr. Anna Sender <{SENDER}>",
        b"To: " + addresses,
        "Subject: Rundschreiben",
        f"Date: {DATE}",
        "Message-ID: <many-1@arzt.kim.telematik-test>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "An alle.",
        "",
    )


def make_rfc2231_umlaut_filename() -> bytes:
    """Attachment name "Entlassbrief Müller.pdf" as filename*=utf-8''… plus an RFC 2047 name= fallback."""
    return _lines(
        *_std_headers("Entlassbrief"),
        'Content-Type: multipart/mixed; boundary="names"',
        "",
        "--names",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Anbei der Entlassbrief.",
        "--names",
        'Content-Type: application/pdf; name="=?utf-8?Q?Entlassbrief_M=C3=BCller.pdf?="',
        "Content-Disposition: attachment; filename*=utf-8''Entlassbrief%20M%C3%BCller.pdf",
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERi0xLjQKJcOkw7zDtsOfCg==",
        "--names",
        # Continuations (RFC 2231 section 3) spread over several parameters.
        "Content-Type: application/pdf",
        "Content-Disposition: attachment;\r\n"
        " filename*0*=utf-8''Befund%20J%C3%BC;\r\n"
        " filename*1*=rgens%20%C3%84rztin.pdf",
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERi0xLjQK",
        "--names",
        # Outlook style: only an RFC 2047 encoded name= in the Content-Type.
        'Content-Type: application/pdf; name="=?iso-8859-1?Q?R=F6ntgen_Gr=F6=DFe.pdf?="',
        "Content-Transfer-Encoding: base64",
        "",
        "JVBERi0xLjQK",
        "--names--",
        "",
    )


def make_hostile_filenames() -> bytes:
    """Path traversal, control characters, RTL override, overlong names, no name at all."""
    overlong = "A" * 400 + ".pdf"
    return _lines(
        *_std_headers("Boese Dateinamen"),
        'Content-Type: multipart/mixed; boundary="evil"',
        "",
        "--evil",
        "Content-Type: text/plain",
        "",
        "Text",
        "--evil",
        'Content-Type: application/pdf; name="../../etc/passwd"',
        'Content-Disposition: attachment; filename="../../etc/passwd"',
        "",
        "x",
        "--evil",
        "Content-Type: application/octet-stream",
        "Content-Disposition: attachment; filename*=utf-8''..%5C..%5Cwindows%5Csystem32%5Cevil.dll",
        "",
        "x",
        "--evil",
        "Content-Type: application/octet-stream",
        "Content-Disposition: attachment; filename*=utf-8''bericht%00%0D%0Aname%E2%80%AEfdp.exe",
        "",
        "x",
        "--evil",
        "Content-Type: application/pdf",
        f'Content-Disposition: attachment; filename="{overlong}"',
        "",
        "x",
        "--evil",
        "Content-Type: application/pdf",
        "Content-Disposition: attachment",
        "",
        "x",
        "--evil",
        "Content-Type: image/jpeg",
        'Content-Disposition: attachment; filename=".."',
        "",
        "x",
        "--evil--",
        "",
    )


def make_html_with_inline_image() -> bytes:
    """multipart/related: HTML referencing an inline PNG by cid:, plus a real attachment."""
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    return _lines(
        *_std_headers("Inline-Bild"),
        'Content-Type: multipart/mixed; boundary="outer"',
        "",
        "--outer",
        'Content-Type: multipart/related; boundary="rel"',
        "",
        "--rel",
        "Content-Type: text/html; charset=utf-8",
        "",
        '<p>Logo: <img src="cid:logo@klinik" alt="Logo"></p>',
        "--rel",
        "Content-Type: image/png",
        "Content-ID: <logo@klinik>",
        "Content-Disposition: inline",
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(png).rstrip(CRLF),
        "--rel--",
        "--outer",
        "Content-Type: image/png",
        "Content-ID: <unreferenced@klinik>",
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(png).rstrip(CRLF),
        "--outer--",
        "",
    )


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------


def make_hostile_html() -> bytes:
    """HTML-only mail with script, event handlers, javascript: links, iframe, remote images."""
    return _lines(
        *_std_headers("HTML mit Schadcode"),
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _quoted_printable(HOSTILE_HTML),
        "",
    )


def make_alternative_with_hostile_html() -> bytes:
    """multipart/alternative: plain text plus the hostile HTML as alternative."""
    return _lines(
        *_std_headers("Alternative"),
        'Content-Type: multipart/alternative; boundary="alt"',
        "",
        "--alt",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Nur Text.",
        "--alt",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(HOSTILE_HTML.encode()).rstrip(CRLF),
        "--alt--",
        "",
    )


# --------------------------------------------------------------------------------------
# Reports and garbage
# --------------------------------------------------------------------------------------


def make_delivery_status_notification() -> bytes:
    """RFC 3464 DSN from the Fachdienst, In-Reply-To our Message-ID."""
    return _lines(
        "From: MAILER-DAEMON@fachdienst.kim.telematik-test",
        f"To: {RECIPIENT}",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {DATE}",
        "Message-ID: <dsn-1@fachdienst.kim.telematik-test>",
        "In-Reply-To: <our-sent-1@klinik.kim.telematik-test>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/report; report-type=delivery-status; boundary="dsn"',
        "",
        "--dsn",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Your message could not be delivered.",
        "--dsn",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; fachdienst.kim.telematik-test",
        "",
        "Final-Recipient: rfc822; unbekannt@klinik.kim.telematik-test",
        "Action: failed",
        "Status: 5.1.1",
        "",
        "--dsn",
        "Content-Type: text/rfc822-headers",
        "",
        "Message-ID: <our-sent-1@klinik.kim.telematik-test>",
        "Subject: Arztbrief",
        "",
        "--dsn--",
        "",
    )


def make_headers_only() -> bytes:
    """Header block, no empty line, no body."""
    return _lines(f"From: {SENDER}", "Subject: Nur Kopf")


def make_garbage_random() -> bytes:
    """64 KiB of random bytes (fixed seed), including NULs and CR/LF at random places."""
    return random.Random(4711).randbytes(64 * 1024)


def make_garbage_binary_header() -> bytes:
    """Something that looks like a header block but is mostly control bytes."""
    return b"\x00\xff\xfe: \x01\x02\r\nSubject: =?bogus?Q?=FF=FE?=\r\nContent-Type: ;;;===\r\n\r\n\x00\x00\xff body"


def make_empty() -> bytes:
    return b""


HOSTILE_CORPUS: dict[str, Callable[[], bytes]] = {
    "broken_boundary_unused": make_broken_boundary_unused,
    "broken_boundary_unclosed": make_broken_boundary_unclosed,
    "missing_boundary_parameter": make_missing_boundary_parameter,
    "deep_nesting": make_deep_nesting,
    "undeclared_8bit_utf8_headers": make_undeclared_8bit_utf8_headers,
    "undeclared_8bit_latin1_headers": make_undeclared_8bit_latin1_headers,
    "latin1_body_without_charset": make_latin1_body_without_charset,
    "unknown_charset": make_unknown_charset,
    "rfc2047_subject": make_rfc2047_subject,
    "missing_date_and_message_id": make_missing_date_and_message_id,
    "invalid_date": make_invalid_date,
    "extreme_date": make_extreme_dates,
    "repeated_integrity_results": make_repeated_integrity_results,
    "kim_error_mail": make_kim_error_mail,
    "integrity_failure_notice": make_integrity_failure_notice,
    "large_attachment": make_large_attachment,
    "rfc2231_umlaut_filename": make_rfc2231_umlaut_filename,
    "hostile_filenames": make_hostile_filenames,
    "html_with_inline_image": make_html_with_inline_image,
    "hostile_html": make_hostile_html,
    "alternative_with_hostile_html": make_alternative_with_hostile_html,
    "delivery_status_notification": make_delivery_status_notification,
    "headers_only": make_headers_only,
    "garbage_random": make_garbage_random,
    "garbage_binary_header": make_garbage_binary_header,
    "empty": make_empty,
}
