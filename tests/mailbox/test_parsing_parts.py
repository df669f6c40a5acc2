"""Tests for mailbox.parsing: nested messages, attachments and HTML (the sanitizer is a security boundary)."""

from __future__ import annotations

import email.message
import email.policy
import hashlib
import time
import tracemalloc
from email.headerregistry import HeaderRegistry
from email.parser import BytesParser

import pytest

from mailbox import parsing
from mailbox.parsing import parse_message, sanitize_html
from mailbox.parsing.headers import ADDRESS_PARSER_LIMIT, parse_addresses
from mailbox.parsing.policy import _OncePerValue, parse_policy
from mailbox.parsing.sanitize import html_too_deep
from tests.mailbox import corpus
from tests.mailbox.parsing_support import SAMPLES_DIR, parse_eml

# --------------------------------------------------------------------------------------
# Nested messages and attachments
# --------------------------------------------------------------------------------------


def test_integrity_failure_notice_embeds_original_as_attachment() -> None:
    result = parse_message(corpus.make_integrity_failure_notice())
    assert result.integrity_results == ["08"]
    assert result.decryption_results == ["00"]
    assert result.subject == "Sicherheitsverletzung erkannt"
    assert result.text_body.strip() == corpus.INTEGRITY_NOTICE_TEXT
    # Body selection does not descend into the embedded original.
    assert corpus.ORIGINAL_BODY not in result.text_body
    [original] = result.attachments
    assert original.content_type == "message/rfc822"
    assert original.filename == f"{corpus.ORIGINAL_SUBJECT}.eml"
    assert not original.is_inline
    embedded = parse_eml(original.payload)
    assert embedded["Subject"] == corpus.ORIGINAL_SUBJECT
    assert embedded["X-KIM-Dienstkennung"] == "Arztbrief;VHitG-Versand;V1.2"
    inner = parse_message(original.payload)
    assert inner.text_body == corpus.ORIGINAL_BODY
    assert [(a.filename, a.payload) for a in inner.attachments] == [("att_0_test.png", b"\x00")]


def test_rfc822_without_subject_gets_fallback_name() -> None:
    raw = (
        b'Subject: x\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: message/rfc822\r\n'
        b"\r\nFrom: a@b.de\r\n\r\ninner\r\n--b--\r\n"
    )
    [attachment] = parse_message(raw).attachments
    assert attachment.filename == "weitergeleitete-nachricht.eml"
    assert parse_eml(attachment.payload).get_content().strip() == "inner"


@pytest.fixture(scope="module")
def large_mail() -> bytes:
    return corpus.make_large_attachment()


def test_large_attachment_is_exact(large_mail: bytes) -> None:
    # How fast: bench/parsing.py (tests assert behaviour, never time).
    result = parse_message(large_mail)
    [attachment] = result.attachments
    assert attachment.filename == "gross.pdf"
    assert len(attachment.payload) == corpus.LARGE_ATTACHMENT_SIZE == 20 * 1024 * 1024
    assert hashlib.sha256(attachment.payload).hexdigest() == corpus.large_attachment_sha256()
    assert result.text_body == "Siehe Anhang."
    assert not result.is_malformed


def test_large_attachment_memory_is_linear(large_mail: bytes) -> None:
    tracemalloc.start()
    try:
        result = parse_message(large_mail)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(result.attachments[0].payload) == corpus.LARGE_ATTACHMENT_SIZE
    # The stdlib parser keeps the message as lines plus a joined copy (~8x); a further
    # accidental copy of the message per part or per line would blow this bound.
    assert peak < 12 * len(large_mail), peak / len(large_mail)


