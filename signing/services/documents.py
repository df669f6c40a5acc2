"""What a draft's document may be, checked before anything is stored: a PDF, plain text or XML within the size
limit. The Konnektor signs only these formats with a QES (PDF/A, text, XML, TIFF; never arbitrary binaries)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext as _
from lxml import etree

from kimportal.errors import PortalError

PDF = "application/pdf"
TEXT = "text/plain"
XML = "application/xml"


class DocumentRejected(PortalError):
    """The upload is not a document the portal can have signed; nothing was stored."""


@dataclass(frozen=True)
class CheckedDocument:
    content: bytes
    filename: str
    mime_type: str


def max_document_bytes() -> int:
    return int(settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES)


def document_check(content: bytes, filename: str) -> CheckedDocument:
    """The document's type, told by its content (the file name's extension only says which check applies)."""
    name = (filename or "").strip().replace("\\", "/").rsplit("/", 1)[-1][:255] or "dokument"
    limit = max_document_bytes()
    if not content:
        raise DocumentRejected(_("Die Datei ist leer."))
    if len(content) > limit:
        raise DocumentRejected(
            _("Die Datei ist zu groß (%(size)s MB); erlaubt sind höchstens %(limit)s MB.")
            % {"size": round(len(content) / 2**20, 1), "limit": round(limit / 2**20, 1)}
        )
    lower = name.lower()
    if content[:1024].lstrip().startswith(b"%PDF-") or lower.endswith(".pdf"):
        _pdf_check(content)
        return CheckedDocument(content, name, PDF)
    if lower.endswith(".xml") or content.lstrip()[:5] == b"<?xml":
        _xml_check(content)
        return CheckedDocument(content, name, XML)
    if lower.endswith((".txt", ".text")) or not lower.rpartition(".")[1]:
        _text_check(content)
        return CheckedDocument(content, name, TEXT)
    raise DocumentRejected(
        _("Dieser Dateityp kann nicht qualifiziert signiert werden. Erlaubt sind PDF, Text (.txt) und XML.")
    )


def _pdf_check(content: bytes) -> None:
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader

    if not content[:1024].lstrip().startswith(b"%PDF-"):
        raise DocumentRejected(_("Die Datei heißt .pdf, ist aber kein PDF-Dokument."))
    try:
        reader = PdfFileReader(io.BytesIO(content), strict=False)
        pages = int(reader.root["/Pages"]["/Count"])
    except (PdfError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise DocumentRejected(_("Das PDF-Dokument ist beschädigt und kann nicht gelesen werden.")) from exc
    if reader.encrypted:
        raise DocumentRejected(_("Verschlüsselte PDF-Dokumente können nicht signiert werden."))
    if pages < 1:
        raise DocumentRejected(_("Das PDF-Dokument hat keine Seiten."))


def _xml_check(content: bytes) -> None:
    # No entity expansion, no DTD loading, no network: a hostile document must not reach out or blow up.
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError as exc:
        raise DocumentRejected(_("Die XML-Datei ist nicht wohlgeformt: %(error)s") % {"error": exc.msg}) from exc
    tree = root.getroottree()
    if tree.docinfo.internalDTD is not None or tree.docinfo.doctype:
        raise DocumentRejected(_("XML-Dateien mit DOCTYPE-Deklaration werden aus Sicherheitsgründen abgelehnt."))


def _text_check(content: bytes) -> None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentRejected(_("Die Textdatei ist nicht UTF-8-kodiert.")) from exc
    if any(ch < " " and ch not in "\t\r\n\f" for ch in text):
        raise DocumentRejected(_("Die Datei enthält Binärdaten und ist keine Textdatei."))
