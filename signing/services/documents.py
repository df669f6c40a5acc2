"""What a draft's document may be, checked before anything is stored: a PDF, plain text or XML within the size
limit. The Konnektor signs only these formats with a QES (PDF/A, text, XML, TIFF; never arbitrary binaries)."""

from __future__ import annotations

import io
import unicodedata
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


def too_big(size: int) -> DocumentRejected | None:
    """The refusal of a document of ``size`` bytes, or None within the limit (the form asks before reading)."""
    limit = max_document_bytes()
    if size <= limit:
        return None
    return DocumentRejected(
        _("Die Datei ist zu groß (%(size)s MB); erlaubt sind höchstens %(limit)s MB.")
        % {"size": round(size / 2**20, 1), "limit": round(limit / 2**20, 1)}
    )


def safe_filename(filename: str) -> str:
    """The last path segment, without control characters (it ends up in a Content-Disposition header), at most 255
    characters with the extension kept (it says which check applies and how the download opens)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters (line breaks, direction overrides: "brief\u202etxt.exe") never, spaces yes.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")).strip()
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 254 - len(ext)]}.{ext}" if dot and stem and len(ext) <= 16 else name[:255]
    return name or "dokument"


def document_check(content: bytes, filename: str) -> CheckedDocument:
    """The document's type, told by its content (the file name's extension only says which check applies)."""
    name = safe_filename(filename)
    if not content:
        raise DocumentRejected(_("Die Datei ist leer."))
    refusal = too_big(len(content))
    if refusal is not None:
        raise refusal
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
    try:
        active = _runs_code(reader.root)
    except (PdfError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise DocumentRejected(_("Das PDF-Dokument ist beschädigt und kann nicht gelesen werden.")) from exc
    if active:
        raise DocumentRejected(
            _("Das PDF-Dokument enthält JavaScript oder startet Programme und kann nicht signiert werden (PDF/A).")
        )


# Actions that run code when the PDF is opened or touched: a QES covers a static document (PDF/A forbids them),
# and a script could show the recipient something else than the physician saw and signed.
_ACTIVE_ACTIONS = frozenset({"/JavaScript", "/Launch"})
_WALK_LIMIT = 500_000


def _runs_code(root: object) -> bool:
    """Whether any object reachable from the catalog is a JavaScript or Launch action (or names a /JS script):
    catalog and page actions, annotations, form fields, outlines and the /Names tree alike. Stream contents are
    not decoded; each indirect object is visited once."""
    from pyhanko.pdf_utils import generic

    seen: set[object] = set()
    stack: list[object] = [root]
    visited = 0
    while stack:
        obj = stack.pop()
        if isinstance(obj, generic.IndirectObject):
            if obj.reference in seen:
                continue
            seen.add(obj.reference)
            obj = obj.get_object()  # type: ignore[no-untyped-call]  # pyhanko is untyped here
        visited += 1
        if visited > _WALK_LIMIT:
            raise ValueError("too many objects")
        if isinstance(obj, generic.DictionaryObject):
            if "/JS" in obj or dict.get(obj, "/S") in _ACTIVE_ACTIONS:
                return True
            stack.extend(value for key, value in dict.items(obj) if key != "/Parent")
        elif isinstance(obj, generic.ArrayObject):
            stack.extend(list.__iter__(obj))
    return False


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
    if any(ch in BIDI_CONTROLS for ch in etree.tostring(root, encoding="unicode")):
        raise DocumentRejected(_("Die Datei enthält Steuerzeichen für die Schreibrichtung und wird abgelehnt."))


def _text_check(content: bytes) -> None:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentRejected(_("Die Textdatei ist nicht UTF-8-kodiert.")) from exc
    if any(ch < " " and ch not in "\t\r\n\f" for ch in text):
        raise DocumentRejected(_("Die Datei enthält Binärdaten und ist keine Textdatei."))
    # Explicit direction overrides reorder what the page shows ("Trojan Source"): the physician would read
    # another text than the bytes she signs.
    if any(ch in BIDI_CONTROLS for ch in text):
        raise DocumentRejected(_("Die Datei enthält Steuerzeichen für die Schreibrichtung und wird abgelehnt."))


BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
