"""Turning declared, mislabelled and undeclared charsets into text.

Used for bodies (``decode_text``) and for 8-bit bytes the stdlib smuggles through headers as
lone surrogates (``recover_8bit``).  Every fallback is documented and never raises.
"""

from __future__ import annotations

import codecs
import re

from kimportal.texts import N_, StoredText
from mailbox.parsing.problems import Problems

# Senders who declare latin-1 almost always mean windows-1252 (€, typographic quotes);
# browsers follow the same rule (WHATWG encoding spec).
_LATIN1_ALIASES = {"iso-8859-1", "iso8859-1", "latin-1", "latin1", "l1", "iso_8859-1", "iso-ir-100", "cp819"}
_ASCII_ALIASES = {"us-ascii", "ascii", "ansi_x3.4-1968", "iso646-us"}
# Pseudo charsets that carry no information; falling back silently is the right thing.
_NO_INFO_CHARSETS = {"unknown-8bit", "x-unknown", "unknown", "default", "x-user-defined"}


def decode_8bit_fallback(data: bytes) -> str:
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


def lookup_codec(charset: str) -> str | None:
    try:
        return codecs.lookup(charset).name
    except (LookupError, ValueError):
        return None


def decode_text(data: bytes, charset: str | None, problems: Problems, where: StoredText) -> str:
    """Decode a text body honouring the declared charset, with documented fallbacks."""
    label = (charset or "").strip().strip('"').lower()
    if not label or label in _NO_INFO_CHARSETS:
        if data.isascii():
            return data.decode("ascii")
        return decode_8bit_fallback(data)
    if label in _LATIN1_ALIASES:
        label = "cp1252"
    codec = lookup_codec(label)
    if codec is None:
        text = N_("Unbekannter Zeichensatz „%(charset)s“ (%(where)s); als UTF-8/Windows-1252 gelesen")
        problems.add(text % {"charset": label[:40], "where": where})
        return decode_8bit_fallback(data)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    except LookupError:
        # Codecs that exist but cannot decode bytes (e.g. "rot13") end up here.
        text = N_("Zeichensatz „%(charset)s“ nicht verwendbar (%(where)s); als UTF-8/Windows-1252 gelesen")
        problems.add(text % {"charset": label[:40], "where": where})
        return decode_8bit_fallback(data)
    if codec == "cp1252":
        return data.decode("latin-1")
    if label in _ASCII_ALIASES or codec == "ascii":
        # "us-ascii" with 8-bit content is a very common mislabel; not worth a warning.
        return decode_8bit_fallback(data)
    text = N_("Text passt nicht zum angegebenen Zeichensatz „%(charset)s“ (%(where)s)")
    problems.add(text % {"charset": label[:40], "where": where})
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(codec, errors="replace")


_SURROGATE_RE = re.compile("[\udc80-\udcff]")


def has_surrogates(value: str) -> bool:
    # The bytes parser smuggles undeclared 8-bit header bytes as lone surrogates.
    return not value.isascii() and _SURROGATE_RE.search(value) is not None


def recover_8bit(value: str) -> tuple[str, bool]:
    """Turn surrogate-escaped 8-bit header bytes back into text (UTF-8, else cp1252)."""
    if not has_surrogates(value):
        return value, False
    data = value.encode("utf-8", "surrogateescape")
    return decode_8bit_fallback(data), True


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")