def test_huge_recipient_list_takes_the_linear_address_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """policy.default's address parser costs ~0.2 ms per address, half a minute for this To:.

    Beyond ADDRESS_PARSER_LIMIT the linear getaddresses() path must be taken; a From: of normal size
    that is not of a plain shape still goes through policy.default (which also proves the spy sees
    that parser's calls).
    """
    parsed_by_policy_default: list[tuple[str, int]] = []
    original = HeaderRegistry.__call__

    def spy(self, name: str, value: str):
        parsed_by_policy_default.append((name, len(value)))
        return original(self, name, value)

    monkeypatch.setattr(HeaderRegistry, "__call__", spy)
    result = parse_message(corpus.make_many_recipients(100_000))
    assert len(result.to) == 100_000
    assert result.to[0] == "Station 0 Küche <station0@klinik.kim.telematik-test>"
    assert result.to[-1] == "Station 99999 Küche <station99999@klinik.kim.telematik-test>"
    assert (result.from_name, result.from_address) == ("Dr. Anna Sender", corpus.SENDER)
    assert not result.is_malformed
    assert [name for name, _size in parsed_by_policy_default if name == "To"] == []
    quoted = f'"Sender, Anna" <{corpus.SENDER}>'
    assert parse_addresses("From", quoted) == [("Sender, Anna", corpus.SENDER)]
    assert ("From", len(quoted)) in parsed_by_policy_default


def test_a_hostile_address_header_of_10_kb_takes_the_linear_address_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """policy.default's address parser is quadratic on shapes like "(a)(a)…": 32 KB took 24 seconds."""
    parsed_by_policy_default: list[str] = []
    original = HeaderRegistry.__call__

    def spy(self, name: str, value: str):
        parsed_by_policy_default.append(name)
        return original(self, name, value)

    monkeypatch.setattr(HeaderRegistry, "__call__", spy)
    result = parse_message(f"From: {corpus.SENDER}\r\nTo: {'(a)' * 3400} <x@y.de>\r\n\r\nx\r\n".encode())
    assert "To" not in parsed_by_policy_default
    assert len(result.to) == 1 and result.to[0].endswith("<x@y.de>")


def test_repeated_hostile_address_rows_share_one_limit_of_the_quadratic_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each row under the limit, together far over it: 20 rows of 8 KB took 20 seconds, a 16 MB header block would
    have taken most of an hour on every fetch try."""
    parsed_by_policy_default: list[tuple[str, int]] = []
    original = HeaderRegistry.__call__

    def spy(self, name: str, value: str):
        parsed_by_policy_default.append((name, len(value)))
        return original(self, name, value)

    monkeypatch.setattr(HeaderRegistry, "__call__", spy)
    rows = "".join(f"{name}: {'(a)' * 1000} <x{i}@y.de>\r\n" for i in range(20) for name in ("To", "Cc"))
    result = parse_message(f"From: {corpus.SENDER}\r\n{rows}\r\nx\r\n".encode())
    assert sum(size for name, size in parsed_by_policy_default if name in ("To", "Cc")) <= ADDRESS_PARSER_LIMIT
    assert len(result.to) == 20 and result.to[-1].endswith("<x19@y.de>")
    assert len(result.cc) == 20 and result.cc[0].endswith("<x0@y.de>")


def test_forwarded_parts_share_the_top_level_limit_of_the_quadratic_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forwarded mails (message/rfc822, nested) each with hostile To/Cc rows: only the top-level header block is
    read for addresses, so the quadratic parser sees at most ADDRESS_PARSER_LIMIT characters for the whole mail.
    Read per embedded message, these 60 header blocks (30 forwarded mails, each with one nested) of 2 x 8 KB
    would each cost a second or more."""
    parsed_by_policy_default: list[tuple[str, int]] = []
    original = HeaderRegistry.__call__

    def spy(self, name: str, value: str):
        parsed_by_policy_default.append((name, len(value)))
        return original(self, name, value)

    monkeypatch.setattr(HeaderRegistry, "__call__", spy)
    hostile = "(a)" * 2700
    top = f"To: {hostile} <top@y.de>\r\nCc: {hostile} <top@y.de>\r\n"
    forwarded = []
    for i in range(30):
        inner = f"To: {hostile} <in{i}@y.de>\r\nCc: {hostile} <in{i}@y.de>\r\nSubject: innen {i}\r\n\r\ntief\r\n"
        outer = (
            f"From: {corpus.SENDER}\r\nTo: {hostile} <fw{i}@y.de>\r\nCc: {hostile} <fw{i}@y.de>\r\n"
            f'Subject: weiter {i}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="I{i}"\r\n\r\n'
            f"--I{i}\r\nContent-Type: message/rfc822\r\n\r\n{inner}--I{i}--\r\n"
        )
        forwarded.append(f"--B\r\nContent-Type: message/rfc822\r\n\r\n{outer}")
    raw = (
        f"From: {corpus.SENDER}\r\n{top}Subject: Weiterleitungen\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n\r\nText\r\n{"".join(forwarded)}--B--\r\n'
    ).encode()
    result = parse_message(raw)
    assert sum(size for name, size in parsed_by_policy_default if name.lower() in ("to", "cc")) <= ADDRESS_PARSER_LIMIT
    assert "top@y.de" in result.to[0] and "top@y.de" in result.cc[0]
    # Every forwarded mail is kept whole, its nested one and its hostile rows included.
    assert [a.filename for a in result.attachments] == [f"weiter {i}.eml" for i in range(30)]
    assert all(f"<in{i}@y.de>".encode() in bytes(a.payload) for i, a in enumerate(result.attachments))


