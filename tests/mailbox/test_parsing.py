"""Tests for mailbox.parsing: hostile corpus and the gematik sample mails.

Pure parsing, no database, except one test that stores a mail through ingest to show what the
inbox lists.
"""

from __future__ import annotations

import email.message
import email.policy
import hashlib
import tracemalloc
from datetime import UTC, datetime, timedelta, timezone
from email.headerregistry import HeaderRegistry
from email.parser import BytesParser
from pathlib import Path

import pytest

from mailbox import parsing
from mailbox.parsing import ParsedAttachment, ParsedMessage, parse_message, sanitize_html
from mailbox.services.ingest import message_ingest
from mailbox.storage import blob_get
from tests.mailbox import corpus
from tests.mailbox.factories import MailboxFactory

SAMPLES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "kim" / "samples" / "extracted"


def _parse_eml(data: bytes) -> email.message.EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(data)


def _assert_well_formed_result(result: ParsedMessage) -> None:
    """Invariants every result must satisfy, whatever the input."""
    assert isinstance(result, ParsedMessage)
    assert isinstance(result.text_body, str) and "\r" not in result.text_body and "\x00" not in result.text_body
    assert isinstance(result.html_body, str)
    assert result.date is None or result.date.tzinfo is not None
    single_line = [result.subject, result.from_name, result.from_address, result.message_id, result.dienstkennung]
    assert all(isinstance(v, str) and "\n" not in v and "\r" not in v for v in single_line + result.to + result.cc)
    assert [a.position for a in result.attachments] == list(range(len(result.attachments)))
    for attachment in result.attachments:
        assert isinstance(attachment, ParsedAttachment)
        assert attachment.filename and len(attachment.filename) <= 255
        assert "/" not in attachment.filename and "\\" not in attachment.filename
        assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in attachment.filename)
        assert attachment.content_type == attachment.content_type.lower() and "/" in attachment.content_type
        assert isinstance(attachment.payload, bytes)
    if result.problems and any("Leere" in p or "Formfehler" in p or "Begrenzung" in p for p in result.problems):
        assert result.is_malformed


# --------------------------------------------------------------------------------------
# Whole corpus
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(corpus.HOSTILE_CORPUS) - {"large_attachment"}))
def test_every_corpus_case_parses_without_raising(name: str) -> None:
    raw = corpus.HOSTILE_CORPUS[name]()
    assert isinstance(raw, bytes)
    _assert_well_formed_result(parse_message(raw))


def test_corpus_builders_are_deterministic() -> None:
    for name, build in corpus.HOSTILE_CORPUS.items():
        if name != "large_attachment":
            assert build() == build(), name


def test_corpus_names_the_required_cases() -> None:
    required = {
        "broken_boundary_unused",
        "broken_boundary_unclosed",
        "undeclared_8bit_utf8_headers",
        "undeclared_8bit_latin1_headers",
        "latin1_body_without_charset",
        "missing_date_and_message_id",
        "integrity_failure_notice",
        "large_attachment",
        "hostile_html",
        "rfc2231_umlaut_filename",
        "rfc2047_subject",
        "repeated_integrity_results",
        "kim_error_mail",
        "garbage_random",
        "empty",
    }
    assert required <= set(corpus.HOSTILE_CORPUS)


# --------------------------------------------------------------------------------------
# MIME structure
# --------------------------------------------------------------------------------------


def test_boundary_declared_but_never_used_is_flagged_and_text_kept() -> None:
    result = parse_message(corpus.make_broken_boundary_unused())
    assert result.is_malformed
    assert any("Begrenzung (boundary)" in p for p in result.problems)
    # Nothing is hidden: the unstructured content is shown as text.
    assert "Dieser Text steht ohne MIME-Struktur im Inhalt." in result.text_body
    assert result.subject == "Grenze nie benutzt"
    assert result.integrity_results == ["01"]


def test_boundary_never_closed_is_flagged_but_parts_survive() -> None:
    result = parse_message(corpus.make_broken_boundary_unclosed())
    assert result.is_malformed
    assert any("abschließende Begrenzung" in p for p in result.problems)
    assert result.text_body == "Erster Teil, danach bricht die Nachricht ab."
    assert [(a.filename, a.content_type) for a in result.attachments] == [("abgeschnitten.pdf", "application/pdf")]
    assert result.attachments[0].payload == b"%PDF-1.4\n"


