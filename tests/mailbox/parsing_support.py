"""Shared by the parsing tests: the gematik samples folder and the invariants every parse result must meet."""

from __future__ import annotations

import email.message
import email.policy
from email.parser import BytesParser
from pathlib import Path

from mailbox.parsing import ParsedAttachment, ParsedMessage

SAMPLES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "spec" / "kim" / "samples" / "extracted"


def parse_eml(data: bytes) -> email.message.EmailMessage:
    return BytesParser(policy=email.policy.default).parsebytes(data)


def assert_well_formed_result(result: ParsedMessage) -> None:
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
    texts = result.problem_texts
    if texts and any("Leere" in p or "Formfehler" in p or "Begrenzung" in p for p in texts):
        assert result.is_malformed