def test_huge_encoded_header_takes_the_linear_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    # email.header.decode_header() is quadratic in the number of encoded words.
    decoded_by_stdlib: list[int] = []
    original = parsing.headers.decode_header

    def spy(value: str):
        decoded_by_stdlib.append(len(value))
        return original(value)

    monkeypatch.setattr(parsing.headers, "decode_header", spy)
    subject = " ".join(["=?utf-8?q?Gr=C3=B6=C3=9Fe?="] * 2000)
    result = parse_message(f"From: {corpus.SENDER}\r\nSubject: {subject}\r\n\r\nx\r\n".encode())
    assert result.subject == "Größe" * 2000
    assert decoded_by_stdlib == []
    small = parse_message(b"Subject: =?utf-8?q?Gr=C3=B6=C3=9Fe?=\r\n\r\nx\r\n")
    assert small.subject == "Größe"
    assert decoded_by_stdlib == [len("=?utf-8?q?Gr=C3=B6=C3=9Fe?=")]


def test_hospital_letter_used_by_the_bench_is_an_ordinary_mail() -> None:
    result = parse_message(corpus.make_hospital_letter())
    assert result.subject == "Entlassbrief Müller"
    assert result.text_body.startswith("Sehr geehrte Frau Kollegin,\n\n1. Wir berichten über Frau Müller")
    assert "<table" in result.html_body and "<style" not in result.html_body
    [pdf] = result.attachments
    assert (pdf.filename, pdf.content_type, len(pdf.payload)) == (
        "Entlassbrief.pdf",
        "application/pdf",
        corpus.HOSPITAL_LETTER_PDF_SIZE + len(b"%PDF-1.4\n\n%%EOF\n"),
    )
    assert result.problem_texts == [] and not result.is_malformed


def test_small_size_large_attachment_builder() -> None:
    result = parse_message(corpus.make_large_attachment(size=1000))
    assert result.attachments[0].payload == corpus.large_attachment_payload(1000)


def test_rfc2231_and_rfc2047_filenames_are_decoded() -> None:
    result = parse_message(corpus.make_rfc2231_umlaut_filename())
    assert [a.filename for a in result.attachments] == [
        corpus.UMLAUT_FILENAME,
        "Befund Jürgens Ärztin.pdf",
        "Röntgen Größe.pdf",
    ]
    assert result.attachments[0].filename == "Entlassbrief Müller.pdf"
    assert result.attachments[0].payload.startswith(b"%PDF-1.4")
    assert all(a.content_type == "application/pdf" for a in result.attachments)
    assert result.text_body == "Anbei der Entlassbrief."
    assert not result.is_malformed


def test_a_part_named_by_cid_that_the_html_cannot_show_stays_in_the_attachment_list() -> None:
    """The message view embeds only images of a few types and sizes where the HTML names a part by cid:; a PDF,
    a TIFF or an oversized image named so would otherwise be shown nowhere."""
    mail = email.message.EmailMessage(policy=email.policy.SMTP)
    mail["From"], mail["To"], mail["Subject"] = "praxis@kim.example", "station@kim.example", "Befund"
    mail.set_content(
        '<p><img src="cid:logo@x"><a href="cid:befund@x">Befund</a><img src="cid:scan@x"><img src="cid:big@x"></p>',
        subtype="html",
    )
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
    for maintype, subtype, cid, data in (
        ("image", "png", "logo@x", png),
        ("application", "pdf", "befund@x", b"%PDF-1.4\n%%EOF\n"),
        ("image", "tiff", "scan@x", b"II*\0" + b"\0" * 16),
        ("image", "png", "big@x", png + b"\0" * parsing.MAX_INLINE_IMAGE_BYTES),
    ):
        mail.add_related(data, maintype=maintype, subtype=subtype, cid=f"<{cid}>", disposition="inline")
    shown = {a.content_id: a.is_inline for a in parse_message(mail.as_bytes()).attachments}
    assert shown == {"logo@x": True, "befund@x": False, "scan@x": False, "big@x": False}


