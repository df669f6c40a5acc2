"""Pure parser for KIM mail received from the Clientmodul over POP3.

No Django models and no I/O: bytes in, a frozen ``ParsedMessage`` out.  Mail from the
CM is partly produced by third-party software (sending Primärsysteme, CM error notices,
DSNs from the Fachdienst), so every step assumes hostile or broken input and degrades
to "show what we can and record a problem" instead of raising.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import email.errors
import email.policy
import mimetypes
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from io import BytesIO

import nh3

__all__ = ["ParsedAttachment", "ParsedMessage", "parse_message", "sanitize_html"]


@dataclass(frozen=True)
class ParsedAttachment:
    position: int
    filename: str
    content_type: str
    payload: bytes
    content_id: str
    is_inline: bool


@dataclass(frozen=True)
class ParsedMessage:
    from_address: str = ""
    from_name: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    subject: str = ""
    date: datetime | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: str = ""
    dienstkennung: str = ""
    decryption_results: list[str] = field(default_factory=list)
    integrity_results: list[str] = field(default_factory=list)
    kim_error_codes: list[str] = field(default_factory=list)
    text_body: str = ""
    html_body: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    is_malformed: bool = False


# --------------------------------------------------------------------------------------
# Problem collection
# --------------------------------------------------------------------------------------

# German texts for the stdlib's MIME defects.  Every defect the parser reports is a
# structural problem, so all of them count as "matters" for is_malformed.
_DEFECT_TEXTS: dict[type[email.errors.MessageDefect], str] = {
    email.errors.NoBoundaryInMultipartDefect: "Mehrteilige Nachricht ohne Begrenzung (boundary)",
    email.errors.StartBoundaryNotFoundDefect: "Mehrteilige Nachricht ohne gültige Begrenzung (boundary): "
    "die angegebene Begrenzung kommt im Inhalt nicht vor",
    email.errors.CloseBoundaryNotFoundDefect: "Mehrteilige Nachricht ohne abschließende Begrenzung (boundary); "
    "die Nachricht ist möglicherweise abgeschnitten",
    email.errors.FirstHeaderLineIsContinuationDefect: "Die erste Kopfzeile ist eine Fortsetzungszeile",
    email.errors.MisplacedEnvelopeHeaderDefect: "Fehlplatzierte Umschlagzeile („From “) im Kopf",
    email.errors.MissingHeaderBodySeparatorDefect: "Keine gültige Trennung zwischen Kopfzeilen und Inhalt",
    email.errors.MultipartInvariantViolationDefect: "Als mehrteilig deklarierter Teil enthält keine Teile",
    email.errors.InvalidMultipartContentTransferEncodingDefect: "Ungültige Transferkodierung für einen "
    "mehrteiligen Teil",
    email.errors.UndecodableBytesDefect: "Nicht dekodierbare Bytes",
    email.errors.InvalidBase64PaddingDefect: "Base64-kodierter Inhalt mit fehlerhaftem Padding",
    email.errors.InvalidBase64CharactersDefect: "Base64-kodierter Inhalt mit ungültigen Zeichen",
    email.errors.InvalidBase64LengthDefect: "Base64-kodierter Inhalt mit ungültiger Länge",
}


class _Problems:
    """Ordered, de-duplicated problem texts plus the "does it matter" flag."""

    # A message with thousands of broken parts must not produce thousands of lines.
    LIMIT = 50

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._seen: set[str] = set()
        self._dropped = 0
        self.severe = False

    def add(self, text: str, *, severe: bool = True) -> None:
        self.severe = self.severe or severe
        if text in self._seen:
            return
        self._seen.add(text)
        if len(self.texts) < self.LIMIT:
            self.texts.append(text)
        else:
            self._dropped += 1

    def result(self) -> list[str]:
        if self._dropped:
            return [*self.texts, f"… und {self._dropped} weitere Probleme"]
        return list(self.texts)

    def add_defects(self, defects: Iterable[email.errors.MessageDefect], where: str) -> None:
        for defect in defects:
            text = _DEFECT_TEXTS.get(type(defect))
            if text is None:
                # Unknown defect classes (future Python versions, header defects) still count.
                text = f"Formfehler ({type(defect).__name__})"
            self.add(f"{text} ({where})" if where else text)


# --------------------------------------------------------------------------------------
# Charset helpers
# --------------------------------------------------------------------------------------

# Senders who declare latin-1 almost always mean windows-1252 (€, typographic quotes);
# browsers follow the same rule (WHATWG encoding spec).
_LATIN1_ALIASES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "iso-ir-100", "cp819"}
_ASCII_ALIASES = {"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us"}
# Pseudo charsets that carry no information; falling back silently is the right thing.
_NO_INFO_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"}


def _decode_8bit_fallback(data: bytes) -> str:
    """Undeclared 8-bit text: UTF-8 if it is valid UTF-8, else windows-1252, else latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # cp1252 leaves five bytes undefined; latin-1 maps every byte, so this never fails.
        return data.decode("latin-1")


