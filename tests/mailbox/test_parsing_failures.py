"""Tests for mailbox.parsing: garbage, failure paths, and the gematik sample mails."""

from __future__ import annotations

import email.message
import email.policy
from datetime import datetime, timedelta, timezone

import pytest

from mailbox import parsing
from mailbox.parsing import ParsedMessage, parse_message
from mailbox.services.ingest import message_ingest
from mailbox.storage import blob_get
from tests.mailbox import corpus
from tests.mailbox.factories import MailboxFactory
from tests.mailbox.parsing_support import SAMPLES_DIR, assert_well_formed_result, parse_eml

# --------------------------------------------------------------------------------------
# Garbage and failure paths
# --------------------------------------------------------------------------------------


def test_random_garbage_does_not_raise() -> None:
    result = parse_message(corpus.make_garbage_random())
    assert result.is_malformed
    assert result.problem_texts
    assert result.text_body  # shown as best-effort text, not dropped
    assert "\x00" not in result.text_body


def test_empty_input() -> None:
    result = parse_message(corpus.make_empty())
    assert result.is_malformed
    assert result.problem_texts == ["Leere Nachricht"]
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
    assert result.problem_texts and "RuntimeError" in result.problem_texts[0]
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
    assert_well_formed_result(degraded)
    assert degraded.is_malformed
    assert {name: getattr(degraded, name) for name in HEADER_FIELDS} == {
        name: getattr(full, name) for name in HEADER_FIELDS
    }
    header_notes = [
        p for p in full.problem_texts if p.startswith(("Kopfzeile ", "Keine Kopfzeilen", "Datum ", "Kein lesbarer"))
    ]
    assert set(header_notes) <= set(degraded.problem_texts)


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
    unparsed = "Nachricht konnte nicht verarbeitet werden (RecursionError); Rohtext wird angezeigt"
    assert result.problem_texts == [unparsed]


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
    assert any("eingeschränkt lesbar" in p for p in result.problem_texts)
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
    assert_well_formed_result(parse_message(_sample(name)))


def test_all_sample_files_parse() -> None:
    for path in sorted(SAMPLES_DIR.glob("*.eml")):
        result = parse_message(path.read_bytes())
        assert_well_formed_result(result)
        assert result.from_address, path.name


def test_sample_integrity_check_failed() -> None:
    result = parse_message(_sample("FAQ_example_integrity_check_failed_error_message.eml"))
    assert "08" in result.integrity_results
    assert result.integrity_results == ["08"]
    assert result.decryption_results == ["00"]
    assert result.from_address == "test.sender@gematik.kim.telematik-test"
    # The sample's folded To: lost its indentation; it is repaired, not turned into body text.
    assert result.to == ["test.recipient@gematik.kim.telematik-test", "header.manipulation@akquinet.kim.telematik-test"]
    assert any("Einrückung" in p for p in result.problem_texts)
    assert result.message_id == "<GWIIM4RF2IU4.DGM72EEHOQZJ1@laptop-praxis>"
    assert result.date == datetime(2022, 10, 6, 11, 27, 22, tzinfo=timezone(timedelta(hours=2)))
    assert result.text_body.startswith("Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt.")
    assert "missbräuchliche" in result.text_body
    assert "[Integritätsprüfung] [ID 08]" in result.text_body
    assert "Test E-Mail Body" not in result.text_body
    [original] = result.attachments
    assert original.content_type == "message/rfc822"
    assert original.filename == "Test E-Mail Subject.eml"
    embedded = parse_eml(original.payload)
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
    assert any("Base64" in p for p in result.problem_texts)
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
    embedded = parse_eml(forwarded.payload)
    assert embedded["Message-ID"] == "<originale-message-id@kim.local>"
    assert embedded.get_content().strip() == "[Inhalt der Originalnachricht]"
    assert result.problem_texts == [] and not result.is_malformed


def test_sample_outgoing_client_mail() -> None:
    result = parse_message(_sample("ILF_PS_example_outgoing_client_mail.eml"))
    assert result.dienstkennung == "KIM-Mail;Default;V1.0"
    assert result.decryption_results == [] and result.integrity_results == []
    assert result.subject == "KIM Testnachricht"
    assert result.from_address == "user.test15@gematik.kim.telematik-test"
    assert result.to == ["user.test16 <user.test16@gematik.kim.telematik-test>"]
    assert [a.filename for a in result.attachments] == ["datei.pdf"]
