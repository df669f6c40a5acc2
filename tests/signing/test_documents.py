"""What may be uploaded as a draft's document: told by content, with a clear German reason when refused."""

from __future__ import annotations

import pytest

from signing.services.documents import PDF, TEXT, XML, DocumentRejected, document_check
from tests.signing.documents import LETTER_TEXT, LETTER_XML, make_pdf


def test_pdf_text_and_xml_are_told_by_content():
    assert document_check(make_pdf(), "brief.pdf").mime_type == PDF
    assert document_check(LETTER_TEXT, "brief.txt").mime_type == TEXT
    assert document_check(LETTER_XML, "brief.xml").mime_type == XML
    # A PDF under a wrong name is still a PDF; a path in the name is dropped.
    checked = document_check(make_pdf(), "C:\\Briefe\\scan")
    assert (checked.mime_type, checked.filename) == (PDF, "scan")


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "leer.pdf", "Die Datei ist leer."),
        (b"MZ\x90\x00binary", "brief.pdf", "kein PDF-Dokument"),
        (b"%PDF-1.7\n1 0 obj garbage", "brief.pdf", "beschädigt"),
        (b"\x00\x01\x02", "brief.txt", "Binärdaten"),
        ("Grüße".encode("latin-1"), "brief.txt", "nicht UTF-8"),
        (b"<a><b></a>", "brief.xml", "nicht wohlgeformt"),
        (b"\x89PNG\r\n", "bild.png", "Dieser Dateityp kann nicht qualifiziert signiert werden"),
    ],
)
def test_bad_documents_get_a_german_reason(content, name, message):
    with pytest.raises(DocumentRejected) as caught:
        document_check(content, name)
    assert message in caught.value.message


def test_xml_with_entities_is_refused_without_expanding_them():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<lolz>&lol2;</lolz>"
    )
    external = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    for content in (bomb, external):
        with pytest.raises(DocumentRejected) as caught:
            document_check(content, "brief.xml")
        assert "DOCTYPE" in caught.value.message


def test_size_limit(settings):
    settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES = 1000
    with pytest.raises(DocumentRejected) as caught:
        document_check(b"a" * 1001, "brief.txt")
    assert "zu groß" in caught.value.message
    assert document_check(b"a" * 1000, "brief.txt").mime_type == TEXT