def _lookup_codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError):
        return None


def _decode_text(data: bytes, charset: str | None, problems: _Problems, where: str) -> str:
    """Decode a text body honouring the declared charset, with documented fallbacks."""
    label = (charset or "").strip().strip('"').lower()
    if not label or label in _NO_INFO_CHARSETS:
        if data.isascii():
            return data.decode("ascii")
        return _decode_8bit_fallback(data)
    if label in _LATIN1_ALIASES:
        label = "cp1252"
    codec = _lookup_codec(label)
    if codec is None:
        problems.add(f"Unbekannter Zeichensatz „{label[:40]}“ ({where}); als UTF-8/Windows-1252 gelesen")
        return _decode_8bit_fallback(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    except LookupError:
        # Codecs that exist but cannot decode bytes (e.g. "rot13") end up here.
        problems.add(f"Zeichensatz „{label[:40]}“ nicht verwendbar ({where}); als UTF-8/Windows-1252 gelesen")
        return _decode_8bit_fallback(data)
    if codec == "cp1252":
        return data.decode("latin-1")
    if label in _ASCII_ALIASES or codec == "ascii":
        # "us-ascii" with 8-bit content is a very common mislabel; not worth a warning.
        return _decode_8bit_fallback(data)
    problems.add(f"Text passt nicht zum angegebenen Zeichensatz „{label[:40]}“ ({where})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace")


def _has_surrogates(value: str) -> bool:
    # The bytes parser smuggles undeclared 8-bit header bytes as lone surrogates.
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _recover_8bit(value: str) -> tuple[str, bool]:
    """Turn surrogate-escaped 8-bit header bytes back into text (UTF-8, else cp1252)."""
    if not _has_surrogates(value):
        return value, False
    data = value.encode("utf-8", "surrogateescape")
    return _decode_8bit_fallback(data), True


# --------------------------------------------------------------------------------------
# Header helpers
# --------------------------------------------------------------------------------------

_FOLD_RE = re.compile(r"\r?\n[ \t]*|\r")
_CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_EW_RE = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)[ \t]+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")


def _unfold(value: str) -> str:
    return _FOLD_RE.sub(" ", value).strip()