def test_hostile_filenames_are_sanitized() -> None:
    names = [a.filename for a in parse_message(corpus.make_hostile_filenames()).attachments]
    assert names[0] == "_.._etc_passwd"
    assert names[1] == "_.._windows_system32_evil.dll"
    # NUL, CR/LF and the right-to-left override (U+202E) are gone.
    assert names[2] == "bericht name fdp.exe"
    assert len(names[3]) == 255 and names[3].endswith(".pdf") and set(names[3][:-4]) == {"A"}
    assert names[4] == "anhang-5.pdf"
    assert names[5] == "anhang-6.jpg"


def test_inline_image_referenced_by_cid() -> None:
    result = parse_message(corpus.make_html_with_inline_image())
    assert 'src="cid:logo@klinik"' in result.html_body
    logo, other = result.attachments
    assert (logo.content_id, logo.is_inline, logo.content_type) == ("logo@klinik", True, "image/png")
    assert logo.payload.startswith(b"\x89PNG")
    # Not referenced by the HTML: must stay visible as an attachment.
    assert (other.content_id, other.is_inline) == ("unreferenced@klinik", False)
    assert result.text_body == "Logo:"


def test_delivery_status_notification() -> None:
    result = parse_message(corpus.make_delivery_status_notification())
    assert result.in_reply_to == "<our-sent-1@klinik.kim.telematik-test>"
    assert result.text_body == "Your message could not be delivered."
    status, headers = result.attachments
    assert status.content_type == "message/delivery-status"
    assert b"Status: 5.1.1" in status.payload
    assert headers.content_type == "text/rfc822-headers"
    assert b"<our-sent-1@klinik.kim.telematik-test>" in headers.payload


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

FORBIDDEN_IN_HTML = (
    "<script",
    "alert",
    "onerror",
    "onload",
    "javascript",
    "<iframe",
    "<object",
    "<embed",
    "<form",
    "<input",
    "<style",
    "<svg",
    "tracker.example",
    "evil.example",
    "script-content",
    "iframe-content",
    "object-content",
    "form-content",
    "Titel-geheim",
    "url(",
)


@pytest.mark.parametrize("build", [corpus.make_hostile_html, corpus.make_alternative_with_hostile_html])
def test_hostile_html_is_sanitized(build) -> None:
    result = parse_message(build())
    html = result.html_body
    lowered = html.lower()
    for needle in FORBIDDEN_IN_HTML:
        assert needle.lower() not in lowered, needle
    assert "<b>Kollegin</b>" in html
    assert "<table>" in html and "<td>unauffällig</td>" in html
    assert '<a href="https://www.gematik.de/" rel="noopener noreferrer">gematik</a>' in html
    assert '<img src="cid:logo123@klinik" alt="Logo">' in html
    assert '<img alt="pixel">' in html  # remote image kept, but without src
    assert '<p style="color:red">rot</p>' in html
    assert result.attachments == []


@pytest.mark.parametrize(
    "nesting",
    [
        # The parser keeps a <div/> open (only void and foreign elements close themselves) ...
        "<div/>" * 5000,
        # ... and ignores an end tag that matches no open element: neither closes anything.
        "<div></x>" * 5000,
        "<div></span>" * 5000,
    ],
    ids=["self-closing div", "unknown end tag", "unmatched end tag"],
)
def test_html_nested_too_deep_in_disguise_is_found(nesting: str) -> None:
    assert html_too_deep(nesting)
    assert sanitize_html(nesting) == ""