def test_multipart_without_boundary_parameter_is_flagged() -> None:
    result = parse_message(corpus.make_missing_boundary_parameter())
    assert result.is_malformed
    assert "Mehrteilige Nachricht ohne Begrenzung (boundary) (Nachricht)" in result.problems
    assert "Text ohne gueltige Struktur." in result.text_body


def test_deep_nesting_is_walked_without_recursion() -> None:
    result = parse_message(corpus.make_deep_nesting(200))
    assert result.text_body == "ganz innen"
    assert not result.is_malformed


def test_absurd_nesting_degrades_instead_of_raising() -> None:
    # The stdlib parser itself recurses per level; beyond its limit we fall back to raw text.
    result = parse_message(corpus.make_deep_nesting(2000))
    _assert_well_formed_result(result)
    assert result.is_malformed
    assert result.problems == ["Nachricht konnte nicht verarbeitet werden (RecursionError); Rohtext wird angezeigt"]
    assert "ganz innen" in result.text_body
    # ... but the top-level header block still names sender and subject, so it can be found and triaged.
    assert result.subject == "Tief verschachtelt"
    assert (result.from_name, result.from_address) == ("Dr. Anna Sender", corpus.SENDER)
    assert result.to == [corpus.RECIPIENT]
    assert result.date == datetime(2022, 10, 6, 11, 27, 22, tzinfo=timezone(timedelta(hours=2)))
    assert result.message_id == "<corpus-1@arzt.kim.telematik-test>"
    assert result.dienstkennung == "KIM-Mail;Default;V1.0"
    assert (result.decryption_results, result.integrity_results) == (["00"], ["01"])
    assert result.attachments == []


# --------------------------------------------------------------------------------------
# Charsets and headers
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build", [corpus.make_undeclared_8bit_utf8_headers, corpus.make_undeclared_8bit_latin1_headers]
)
def test_undeclared_8bit_headers_are_decoded(build) -> None:
    result = parse_message(build())
    assert result.subject == "Überweisung Größe"
    assert result.from_name == "Jürgen Groß"
    assert result.from_address == corpus.SENDER
    assert "Kopfzeile „Subject“ enthält nicht deklarierte 8-Bit-Zeichen" in result.problems
    # Decoded correctly, so the message is not "fehlerhaft".
    assert not result.is_malformed


def test_latin1_body_without_charset() -> None:
    result = parse_message(corpus.make_latin1_body_without_charset())
    assert result.text_body == corpus.LATIN1_BODY_TEXT
    assert "Größe" in result.text_body
    assert not result.is_malformed


def test_unknown_charset_falls_back_with_problem() -> None:
    result = parse_message(corpus.make_unknown_charset())
    assert result.text_body == "Größe\n"
    assert result.is_malformed
    assert any("x-klingon-9" in p for p in result.problems)


def test_rfc2047_subject_is_decoded_across_words_and_charsets() -> None:
    result = parse_message(corpus.make_rfc2047_subject())
    assert result.subject == corpus.ENCODED_SUBJECT_TEXT


def test_missing_date_and_message_id_are_fine() -> None:
    result = parse_message(corpus.make_missing_date_and_message_id())
    assert result.date is None
    assert result.message_id == ""
    assert result.problems == []
    assert not result.is_malformed
    assert result.text_body == "Kein Date, keine Message-ID.\n"


def test_invalid_date_gives_none_with_note() -> None:
    result = parse_message(corpus.make_invalid_date())
    assert result.date is None
    assert any("Datum nicht lesbar" in p for p in result.problems)
    assert not result.is_malformed


def test_date_is_aware_and_naive_dates_become_utc() -> None:
    result = parse_message(corpus.make_rfc2047_subject())
    assert result.date == datetime(2022, 10, 6, 11, 27, 22, tzinfo=timezone(timedelta(hours=2)))
    naive = parse_message(b"Date: Thu, 06 Oct 2022 11:27:22 -0000\r\nSubject: x\r\n\r\nbody\r\n")
    assert naive.date == datetime(2022, 10, 6, 11, 27, 22, tzinfo=UTC)
    assert naive.date.tzinfo is not None


