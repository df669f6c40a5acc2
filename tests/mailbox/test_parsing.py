"""Tests for mailbox.parsing: hostile corpus and the gematik sample mails.

Pure parsing, no database, except one test that stores a mail through ingest to show what the
inbox lists.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import pytest

from mailbox.parsing import ParsedMessage, parse_message
from mailbox.parsing.headers import HeaderFields, HeaderKwargs
from tests.mailbox import corpus
from tests.mailbox.parsing_support import assert_well_formed_result, parse_eml

# --------------------------------------------------------------------------------------
# Whole corpus
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(corpus.HOSTILE_CORPUS) - {"large_attachment"}))
def test_every_corpus_case_parses_without_raising(name: str) -> None:
    raw = corpus.HOSTILE_CORPUS[name]()
    assert isinstance(raw, bytes)
    assert_well_formed_result(parse_message(raw))


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
    assert any("Begrenzung (boundary)" in p for p in result.problem_texts)
    # Nothing is hidden: the unstructured content is shown as text.
    assert "Dieser Text steht ohne MIME-Struktur im Inhalt." in result.text_body
    assert result.subject == "Grenze nie benutzt"
    assert result.integrity_results == ["01"]


def test_boundary_never_closed_is_flagged_but_parts_survive() -> None:
    result = parse_message(corpus.make_broken_boundary_unclosed())
    assert result.is_malformed
    assert any("abschließende Begrenzung" in p for p in result.problem_texts)
    assert result.text_body == "Erster Teil, danach bricht die Nachricht ab."
    assert [(a.filename, a.content_type) for a in result.attachments] == [("abgeschnitten.pdf", "application/pdf")]
    assert result.attachments[0].payload == b"%PDF-1.4\n"


def test_multipart_without_boundary_parameter_is_flagged() -> None:
    result = parse_message(corpus.make_missing_boundary_parameter())
    assert result.is_malformed
    assert "Mehrteilige Nachricht ohne Begrenzung (boundary) (Nachricht)" in result.problem_texts
    assert "Text ohne gueltige Struktur." in result.text_body


def test_deep_nesting_is_walked_without_recursion() -> None:
    result = parse_message(corpus.make_deep_nesting(200))
    assert result.text_body == "ganz innen"
    assert not result.is_malformed


def test_absurd_nesting_degrades_instead_of_raising() -> None:
    # The stdlib parser itself recurses per level; beyond its limit we fall back to raw text.
    result = parse_message(corpus.make_deep_nesting(2000))
    assert_well_formed_result(result)
    assert result.is_malformed
    unparsed = "Nachricht konnte nicht verarbeitet werden (RecursionError); Rohtext wird angezeigt"
    assert result.problem_texts == [unparsed]
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
    assert "Kopfzeile „Subject“ enthält nicht deklarierte 8-Bit-Zeichen" in result.problem_texts
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
    assert any("x-klingon-9" in p for p in result.problem_texts)


def test_rfc2047_subject_is_decoded_across_words_and_charsets() -> None:
    result = parse_message(corpus.make_rfc2047_subject())
    assert result.subject == corpus.ENCODED_SUBJECT_TEXT


def test_missing_date_and_message_id_are_fine() -> None:
    result = parse_message(corpus.make_missing_date_and_message_id())
    assert result.date is None
    assert result.message_id == ""
    assert result.problem_texts == []
    assert not result.is_malformed
    assert result.text_body == "Kein Date, keine Message-ID.\n"


def test_invalid_date_gives_none_with_note() -> None:
    result = parse_message(corpus.make_invalid_date())
    assert result.date is None
    assert any("Datum nicht lesbar" in p for p in result.problem_texts)
    assert not result.is_malformed


@pytest.mark.parametrize("value", ["Fri, 31 Dec 9999 23:59:59 -1200", "Mon, 01 Jan 1800 00:00:00 +0000"])
def test_a_date_the_database_cannot_hold_gives_none_with_note(value: str) -> None:
    # The first is year 10000 in UTC (astimezone overflows), the second merely out of range.
    result = parse_message(f"Date: {value}\r\nSubject: x\r\n\r\nbody\r\n".encode())
    assert result.date is None
    assert any("Datum außerhalb des gültigen Bereichs" in p for p in result.problem_texts)
    assert result.subject == "x"


def test_header_fields_all_reach_the_parsed_message() -> None:
    # HeaderFields.as_kwargs() lists its fields by hand (typed); a field added to one place only fails here.
    names = {f.name for f in fields(HeaderFields)}
    assert set(HeaderKwargs.__annotations__) == names
    assert set(HeaderFields(subject="s").as_kwargs()) == names
    assert names <= {f.name for f in fields(ParsedMessage)}


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
    embedded = parse_eml(original.payload)
    assert embedded["X-KOM-LE-Version"] == "1.5"
    assert embedded.get_content_type() == "application/pkcs7-mime"


def test_headers_only_message() -> None:
    result = parse_message(corpus.make_headers_only())
    assert result.subject == "Nur Kopf"
    assert result.text_body == ""
    assert result.attachments == []