@pytest.mark.parametrize(
    "flat",
    [
        "<div>Zeile</div>" * 5000,
        "<p>Zeile<br/><img src=x /></p>" * 5000,
        "<svg>" + '<path d="M0 0"/>' * 5000 + "</svg><div>Ende</div>",
        "<div><b><i>Text</div>" * 5000,
    ],
    ids=["closed divs", "void elements", "svg paths", "end tag closing those inside"],
)
def test_long_but_flat_html_is_not_too_deep(flat: str) -> None:
    assert not html_too_deep(flat)


# Seconds for work that is linear in a body of a few hundred KB (a few hundredths of a second); quadratic, it took
# half a minute and more, and an 8 MB body would outlast the fetch task's time limit on every try.
LINEAR_BUDGET = 5.0


def test_tags_that_never_close_are_scanned_in_linear_time() -> None:
    # No ">" after them: a search for each tag's end from every "<" ran to the end of the body.
    html = "<p>Befund</p>" + "<a" * 40_000
    started = time.monotonic()
    assert not html_too_deep(html)
    assert time.monotonic() - started < LINEAR_BUDGET


def test_html_too_deep_with_an_unclosed_tail_becomes_text_in_linear_time() -> None:
    html = "<div>" * 600 + "Befund &amp; Termin" + "</div>" * 600 + " <" * 100_000
    raw = b"From: a@b.kim.telematik\r\nSubject: Tief\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html.encode()
    started = time.monotonic()
    result = parse_message(raw)
    assert time.monotonic() - started < LINEAR_BUDGET
    assert result.html_body == ""
    assert " ".join(result.text_body.split()).startswith("Befund & Termin < <")


def test_an_html_mail_is_scanned_for_depth_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scan is a pass over the whole body, a third of the sanitizer's time: once per mail is enough.
    from mailbox.parsing import sanitize

    calls: list[int] = []

    def counted(html: str) -> bool:
        calls.append(len(html))
        return html_too_deep(html)

    monkeypatch.setattr(parsing, "html_too_deep", counted)
    monkeypatch.setattr(sanitize, "html_too_deep", counted)
    result = parse_message(corpus.make_hostile_html())
    assert "<b>Kollegin</b>" in result.html_body
    assert len(calls) == 1


def test_html_only_mail_gets_text_rendering_without_hidden_content() -> None:
    result = parse_message(corpus.make_hostile_html())
    assert result.text_body.startswith("Sehr geehrte Kollegin,")
    assert "Befund unauffällig" in result.text_body
    assert "gematik (https://www.gematik.de/)" in result.text_body
    for needle in ("script-content", "alert", "Titel-geheim", "form-content", "iframe-content", "<"):
        assert needle not in result.text_body


def test_alternative_prefers_plain_text_for_text_body() -> None:
    result = parse_message(corpus.make_alternative_with_hostile_html())
    assert result.text_body == "Nur Text."


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ('<a href="data:text/html,<script>alert(1)</script>">d</a>', '<a rel="noopener noreferrer">d</a>'),
        ('<a href="vbscript:msgbox(1)">v</a>', '<a rel="noopener noreferrer">v</a>'),
        ('<a href="//evil.example/">p</a>', '<a rel="noopener noreferrer">p</a>'),
        ('<a href="relative/path">r</a>', '<a rel="noopener noreferrer">r</a>'),
        ('<a href="mailto:a@b.de">m</a>', '<a href="mailto:a@b.de" rel="noopener noreferrer">m</a>'),
        (
            '<a href="https://x.de" target="_blank" onclick="x()">t</a>',
            '<a href="https://x.de" rel="noopener noreferrer">t</a>',
        ),
        ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', "<img>"),
        ('<img src="data:image/png;base64,iVBORw0KGgo=">', '<img src="data:image/png;base64,iVBORw0KGgo=">'),
        ('<img srcset="https://e.example/x 1x" src="cid:a">', '<img src="cid:a">'),
        ('<img src="//evil.example/x.gif">', "<img>"),
        ('<img src=" https://e.example/x">', "<img>"),
        ('<base href="https://evil.example/">x', "x"),
        ('<meta http-equiv="refresh" content="0;url=https://evil.example">x', "x"),
        ('<link rel="stylesheet" href="https://evil.example/x.css">y', "y"),
        (
            '<table background="https://e.example/bg.png"><tr><td>t</td></tr></table>',
            "<table><tbody><tr><td>t</td></tr></tbody></table>",
        ),
        ('<p style="width: expression(alert(1)); color: blue">e</p>', "<p>e</p>"),
        ('<p style="background: url(https://e.example/x)">bg</p>', "<p>bg</p>"),
        ('<p style="color: red; font-family: Arial">ok</p>', '<p style="color:red;font-family:Arial">ok</p>'),
        ('<svg><a xlink:href="javascript:alert(1)">s</a></svg>after', "after"),
        ("<math><mi>m</mi></math>z", "z"),
        ("<!-- <script>alert(1)</script> -->c", "c"),
        ("a\x00b", "ab"),
        ("", ""),
    ],
)
def test_sanitize_html_vectors(dirty: str, clean: str) -> None:
    assert sanitize_html(dirty) == clean