def test_repeated_kim_headers_are_all_kept() -> None:
    result = parse_message(corpus.make_repeated_integrity_results())
    assert result.integrity_results == ["06", "08"]
    assert result.decryption_results == ["00", "X99"]
    assert result.dienstkennung == "Arztbrief;VHitG-Versand;V1.2"
    assert result.to == [
        "klinik.empfang@klinik.kim.telematik-test",
        "Zweite Empfaengerin <zweite@klinik.kim.telematik-test>",
    ]
    # Encoded display name with a comma stays one re-parseable entry.
    assert result.cc == ['"Müller, Hans" <hans.mueller@klinik.kim.telematik-test>']
    assert result.in_reply_to == "<original@klinik.kim.telematik-test>"
    assert result.references == "<a@x.test> <original@klinik.kim.telematik-test>"


def test_kim_error_mail() -> None:
    result = parse_message(corpus.make_kim_error_mail())
    assert result.kim_error_codes == ["4018", "X012"]
    assert result.subject == "Die KIM-Nachricht kann nicht empfangen werden"
    assert result.text_body == "Der Empfang großer Nachrichten ist nicht aktiviert."
    [original] = result.attachments
    assert original.content_type == "message/rfc822"
    assert original.filename == "KOM-LE-Nachricht.eml"
    embedded = _parse_eml(original.payload)
    assert embedded["X-KOM-LE-Version"] == "1.5"
    assert embedded.get_content_type() == "application/pkcs7-mime"


