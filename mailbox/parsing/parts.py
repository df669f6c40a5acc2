"""Metadata and payload of one MIME part.

``policy.default`` header objects are tried first (they decode RFC 2231/2047 parameters); when
they raise on a broken header, a compat32 copy of the part's headers answers instead.  The
payload is decoded per Content-Transfer-Encoding, and base64 defects are reported.
"""

from __future__ import annotations

import contextlib
import email.policy
import re
from email.message import Message

from kimportal.texts import N_, StoredText
from mailbox.parsing.charsets import decode_8bit_fallback, has_surrogates, lookup_codec, recover_8bit
from mailbox.parsing.headers import decode_header_value
from mailbox.parsing.problems import Problems


def _shadow(part: Message, *, recover: bool = False) -> Message:
    """A compat32 copy of the part's headers: plain strings, never raises on access.

    `recover`: undeclared 8-bit bytes become text (UTF-8, else cp1252) instead of U+FFFD."""
    shadow = Message(policy=email.policy.compat32)
    for name, value in part.raw_items():
        shadow[name] = recover_8bit(str(value))[0] if recover else value
    return shadow


def content_type(part: Message) -> str:
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
    """Parameter value via compat32: RFC 2231 collapsed, RFC 2047 left for us to decode, raw 8-bit as text."""
    try:
        value = _shadow(part, recover=True).get_param(param, header=header)
    except Exception:
        return None
    if value is None:
        return None
    if isinstance(value, tuple):
        charset, _lang, text = value
        data = text.encode("latin-1", "surrogateescape") if isinstance(text, str) else text
        codec = lookup_codec((charset or "").lower()) if charset else None
        if codec is not None:
            with contextlib.suppress(UnicodeDecodeError, LookupError):
                return data.decode(codec)
        return decode_8bit_fallback(data)
    return str(value)


def _may_name(part: Message) -> bool:
    """Whether a Content-Disposition or Content-Type could hold a file name at all.

    compat32 reads a parameter by its name, which no decoding produces: a header without the letters
    "name" (any case) has neither filename= nor name=, and the compat32 copies are not worth making.
    """
    return any(
        key.lower() in ("content-disposition", "content-type") and "name" in str(value).lower()
        for key, value in part.raw_items()
    )


def raw_filename(part: Message) -> str | None:
    """The file name the sender gave, decoded but not yet made safe (see filenames.py)."""
    name: str | None = None
    with contextlib.suppress(Exception):
        name = part.get_filename()
    if name is None and not _may_name(part):
        return None
    if name is None or has_surrogates(name) or "=?" in name or "\ufffd" in name:
        alt = _raw_param(part, "filename", "content-disposition") or _raw_param(part, "name", "content-type")
        if alt is not None:
            name = alt
    if name is None:
        return None
    return decode_header_value(name)


def disposition(part: Message) -> str:
    try:
        value = part.get_content_disposition()
    except Exception:
        try:
            value = _shadow(part).get_content_disposition()
        except Exception:
            value = None
    return (value or "").strip().lower()


def charset(part: Message) -> str | None:
    try:
        value = part.get_content_charset()
    except Exception:
        value = _raw_param(part, "charset", "content-type")
    if value is None:
        return None
    recovered, _ = recover_8bit(str(value))
    return recovered.lower()


def content_id(part: Message) -> str:
    for name, raw in part.raw_items():
        if name.lower() == "content-id":
            value = decode_header_value(raw).strip()
            return value[1:-1].strip() if value.startswith("<") and value.endswith(">") else value
    return ""


_KNOWN_CTE = {"7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode", "x-uue", "uue"}


def _check_cte(part: Message, problems: Problems, where: StoredText) -> None:
    for name, raw in part.raw_items():
        if name.lower() == "content-transfer-encoding":
            cte = decode_header_value(raw).strip().lower()
            if cte and cte not in _KNOWN_CTE:
                text = N_("Unbekannte Transferkodierung „%(encoding)s“ (%(where)s); Inhalt ungeprüft übernommen")
                problems.add(text % {"encoding": cte[:40], "where": where})
            return


def payload_bytes(part: Message, problems: Problems, where: StoredText) -> bytes:
    _check_cte(part, problems, where)
    known_defects = len(part.defects)
    try:
        decoded = part.get_payload(decode=True)
    except Exception:
        problems.add(N_("Inhalt nicht dekodierbar (%(where)s)") % {"where": where})
        decoded = None
    # Decoding gives bytes, or None for a multipart (then the raw payload is used, as below).
    if isinstance(decoded, bytes):
        data = decoded
    else:
        raw = part.get_payload()
        if isinstance(raw, str):
            data = raw.encode("utf-8", "surrogateescape")
        else:
            data = b""
    # get_payload(decode=True) records base64 defects on the part only now.
    problems.add_defects(part.defects[known_defects:], where)
    return data