# --------------------------------------------------------------------------------------
# The parse policy: policy.default, each header object built once per parse
# --------------------------------------------------------------------------------------


def test_each_header_object_is_built_once_per_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    # The stdlib's parser and our walk ask for a part's Content-Type many times (about half of a
    # parse went there); a header object is immutable, so one per name and value is enough.
    built: list[tuple[str, str]] = []
    original = _OncePerValue._build

    def spy(self, name: str, value: str):
        built.append((name, value))
        return original(self, name, value)

    monkeypatch.setattr(_OncePerValue, "_build", spy)
    letter = corpus.make_hospital_letter()
    result = parse_message(letter)
    assert result.html_body and [a.filename for a in result.attachments] == ["Entlassbrief.pdf"]
    content_types = [value for name, value in built if name == "Content-Type"]
    assert len(content_types) == len(set(content_types)) == 5, content_types
    # Nothing is kept between messages: the next parse builds its header objects anew.
    built.clear()
    parse_message(letter)
    assert len([name for name, _value in built if name == "Content-Type"]) == 5


def _answers(message: email.message.Message) -> list[object]:
    """What the parser asks of every part, and every header's text and defects."""
    answers: list[object] = []
    for part in message.walk():
        for name, value in part.items():
            answers.append((name, str(value), [type(d).__name__ for d in getattr(value, "defects", ())]))
        for question in (
            part.get_content_type,
            part.get_params,
            part.get_filename,
            part.get_content_charset,
            part.get_content_disposition,
            part.get_boundary,
        ):
            try:
                answers.append(question())
            except Exception as exc:  # the same failure is the same answer
                answers.append(type(exc).__name__)
        answers.append([type(d).__name__ for d in part.defects])
    return answers


def test_the_parse_policy_answers_as_policy_default_does() -> None:
    raws = [builder() for builder in corpus.HOSTILE_CORPUS.values()]
    raws += [corpus.make_hospital_letter(), corpus.make_kim_error_mail(), corpus.make_html_with_inline_image()]
    raws += [path.read_bytes() for path in sorted(SAMPLES_DIR.glob("*.eml"))]
    assert len(raws) > 20
    for raw in raws:
        ours = BytesParser(policy=parse_policy()).parsebytes(raw)
        stdlib = BytesParser(policy=email.policy.default).parsebytes(raw)
        assert _answers(ours) == _answers(stdlib)


@pytest.mark.parametrize(
    ("raw_name", "expected"),
    [(b"Befund_M\xfcller.pdf", "Befund_Müller.pdf"), (b"Befund_M\xc3\xbcller.pdf", "Befund_Müller.pdf")],
)
def test_an_undeclared_8bit_file_name_is_read_as_text_like_an_undeclared_8bit_subject(raw_name, expected) -> None:
    # Senders that write Windows-1252 bytes straight into filename="..." are common; the Subject is recovered
    # (UTF-8, else cp1252), the file name must not turn "ü" into U+FFFD.
    raw = (
        b"From: a@arzt.kim.telematik-test\r\nTo: b@klinik.kim.telematik-test\r\nSubject: Befund\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nAnbei.\r\n"
        b'--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename="' + raw_name + b'"\r\n'
        b"\r\n%PDF-1.4\r\n--b--\r\n"
    )
    assert [a.filename for a in parse_message(raw).attachments] == [expected]