def _decode_encoded_word(match: re.Match[str]) -> str:
    charset, encoding, text = match.group(1), match.group(2).lower(), match.group(3)
    # RFC 2231 allows a language suffix: =?utf-8*de?Q?...?=
    charset = charset.split("*", 1)[0]
    try:
        if encoding == "b":
            data = base64.b64decode(text + "=" * (-len(text) % 4))
        else:
            data = binascii.a2b_qp(text.replace("_", " ").encode("ascii", "replace"), header=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    codec = _lookup_codec(charset.lower())
    if codec is not None:
        with contextlib.suppress(UnicodeDecodeError, LookupError):
            return data.decode(codec)
    return _decode_8bit_fallback(data)


def _decode_words_lenient(value: str) -> str:
    """Own RFC 2047 decoder for what make_header() refuses (unknown charsets, raw 8-bit mixed in)."""
    value = _BETWEEN_EW_RE.sub(r"\1", value)
    return _ENCODED_WORD_RE.sub(_decode_encoded_word, value)


_STDLIB_DECODE_LIMIT = 8 * 1024
# policy.default's address parser costs ~0.2 ms per address; a To: with 100 000 entries
# would take half a minute.  Beyond this size the simpler getaddresses() is used.
_ADDRESS_PARSER_LIMIT = 32 * 1024


def _decode_header_value(raw: str, problems: _Problems | None = None, name: str = "") -> str:
    """Raw header value (possibly folded, 8-bit, RFC 2047) → display text on one line."""
    try:
        value, had_8bit = _recover_8bit(raw)
        if had_8bit and problems is not None:
            # Decodable, so informational only; the text shown is still correct.
            problems.add(f"Kopfzeile „{name}“ enthält nicht deklarierte 8-Bit-Zeichen", severe=False)
        value = _unfold(value)
        if "=?" in value:
            decoded: str | None = None
            # decode_header() is quadratic in the number of encoded words (list.pop(0));
            # the lenient regex decoder is linear, so huge values go straight there.
            if value.isascii() and len(value) <= _STDLIB_DECODE_LIMIT:
                try:
                    decoded = str(make_header(decode_header(value)))
                except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
                    decoded = None
            if decoded is None:
                decoded = _decode_words_lenient(value)
            value = decoded
        return _CTRL_RE.sub(" ", value)
    except Exception:  # last resort: a header must never break parsing
        return _CTRL_RE.sub(" ", raw.encode("utf-8", "surrogateescape").decode("latin-1", errors="replace"))


def _first(headers: list[tuple[str, str, str]], name: str) -> tuple[str, str] | None:
    """(raw, decoded) of the first header called *name* (case-insensitive)."""
    lname = name.lower()
    for hname, raw, decoded in headers:
        if hname.lower() == lname:
            return raw, decoded
    return None


def _all_values(headers: list[tuple[str, str, str]], name: str) -> list[str]:
    lname = name.lower()
    return [decoded.strip() for hname, _raw, decoded in headers if hname.lower() == lname and decoded.strip()]


_NEEDS_QUOTES_RE = re.compile(r'[,;:<>@"()\[\]\\]')


def _format_address(name: str, addr: str) -> str:
    name = " ".join(name.split())
    if not name:
        return addr
    if _NEEDS_QUOTES_RE.search(name):
        # Keep the display string re-parseable by getaddresses() (e.g. "Müller, Hans").
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>" if addr else name


def _parse_addresses(name: str, raw: str) -> list[tuple[str, str]]:
    """Address header → [(display name, addr-spec)], decoding RFC 2047 names."""
    value, _ = _recover_8bit(raw)
    value = _unfold(value)
    if not value:
        return []
    if len(value) <= _ADDRESS_PARSER_LIMIT:
        with contextlib.suppress(Exception):
            # policy.default understands encoded words inside display names ("Müller, Hans").
            header = email.policy.default.header_factory(name, value)
            result = [(_CTRL_RE.sub(" ", a.display_name), a.addr_spec) for a in header.addresses]
            if any(addr for _n, addr in result):
                return result
    pairs = []
    with contextlib.suppress(Exception):
        for disp, addr in getaddresses([value]):
            if disp or addr:
                pairs.append((_decode_header_value(disp), addr))
    if any("@" in addr for _n, addr in pairs):
        return pairs
    # Nothing recognisable: show the text as it is rather than hiding the recipient.
    return [("", _decode_header_value(value))]


def _parse_date(value: str, problems: _Problems) -> datetime | None:
    if not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        problems.add(f"Datum nicht lesbar: „{value.strip()[:80]}“", severe=False)
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:
        parsed = None
    # A sender controls this header; a year the database cannot hold ("31 Dec 9999 -1200" is year
    # 10000 in UTC) would break every list showing the message.
    if parsed is None or not (1900 <= parsed.year <= 2200):
        problems.add(f"Datum außerhalb des gültigen Bereichs: „{value.strip()[:80]}“", severe=False)
        return None
    return parsed


# --------------------------------------------------------------------------------------
# Part metadata (policy.default first, compat32-style fallback)
# --------------------------------------------------------------------------------------


def _shadow(part: Message) -> Message:
    """A compat32 copy of the part's headers: plain strings, never raises on access."""
    shadow = Message(policy=email.policy.compat32)
    for name, value in part.raw_items():
        shadow[name] = value
    return shadow


def _content_type(part: Message) -> str:
    try:
        ctype = part.get_content_type()
    except Exception:  # broken Content-Type header in policy.default
        try:
            ctype = _shadow(part).get_content_type()
        except Exception:
            ctype = "application/octet-stream"
    ctype = ctype.strip().lower()
    if "/" not in ctype or not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", ctype):
        return "application/octet-stream"
    return ctype


def _raw_param(part: Message, param: str, header: str) -> str | None:
    """Parameter value via compat32: RFC 2231 collapsed, RFC 2047 left for us to decode."""
    try:
        value = _shadow(part).get_param(param, header=header)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _lang, text = value
        data = text.encode("latin-1", "surrogateescape") if isinstance(text, str) else text
        codec = _lookup_codec((charset or "").lower()) if charset else None
        if codec is not None:
            with contextlib.suppress(UnicodeDecodeError, LookupError):
                return data.decode(codec)
        return _decode_8bit_fallback(data)
    return str(value)


def _raw_filename(part: Message) -> str | None:
    name: str | None = None
    with contextlib.suppress(Exception):
        name = part.get_filename()
    if name is None or _has_surrogates(name) or "=?" in name or "\ufffd" in name:
        alt = _raw_param(part, "filename", "content-disposition") or _raw_param(part, "name", "content-type")
        if alt is not None:
            name = alt
    if name is None:
        return None
    return _decode_header_value(name)


def _disposition(part: Message) -> str:
    try:
        value = part.get_content_disposition()
    except Exception:
        try:
            value = _shadow(part).get_content_disposition()
        except Exception:
            value = None
    return (value or "").strip().lower()


def _charset(part: Message) -> str | None:
    try:
        value = part.get_content_charset()
    except Exception:
        value = _raw_param(part, "charset", "content-type")
    if value is None:
        return None
    recovered, _ = _recover_8bit(str(value))
    return recovered.lower()


def _content_id(part: Message) -> str:
    for name, raw in part.raw_items():
        if name.lower() == "content-id":
            value = _decode_header_value(raw).strip()
            return value[1:-1].strip() if value.startswith("<") and value.endswith(">") else value
    return ""


_KNOWN_CTE = {"7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "x-uue", "uue"}


def _check_cte(part: Message, problems: _Problems, where: str) -> None:
    for name, raw in part.raw_items():
        if name.lower() == "content-transfer-encoding":
            cte = _decode_header_value(raw).strip().lower()
            if cte and cte not in _KNOWN_CTE:
                problems.add(f"Unbekannte Transferkodierung „{cte[:40]}“ ({where}); Inhalt ungeprüft übernommen")
            return


def _payload_bytes(part: Message, problems: _Problems, where: str) -> bytes:
    _check_cte(part, problems, where)
    known_defects = len(part.defects)
    try:
        data = part.get_payload(decode=True)
    except Exception:
        problems.add(f"Inhalt nicht dekodierbar ({where})")
        data = None
    if data is None:
        raw = part.get_payload()
        if isinstance(raw, str):
            data = raw.encode("utf-8", "surrogateescape")
        else:
            data = b""
    # get_payload(decode=True) records base64 defects on the part only now.
    problems.add_defects(part.defects[known_defects:], where)
    return data


# --------------------------------------------------------------------------------------
# Filenames
# --------------------------------------------------------------------------------------

_PREFERRED_EXT = {
    "application/pdf": ".pdf",
    "application/octet-stream": ".bin",
    "application/xml": ".xml",
    "text/xml": ".xml",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/calendar": ".ics",
    "text/rfc822-headers": ".txt",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/gif": ".gif",
    "image/tiff": ".tif",
    "message/rfc822": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "application/pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m",
    "application/zip": ".zip",
}
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[1-9]|lpt[1-9])(\..*)?$", re.IGNORECASE)
_MAX_NAME = 255


def _extension_for(content_type: str) -> str:
    ext = _PREFERRED_EXT.get(content_type) or mimetypes.guess_extension(content_type, strict=False)
    return ext or ".bin"


def _sanitize_filename(name: str) -> str:
    """Display/download-safe file name; "" when nothing usable is left."""
    name = unicodedata.normalize("NFC", name)
    # Cc: control characters; Cf: invisible format characters such as U+202E, which can
    # make "rechnung\u202efdp.exe" display as "rechnungexe.pdf".
    name = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") else ch for ch in name)
    name = name.replace("/", "_").replace("\\", "_")
    name = " ".join(name.split())
    # No hidden files and no ".." names; trailing dots/spaces are stripped by Windows anyway.
    name = name.lstrip(". ").rstrip(". ")
    if not name:
        return ""
    if _WINDOWS_RESERVED.match(name):
        name = "_" + name
    if len(name) > _MAX_NAME or len(name.encode("utf-8")) > _MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        suffix = "." + ext if dot and 0 < len(ext) <= 16 else ""
        stem = stem if suffix else name
        # Cut by characters until it also fits common 255-byte file-system limits.
        budget = _MAX_NAME - len(suffix.encode("utf-8"))
        while len(stem.encode("utf-8")) > budget:
            stem = stem[: max(0, min(len(stem) - 1, budget))]
        name = stem.rstrip(". ") + suffix
    return name


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

_ALLOWED_TAGS = set(nh3.ALLOWED_TAGS) | {"tfoot", "font", "center"}
_DROP_WITH_CONTENT = {
    "script",
    "style",
    "iframe",
    "frame",
    "frameset",
    "object",
    "embed",
    "applet",
    "form",
    "noscript",
    "template",
    "title",
    "svg",
    "math",
    "textarea",
    "select",
    "button",
    "head",
    "meta",
    "link",
    "base",
}
_ALLOWED_TAGS -= _DROP_WITH_CONTENT


def _attributes() -> dict[str, set[str]]:
    attrs = {tag: set(values) for tag, values in nh3.ALLOWED_ATTRIBUTES.items()}
    attrs["*"] = {"style", "title", "dir", "lang", "align"}
    attrs.setdefault("img", set()).update({"src", "alt", "width", "height", "title", "border"})
    attrs.setdefault("a", set()).update({"href", "title"})
    for tag in ("table", "td", "th", "tr"):
        attrs.setdefault(tag, set()).update({"width", "height", "valign", "bgcolor", "border"})
    attrs["table"].update({"cellpadding", "cellspacing"})
    attrs["font"] = {"color", "size", "face"}
    return attrs


_ALLOWED_ATTRIBUTES = _attributes()
# Style properties without URL-bearing values (no background-image, list-style-image,
# border-image, content): CSS url() would load remote resources.
_STYLE_PROPERTIES = {
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "white-space",
    "vertical-align",
    "width",
    "height",
    "max-width",
    "min-width",
    "margin",
    "margin-top",
    "margin-bottom",
    "margin-left",
    "margin-right",
    "padding",
    "padding-top",
    "padding-bottom",
    "padding-left",
    "padding-right",
    "border",
    "border-top",
    "border-bottom",
    "border-left",
    "border-right",
    "border-color",
    "border-style",
    "border-width",
    "border-collapse",
    "border-spacing",
    "display",
    "list-style-type",
}
_LINK_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_DATA_IMAGE_RE = re.compile(r"^data:image/(png|jpeg|jpg|gif|webp|bmp);base64,[a-z0-9+/=\s]*$", re.IGNORECASE)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    compact = re.sub(r"[\x00-\x20]", "", value).lower()
    if attr == "src":
        # No remote loads (tracking pixels, IP leaks): only embedded parts and inline data.
        if compact.startswith("cid:") or _DATA_IMAGE_RE.match(value.strip()):
            return value
        return None
    if attr == "href":
        return value if compact.startswith(_LINK_SCHEMES) else None
    if attr == "style" and ("url(" in compact or "expression(" in compact or "\\" in compact or "@import" in compact):
        # Defence in depth on top of filter_style_properties: escapes and url() can smuggle loads.
        return None
    return value


_CLEANER = nh3.Cleaner(
    tags=_ALLOWED_TAGS,
    clean_content_tags=_DROP_WITH_CONTENT,
    attributes=_ALLOWED_ATTRIBUTES,
    attribute_filter=_attribute_filter,
    strip_comments=True,
    link_rel="noopener noreferrer",
    url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
    filter_style_properties=_STYLE_PROPERTIES,
    # Relative URLs would resolve against the portal origin inside the iframe.
    url_relative="deny",
)


def sanitize_html(html: str) -> str:
    """Sanitize untrusted mail HTML for display (the UI adds a sandboxed iframe on top)."""
    if not html:
        return ""
    try:
        return _CLEANER.clean(html)
    except Exception:  # never return unsanitized HTML
        return ""


_BLOCK_TAGS = {
    "p",
    "div",
    "br",
    "tr",
    "table",
    "blockquote",
    "pre",
    "hr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "section",
    "article",
    "header",
    "footer",
    "address",
    "center",
}
_SKIP_TEXT_TAGS = {"script", "style", "head", "title", "template", "noscript", "svg", "math", "iframe", "object"}


class _HtmlToText(HTMLParser):
    """Small, linear HTML → plain text renderer for mails that only carry HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0
        self.links: list[tuple[str, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TEXT_TAGS:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
            self.out.append("\n")
        elif tag == "li":
            self.out.append("\n- ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag in _BLOCK_TAGS:
            self.out.append("\n")
        elif tag == "a":
            href = dict(attrs).get("href") or ""
            self.links.append((href, len(self.out)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TEXT_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            self.out.append("\n")
        elif tag in _BLOCK_TAGS or tag == "li":
            self.out.append("\n")
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.out[start:]).strip()
            if href.lower().startswith(("http:", "https:")) and href != text:
                self.out.append(f" ({href})")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.out.append(data if self.pre else re.sub(r"\s+", " ", data))


def _html_to_text(html: str) -> str:
    parser = _HtmlToText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # fall back to stripping tags crudely
        return re.sub(r"<[^>]*>", " ", html)
    lines = [line.strip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --------------------------------------------------------------------------------------
# MIME tree walk
# --------------------------------------------------------------------------------------


def _serialize(message: Message, linesep: str) -> bytes:
    """Bytes of an (embedded) message, headers kept as received (no refolding)."""
    for policy in (
        email.policy.default.clone(linesep=linesep, refold_source="none"),
        email.policy.compat32.clone(linesep=linesep),
    ):
        try:
            buffer = BytesIO()
            BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
            return buffer.getvalue()
        except Exception:  # noqa: S112 - try the next, more tolerant policy
            continue
    return b""


def _embedded_subject(message: Message) -> str:
    for name, raw in message.raw_items():
        if name.lower() == "subject":
            return " ".join(_decode_header_value(raw).split())
    return ""


@dataclass
class _Walk:
    linesep: str
    problems: _Problems
    text_parts: list[str] = field(default_factory=list)
    html_raw: str | None = None
    # (filename-or-None, content_type, payload, content_id, disposition)
    attachments: list[tuple[str | None, str, bytes, str, str]] = field(default_factory=list)


def _walk(root: Message, state: _Walk) -> None:
    # Explicit stack instead of Message.walk(): no recursion limit on hostile nesting.
    stack: list[tuple[Message, bool, int]] = [(root, False, 0)]
    counter = 0
    while stack:
        part, in_alternative, depth = stack.pop()
        counter += 1
        where = "Nachricht" if part is root else f"Teil {counter}"
        try:
            _handle_part(part, in_alternative, depth, where, state, stack)
        except Exception as exc:  # one bad part must not lose the others
            state.problems.add(f"Teil konnte nicht gelesen werden ({where}: {type(exc).__name__})")
            with contextlib.suppress(Exception):
                raw = part.get_payload()
                if isinstance(raw, str):
                    state.attachments.append(
                        (None, "application/octet-stream", raw.encode("utf-8", "surrogateescape"), "", "attachment")
                    )


def _handle_part(
    part: Message,
    in_alternative: bool,
    depth: int,
    where: str,
    state: _Walk,
    stack: list[tuple[Message, bool, int]],
) -> None:
    state.problems.add_defects(part.defects, where)
    ctype = _content_type(part)
    maintype = ctype.split("/", 1)[0]
    payload = part.get_payload()

    if ctype in ("message/rfc822", "message/global"):
        embedded = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(embedded, Message):
            data = _serialize(embedded, state.linesep)
            subject = _embedded_subject(embedded)
        else:
            data = _payload_bytes(part, state.problems, where)
            subject = ""
        explicit = _raw_filename(part)
        name = explicit or (f"{subject[:200]}.eml" if subject else "weitergeleitete-nachricht.eml")
        state.attachments.append((name, "message/rfc822", data, _content_id(part), _disposition(part)))
        return

    if isinstance(payload, list):
        if maintype == "message":
            # message/delivery-status and friends: header blocks, keep them as one text file.
            data = b"".join(_serialize(sub, state.linesep) for sub in payload if isinstance(sub, Message))
            state.attachments.append((_raw_filename(part), ctype, data, _content_id(part), _disposition(part)))
            return
        child_alt = ctype == "multipart/alternative" or (in_alternative and maintype == "multipart")
        # Reverse so the stack pops children in document order.
        for child in reversed(payload):
            if isinstance(child, Message):
                stack.append((child, child_alt, depth + 1))
        return

    disposition = _disposition(part)
    filename = _raw_filename(part)
    # A "multipart/*" without usable parts (broken boundary) arrives as one text blob;
    # show it as text instead of hiding it.
    body_type = "text/plain" if maintype == "multipart" else ctype
    is_body_candidate = body_type in ("text/plain", "text/html") and disposition != "attachment" and not filename

    if is_body_candidate and body_type == "text/plain":
        if not state.text_parts or not in_alternative:
            data = _payload_bytes(part, state.problems, where)
            state.text_parts.append(_normalize_newlines(_decode_text(data, _charset(part), state.problems, where)))
            return
    if is_body_candidate and body_type == "text/html" and state.html_raw is None:
        data = _payload_bytes(part, state.problems, where)
        charset = _charset(part)
        if charset is None:
            match = _META_CHARSET_RE.search(data[:4096])
            charset = match.group(1).decode("ascii") if match else None
        state.html_raw = _normalize_newlines(_decode_text(data, charset, state.problems, where))
        return

    data = _payload_bytes(part, state.problems, where)
    state.attachments.append((filename, ctype, data, _content_id(part), disposition))


def _build_attachments(state: _Walk, html_raw: str) -> list[ParsedAttachment]:
    html_lower = html_raw.lower()
    result: list[ParsedAttachment] = []
    for position, (name, ctype, data, cid, disposition) in enumerate(state.attachments):
        filename = _sanitize_filename(name) if name else ""
        if not filename:
            filename = f"anhang-{position + 1}{_extension_for(ctype)}"
        # "Inline" only when the HTML really references it: anything else must stay
        # visible in the attachment list so nothing is hidden from the user.
        is_inline = bool(cid) and disposition != "attachment" and f"cid:{cid.lower()}" in html_lower
        result.append(ParsedAttachment(position, filename, ctype, data, cid, is_inline))
    return result


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------

_KIM_DIENSTKENNUNG = "X-KIM-Dienstkennung"
_KIM_DECRYPTION = "X-KIM-DecryptionResult"
_KIM_INTEGRITY = "X-KIM-IntegrityCheckResult"
_KIM_ERROR = "X-KIM-Fehlermeldung"


_HEADER_LINE_RE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")


def _repair_header_block(raw: bytes) -> tuple[bytes, int]:
    """Re-indent header continuation lines that lost their leading whitespace.

    Seen in the wild (and in gematik's own FAQ sample of a CM integrity notice): a folded
    ``To:`` whose second line starts in column 0.  The stdlib would end the header block
    there and show X-KIM-IntegrityCheckResult etc. as body text, which would hide the
    security warning.  A line is only re-indented when real header fields follow it, so
    garbage without a header block is left alone for the defect report.
    """
    end = _HEADER_END_RE.search(raw)
    if end is None:
        return raw, 0
    lines = raw[: end.start()].splitlines(keepends=True)
    # header_follows[i]: some line after i is a proper "Name:" header field.
    header_follows = [False] * len(lines)
    seen = False
    for index in range(len(lines) - 1, -1, -1):
        header_follows[index] = seen
        seen = seen or bool(_HEADER_LINE_RE.match(lines[index]))
    repaired = 0
    for index in range(1, len(lines)):
        line = lines[index]
        if line[:1] in (b" ", b"\t") or _HEADER_LINE_RE.match(line) or line.startswith(b"From "):
            continue
        if header_follows[index]:
            lines[index] = b" " + line
            repaired += 1
    if not repaired:
        return raw, 0
    return b"".join(lines) + raw[end.start() :], repaired


def _best_effort_text(raw: bytes) -> str:
    try:
        return _normalize_newlines(_decode_8bit_fallback(bytes(raw))).replace("\x00", "\ufffd")
    except Exception:
        return ""


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one received mail. Never raises; defects end up in ``problems``."""
    try:
        return _parse(raw)
    except Exception as exc:  # contract: never raise, degrade to raw text
        return ParsedMessage(
            text_body=_best_effort_text(raw),
            problems=[f"Nachricht konnte nicht verarbeitet werden ({type(exc).__name__}); Rohtext wird angezeigt"],
            is_malformed=True,
        )


def _parse(raw: bytes) -> ParsedMessage:
    raw = bytes(raw or b"")
    problems = _Problems()
    if not raw.strip():
        problems.add("Leere Nachricht")
        return ParsedMessage(problems=problems.result(), is_malformed=True)

    raw_for_parser, repaired = _repair_header_block(raw)
    if repaired:
        problems.add("Kopfzeile ohne Einrückung fortgesetzt; als Fortsetzung der vorigen Kopfzeile gelesen")
    try:
        msg = BytesParser(policy=email.policy.default).parsebytes(raw_for_parser)
    except Exception as exc:  # header objects can raise while parsing
        problems.add(f"Nachricht nur eingeschränkt lesbar ({type(exc).__name__})")
        msg = BytesParser(policy=email.policy.compat32).parsebytes(raw_for_parser)

    header_rows: list[tuple[str, str, str]] = []
    for name, value in msg.raw_items():
        name_text = _recover_8bit(str(name))[0]
        header_rows.append((name_text, value, _decode_header_value(value, problems, name_text)))
    if not header_rows:
        problems.add("Keine Kopfzeilen gefunden")

    subject_row = _first(header_rows, "Subject")
    subject = " ".join(subject_row[1].split()) if subject_row else ""

    from_name = from_address = ""
    from_row = _first(header_rows, "From")
    if from_row:
        senders = _parse_addresses("From", from_row[0])
        if senders:
            from_name, from_address = senders[0]
            from_name = " ".join(from_name.split())
    if not from_address and header_rows:
        problems.add("Kein lesbarer Absender (From)", severe=False)

    recipients: dict[str, list[str]] = {}
    for hname in ("To", "Cc"):
        values: list[str] = []
        for name, raw_value, _decoded in header_rows:
            if name.lower() == hname.lower():
                values.extend(_format_address(n, a) for n, a in _parse_addresses(hname, raw_value))
        recipients[hname] = [v for v in values if v]

    date_row = _first(header_rows, "Date")
    date = _parse_date(date_row[1], problems) if date_row else None

    def single(name: str) -> str:
        row = _first(header_rows, name)
        return " ".join(row[1].split()) if row else ""

    dienstkennungen = _all_values(header_rows, _KIM_DIENSTKENNUNG)

    linesep = "\r\n" if b"\r\n" in raw[:65536] else "\n"
    state = _Walk(linesep=linesep, problems=problems)
    _walk(msg, state)

    html_raw = state.html_raw or ""
    if len(state.text_parts) == 1:
        text_body = state.text_parts[0]
    else:
        # Several inline text parts (e.g. text around an inline image): show them all.
        text_body = "\n\n".join(part.strip("\n") for part in state.text_parts)
    html_body = sanitize_html(html_raw)
    if not state.text_parts and html_body:
        # Render the *sanitized* HTML so text hidden by the sanitizer (script, style,
        # form content) does not reappear in the plain-text view.
        text_body = _html_to_text(html_body)

    return ParsedMessage(
        from_address=from_address,
        from_name=from_name,
        to=recipients["To"],
        cc=recipients["Cc"],
        subject=subject,
        date=date,
        message_id=single("Message-ID"),
        in_reply_to=single("In-Reply-To"),
        references=single("References"),
        dienstkennung=dienstkennungen[0] if dienstkennungen else "",
        decryption_results=_all_values(header_rows, _KIM_DECRYPTION),
        integrity_results=_all_values(header_rows, _KIM_INTEGRITY),
        kim_error_codes=_all_values(header_rows, _KIM_ERROR),
        # NUL cannot be stored in PostgreSQL text columns; make it visible instead.
        text_body=text_body.replace("\x00", "\ufffd"),
        html_body=html_body,
        attachments=_build_attachments(state, html_raw),
        headers=[(name, decoded) for name, _raw, decoded in header_rows],
        problems=problems.result(),
        is_malformed=problems.severe,
    )