def test_headers_only_message() -> None:
    result = parse_message(corpus.make_headers_only())
    assert result.subject == "Nur Kopf"
    assert result.text_body == ""
    assert result.attachments == []


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
    embedded = _parse_eml(original.payload)
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
    assert _parse_eml(attachment.payload).get_content().strip() == "inner"


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
    still goes through policy.default (which also proves the spy sees that parser's calls).
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
    assert ("From", len(f"Dr. Anna Sender <{corpus.SENDER}>")) in parsed_by_policy_default
    assert [name for name, _size in parsed_by_policy_default if name == "To"] == []


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
    assert result.problems == [] and not result.is_malformed


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
# Garbage and failure paths
# --------------------------------------------------------------------------------------


def test_random_garbage_does_not_raise() -> None:
    result = parse_message(corpus.make_garbage_random())
    assert result.is_malformed
    assert result.problems
    assert result.text_body  # shown as best-effort text, not dropped
    assert "\x00" not in result.text_body


def test_empty_input() -> None:
    result = parse_message(corpus.make_empty())
    assert result.is_malformed
    assert result.problems == ["Leere Nachricht"]
    assert result.text_body == "" and result.attachments == []
    assert result.subject == "" and result.from_address == "" and result.to == []


def test_binary_header_garbage() -> None:
    result = parse_message(corpus.make_garbage_binary_header())
    assert result.is_malformed
    assert "body" in result.text_body


def test_total_failure_returns_raw_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(raw: bytes) -> ParsedMessage:
        raise RuntimeError("boom")

    monkeypatch.setattr(parsing, "_parse", explode)
    result = parse_message("Subject: x\r\n\r\nGrüße\r\n".encode())
    assert result.is_malformed
    assert result.text_body == "Subject: x\n\nGrüße\n"
    assert result.problems and "RuntimeError" in result.problems[0]
    assert result.subject == "x"


HEADER_FIELDS = (
    "from_address",
    "from_name",
    "to",
    "cc",
    "subject",
    "date",
    "message_id",
    "in_reply_to",
    "references",
    "dienstkennung",
    "decryption_results",
    "integrity_results",
    "kim_error_codes",
)


def _fallback_cases() -> list:
    cases = [pytest.param(build, id=name) for name, build in sorted(corpus.HOSTILE_CORPUS.items())]
    samples = sorted(SAMPLES_DIR.glob("*.eml"))
    cases += [pytest.param(path.read_bytes, id=path.name) for path in samples]
    return [case for case in cases if case.id != "large_attachment"]


@pytest.mark.parametrize("build", _fallback_cases())
def test_failed_parse_reads_the_top_level_headers_like_the_full_parse(build, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same lenient decoding (8-bit, RFC 2047, lost indentation, X-KIM-*) whether or not the body parses."""
    raw = build()
    full = parse_message(raw)

    def explode(raw: bytes) -> ParsedMessage:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parsing, "_parse", explode)
    degraded = parse_message(raw)
    _assert_well_formed_result(degraded)
    assert degraded.is_malformed
    assert {name: getattr(degraded, name) for name in HEADER_FIELDS} == {
        name: getattr(full, name) for name in HEADER_FIELDS
    }
    header_notes = [
        p for p in full.problems if p.startswith(("Kopfzeile ", "Keine Kopfzeilen", "Datum ", "Kein lesbarer"))
    ]
    assert set(header_notes) <= set(degraded.problems)


@pytest.mark.django_db
def test_unparseable_mail_is_stored_under_its_subject_and_sender() -> None:
    # Before the header fallback the inbox listed this as "(ohne Betreff)" without a sender.
    raw = corpus.make_deep_nesting(2000)
    message = message_ingest(mailbox=MailboxFactory(), uidl="deep", raw=raw)
    message.refresh_from_db()
    assert message.is_malformed
    assert message.subject == "Tief verschachtelt"
    assert (message.from_name, message.from_address) == ("Dr. Anna Sender", corpus.SENDER)
    assert message.to == [corpus.RECIPIENT]
    assert message.integrity_results == ["01"]
    assert "ganz innen" in message.text_body
    assert blob_get(message.raw_sha256) == raw


def test_failed_parse_with_broken_header_reading_still_keeps_the_raw_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parsing, "_parse", explode)
    monkeypatch.setattr(parsing, "header_fields", explode)
    result = parse_message(b"Subject: x\r\n\r\nbody\r\n")
    assert result.subject == "" and result.from_address == ""
    assert result.text_body == "Subject: x\n\nbody\n"
    assert result.problems == ["Nachricht konnte nicht verarbeitet werden (RecursionError); Rohtext wird angezeigt"]


def test_policy_default_header_errors_fall_back_per_part(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parameter access on policy.default objects raising must not lose the decoded names."""

    def broken(self, *args, **kwargs):
        raise IndexError("broken header in policy.default")

    for method in ("get_filename", "get_content_disposition", "get_content_charset"):
        monkeypatch.setattr(email.message.EmailMessage, method, broken, raising=False)
    result = parse_message(corpus.make_rfc2231_umlaut_filename())
    assert [a.filename for a in result.attachments] == [
        "Entlassbrief Müller.pdf",
        "Befund Jürgens Ärztin.pdf",
        "Röntgen Größe.pdf",
    ]
    assert result.text_body == "Anbei der Entlassbrief."


def test_parser_failure_falls_back_to_compat32(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self):
        raise IndexError("broken Content-Type in policy.default")

    # The feed parser itself calls get_content_type(), so parsing with policy.default fails.
    monkeypatch.setattr(email.message.EmailMessage, "get_content_type", broken, raising=False)
    result = parse_message(corpus.make_integrity_failure_notice())
    assert any("eingeschränkt lesbar" in p for p in result.problems)
    assert result.integrity_results == ["08"]
    assert [a.content_type for a in result.attachments] == ["message/rfc822"]
    assert result.attachments[0].filename == f"{corpus.ORIGINAL_SUBJECT}.eml"


def test_body_has_lf_line_endings_only() -> None:
    result = parse_message(corpus.make_latin1_body_without_charset())
    assert "\r" not in result.text_body and result.text_body.count("\n") == 3


# --------------------------------------------------------------------------------------
# gematik sample mails (shared/spec/kim/samples/extracted)
# --------------------------------------------------------------------------------------


def _sample(name: str) -> bytes:
    return (SAMPLES_DIR / name).read_bytes()


def test_samples_directory_exists() -> None:
    assert SAMPLES_DIR.is_dir(), SAMPLES_DIR
    assert len(list(SAMPLES_DIR.glob("*.eml"))) >= 4


@pytest.mark.parametrize(
    "name",
    [
        "FAQ_example_integrity_check_failed_error_message.eml",
        "ILF_PS_example_forward_as_rfc822.eml",
        "ILF_PS_example_outgoing_client_mail.eml",
        "ILF_PS_example_received_client_mail.eml",
    ],
)
def test_every_sample_parses(name: str) -> None:
    _assert_well_formed_result(parse_message(_sample(name)))


def test_all_sample_files_parse() -> None:
    for path in sorted(SAMPLES_DIR.glob("*.eml")):
        result = parse_message(path.read_bytes())
        _assert_well_formed_result(result)
        assert result.from_address, path.name


def test_sample_integrity_check_failed() -> None:
    result = parse_message(_sample("FAQ_example_integrity_check_failed_error_message.eml"))
    assert "08" in result.integrity_results
    assert result.integrity_results == ["08"]
    assert result.decryption_results == ["00"]
    assert result.from_address == "test.sender@gematik.kim.telematik-test"
    # The sample's folded To: lost its indentation; it is repaired, not turned into body text.
    assert result.to == ["test.recipient@gematik.kim.telematik-test", "header.manipulation@akquinet.kim.telematik-test"]
    assert any("Einrückung" in p for p in result.problems)
    assert result.message_id == "<GWIIM4RF2IU4.DGM72EEHOQZJ1@laptop-praxis>"
    assert result.date == datetime(2022, 10, 6, 11, 27, 22, tzinfo=timezone(timedelta(hours=2)))
    assert result.text_body.startswith("Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt.")
    assert "missbräuchliche" in result.text_body
    assert "[Integritätsprüfung] [ID 08]" in result.text_body
    assert "Test E-Mail Body" not in result.text_body
    [original] = result.attachments
    assert original.content_type == "message/rfc822"
    assert original.filename == "Test E-Mail Subject.eml"
    embedded = _parse_eml(original.payload)
    assert embedded["Subject"] == "Test E-Mail Subject"
    assert embedded["X-KIM-Dienstkennung"] == "KIM-Mail;Default;V1.0"
    inner = parse_message(original.payload)
    assert inner.text_body.startswith("Test E-Mail Body äüöüäöö~~~#++²³")
    assert [(a.filename, a.content_type, a.payload) for a in inner.attachments] == [
        ("att_0_test.png", "image/png", b"\x00")
    ]


def test_sample_received_client_mail() -> None:
    result = parse_message(_sample("ILF_PS_example_received_client_mail.eml"))
    assert result.dienstkennung == "KIM-Mail;Default;V1.0"
    assert result.decryption_results == ["00"]
    assert result.integrity_results == ["01"]
    assert result.kim_error_codes == []
    assert result.subject == "KIM Testnachricht"
    assert result.from_address == "user.test15@gematik.kim.telematik-test"
    assert result.to == ["user.test16 <user.test16@gematik.kim.telematik-test>"]
    assert result.cc == ["allowed_recipient@gematik1.telematik-test"]
    assert result.text_body == "Dies ist die Text-Version (Alternative 1).\n"
    assert "<b>HTML-Version</b>" in result.html_body and "<html" not in result.html_body
    [pdf] = result.attachments
    assert (pdf.filename, pdf.content_type, pdf.is_inline) == ("datei.pdf", "application/pdf", False)
    assert pdf.payload.startswith(b"%PDF-1.4")
    # The sample's base64 is a placeholder text; that is a real defect and is reported.
    assert any("Base64" in p for p in result.problems)
    # The folded Received: block at the top does not swallow the fields after it.
    assert result.message_id == "<c37a9fe5-a4b2-222d-35ba-6358fa26e48b@gematik.kim.telematik-test>"
    assert result.date == datetime(2022, 9, 9, 15, 47, tzinfo=timezone(timedelta(hours=2)))


def test_sample_forward_as_rfc822() -> None:
    result = parse_message(_sample("ILF_PS_example_forward_as_rfc822.eml"))
    assert result.subject == "Fwd: Urspruenglicher Betreff"
    assert result.text_body == "Bitte beachten Sie die weitergeleitete Nachricht im Anhang.\n"
    [forwarded] = result.attachments
    assert forwarded.content_type == "message/rfc822"
    # The sender's explicit file name wins over the subject-derived one.
    assert forwarded.filename == "weitergeleitet.eml"
    embedded = _parse_eml(forwarded.payload)
    assert embedded["Message-ID"] == "<originale-message-id@kim.local>"
    assert embedded.get_content().strip() == "[Inhalt der Originalnachricht]"
    assert result.problems == [] and not result.is_malformed


def test_sample_outgoing_client_mail() -> None:
    result = parse_message(_sample("ILF_PS_example_outgoing_client_mail.eml"))
    assert result.dienstkennung == "KIM-Mail;Default;V1.0"
    assert result.decryption_results == [] and result.integrity_results == []
    assert result.subject == "KIM Testnachricht"
    assert result.from_address == "user.test15@gematik.kim.telematik-test"
    assert result.to == ["user.test16 <user.test16@gematik.kim.telematik-test>"]
    assert [a.filename for a in result.attachments] == ["datei.pdf"]
