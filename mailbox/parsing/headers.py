"""Header fields: RFC 2047 words, undeclared 8-bit, addresses, dates and the KIM headers.

``header_fields`` turns the top-level header block into what the portal stores (sender,
recipients, subject, date, ids, X-KIM-*).  Every decoder here is lenient: a header never breaks
parsing, it is shown as well as it can be and noted in ``Problems`` when that matters.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import email.errors
import email.policy
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import TypedDict

from kimportal.texts import N_
from mailbox.parsing.charsets import decode_8bit_fallback, lookup_codec, recover_8bit
from mailbox.parsing.problems import Problems

_FOLD_RE = re.compile(r"\r?\n[ \t]*|\r")
# Control characters, and the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069):
# a sender's name ending in U+202E would show the address after it reversed ("<ed.live@...>").
_CTRL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
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
    codec = lookup_codec(charset.lower())
    if codec is not None:
        with contextlib.suppress(UnicodeDecodeError, LookupError):
            return data.decode(codec)
    return decode_8bit_fallback(data)


def _decode_words_lenient(value: str) -> str:
    """Own RFC 2047 decoder for what make_header() refuses (unknown charsets, raw 8-bit mixed in)."""
    value = _BETWEEN_EW_RE.sub(r"\1", value)
    return _ENCODED_WORD_RE.sub(_decode_encoded_word, value)


_STDLIB_DECODE_LIMIT = 8 * 1024
# policy.default's address parser costs ~0.2 ms per address; a To: with 100 000 entries
# would take half a minute.  Beyond this size the simpler getaddresses() is used.  The parser is also
# quadratic in the value's length on hostile shapes: 32 KB of "(a)" took 24 seconds, 8 KB one.
ADDRESS_PARSER_LIMIT = 8 * 1024


def decode_header_value(raw: str, problems: Problems | None = None, name: str = "") -> str:
    """Raw header value (possibly folded, 8-bit, RFC 2047) → display text on one line."""
    try:
        value, had_8bit = recover_8bit(raw)
        if had_8bit and problems is not None:
            # Decodable, so informational only; the text shown is still correct.
            text = N_("Kopfzeile „%(name)s“ enthält nicht deklarierte 8-Bit-Zeichen")
            problems.add(text % {"name": name}, severe=False)
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


# The CM's result headers are read as written, not decoded: a CM writes a bare ID ("00", "08",
# "X99"), so an RFC 2047 word or any other dressing is not the CM's and must not become "00".
_RESULT_VALUE_LIMIT = 200
_RESULT_COUNT_LIMIT = 20


def _result_values(headers: list[tuple[str, str, str]], name: str) -> list[str]:
    """Every X-KIM result header called *name* (any case), raw and unfolded, empty values included.

    Kept whole so the rule in docs/security-headers.md can see every copy: a second one, or one
    no CM would write, makes the state "unclear" instead of "secure".
    """
    lname = name.lower()
    values = [
        _CTRL_RE.sub(" ", _unfold(recover_8bit(raw)[0]))[:_RESULT_VALUE_LIMIT]
        for hname, raw, _decoded in headers
        if hname.strip().lower() == lname
    ]
    return values[:_RESULT_COUNT_LIMIT]


_NEEDS_QUOTES_RE = re.compile(r'[,;:<>@"()\[\]\\]')


def _format_address(name: str, addr: str) -> str:
    name = " ".join(name.split())
    if not name:
        return addr
    if _NEEDS_QUOTES_RE.search(name):
        # Keep the display string re-parseable by getaddresses() (e.g. "Müller, Hans").
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{addr}>" if addr else name


# The plain shapes nearly all mail has: "addr", "<addr>", "Name Name <addr>" (dot-atoms, names of
# atoms and dots), comma-separated. For them the result of policy.default's parser is known without
# running it (~0.1 ms per address); anything else (quotes, comments, encoded words, groups, 8-bit,
# routes, literals, a name ending in a dot right before "<", which the stdlib cannot parse) goes to
# that parser. tests/mailbox/test_parsing_addresses.py holds the two
# to the same answer.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_ADDR_SPEC = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_PLAIN_MAILBOX_RE = re.compile(
    rf"[ \t]*(?:(?P<name>{_DOT_ATOM}\.?(?:[ \t]+{_DOT_ATOM}\.?)*)(?:[ \t]+|(?<!\.))<(?P<angled>{_ADDR_SPEC})>"
    rf"|<(?P<bare_angled>{_ADDR_SPEC})>|(?P<bare>{_ADDR_SPEC}))[ \t]*"
)


def plain_addresses(value: str) -> list[tuple[str, str]] | None:
    """The addresses of an unfolded header value made only of plain shapes, or None for any other value."""
    if "=?" in value:
        return None  # an encoded word is made of atom characters too
    result = []
    for element in value.split(","):
        if not element.strip(" \t"):
            continue
        match = _PLAIN_MAILBOX_RE.fullmatch(element)
        if match is None:
            return None
        name, angled, bare_angled, bare = match.groups()
        if angled is not None:
            result.append((" ".join(name.split()), angled))
        else:
            result.append(("", bare_angled or bare))
    return result or None


def parse_addresses(name: str, raw: str, *, linear: bool = False) -> list[tuple[str, str]]:
    """Address header → [(display name, addr-spec)], decoding RFC 2047 names; no control characters.

    `linear`: never policy.default's parser (the caller's budget for it is spent)."""
    # A raw 8-bit address can carry a bidi override as well as a name can.
    return [(_CTRL_RE.sub(" ", disp), _CTRL_RE.sub(" ", addr).strip()) for disp, addr in _addresses(name, raw, linear)]


def _addresses(name: str, raw: str, linear: bool = False) -> list[tuple[str, str]]:
    value, _ = recover_8bit(raw)
    value = _unfold(value)
    if not value:
        return []
    plain = plain_addresses(value) if value.isascii() else None
    if plain is not None:
        return plain
    if len(value) <= ADDRESS_PARSER_LIMIT and not linear:
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
                pairs.append((decode_header_value(disp), addr))
    if any("@" in addr for _n, addr in pairs):
        return pairs
    # Nothing recognisable: show the text as it is rather than hiding the recipient.
    return [("", decode_header_value(value))]


def parse_date(value: str, problems: Problems) -> datetime | None:
    if not value.strip():
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        problems.add(N_("Datum nicht lesbar: „%(value)s“") % {"value": value.strip()[:80]}, severe=False)
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
        in_range = 1900 <= parsed.year <= 2200
    except OverflowError:
        in_range = False
    # A sender controls this header; a year the database cannot hold ("31 Dec 9999 -1200" is year
    # 10000 in UTC) would break every list showing the message.
    if not in_range:
        text = N_("Datum außerhalb des gültigen Bereichs: „%(value)s“")
        problems.add(text % {"value": value.strip()[:80]}, severe=False)
        return None
    return parsed


# --------------------------------------------------------------------------------------
# The top-level header block
# --------------------------------------------------------------------------------------

FROM_ADDRESS_LIMIT = 320  # Message.from_address; RFC 5321 allows 254 characters
SUBJECT_LIMIT = 10_000  # characters; real subjects have a few dozen, folded ones a few hundred

_KIM_DIENSTKENNUNG = "X-KIM-Dienstkennung"
_KIM_DECRYPTION = "X-KIM-DecryptionResult"
_KIM_INTEGRITY = "X-KIM-IntegrityCheckResult"
_KIM_ERROR = "X-KIM-Fehlermeldung"


@dataclass(frozen=True)
class HeaderFields:
    """What the portal reads from a message's top-level header block."""

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

    def as_kwargs(self) -> HeaderKwargs:
        # Shallow on purpose: dataclasses.asdict() would deep-copy a 100 000-entry To: list.
        return HeaderKwargs(
            from_address=self.from_address,
            from_name=self.from_name,
            to=self.to,
            cc=self.cc,
            subject=self.subject,
            date=self.date,
            message_id=self.message_id,
            in_reply_to=self.in_reply_to,
            references=self.references,
            dienstkennung=self.dienstkennung,
            decryption_results=self.decryption_results,
            integrity_results=self.integrity_results,
            kim_error_codes=self.kim_error_codes,
        )


class HeaderKwargs(TypedDict):
    """HeaderFields as keyword arguments (for ParsedMessage)."""

    from_address: str
    from_name: str
    to: list[str]
    cc: list[str]
    subject: str
    date: datetime | None
    message_id: str
    in_reply_to: str
    references: str
    dienstkennung: str
    decryption_results: list[str]
    integrity_results: list[str]
    kim_error_codes: list[str]


def header_fields(items: Iterable[tuple[str, str]], problems: Problems) -> HeaderFields:
    """(name, raw value) pairs of the top-level header block → the fields the portal stores."""
    header_rows: list[tuple[str, str, str]] = []
    for name, value in items:
        name_text = recover_8bit(str(name))[0]
        header_rows.append((name_text, value, decode_header_value(value, problems, name_text)))
    if not header_rows:
        problems.add(N_("Keine Kopfzeilen gefunden"))

    subject_row = _first(header_rows, "Subject")
    subject = " ".join(subject_row[1].split()) if subject_row else ""
    if len(subject) > SUBJECT_LIMIT:
        # Every list row and live update carries the subject: a 2 MB one made each inbox page megabytes.
        text = N_("Betreff mit %(length)s Zeichen gekürzt; vollständig im Quelltext")
        problems.add(text % {"length": len(subject)}, severe=False)
        subject = subject[:SUBJECT_LIMIT] + "…"

    from_name = from_address = ""
    from_row = _first(header_rows, "From")
    if from_row:
        senders = parse_addresses("From", from_row[0])
        if senders:
            from_name, from_address = senders[0]
            from_name = " ".join(from_name.split())
    if len(from_address) > FROM_ADDRESS_LIMIT:
        # Cut at the end, a padded local part ('"praxis@klinik.kim.telematik   …"@evil.de') would show
        # the padding's sender instead of the real domain; the end is what says where the mail is from.
        text = N_("Absenderadresse mit %(length)s Zeichen zu lang; nur ihr Ende wird angezeigt")
        problems.add(text % {"length": len(from_address)})
        from_address = "…" + from_address[-(FROM_ADDRESS_LIMIT - 1) :]
    if not from_address and header_rows:
        problems.add(N_("Kein lesbarer Absender (From)"), severe=False)

    recipients: dict[str, list[str]] = {}
    # policy.default's parser reads at most ADDRESS_PARSER_LIMIT characters of all To and Cc rows together: a mail
    # repeating rows just under the limit would pay its quadratic cost once per row.
    budget = ADDRESS_PARSER_LIMIT
    for hname in ("To", "Cc"):
        values: list[str] = []
        for name, raw_value, _decoded in header_rows:
            if name.lower() == hname.lower():
                linear = len(raw_value) > budget
                budget -= 0 if linear else len(raw_value)
                values.extend(_format_address(n, a) for n, a in parse_addresses(hname, raw_value, linear=linear))
        recipients[hname] = [v for v in values if v]

    date_row = _first(header_rows, "Date")
    date = parse_date(date_row[1], problems) if date_row else None

    def single(name: str) -> str:
        row = _first(header_rows, name)
        return " ".join(row[1].split()) if row else ""

    dienstkennungen = _all_values(header_rows, _KIM_DIENSTKENNUNG)
    return HeaderFields(
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
        decryption_results=_result_values(header_rows, _KIM_DECRYPTION),
        integrity_results=_result_values(header_rows, _KIM_INTEGRITY),
        kim_error_codes=_all_values(header_rows, _KIM_ERROR),
    )


_HEADER_LINE_RE = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")
# RFC 5322 §4.5.3 obs-optional: ``field-name *WSP ":"``. Readers must accept it (§4); the stdlib
# does not and ends the header block there. A CM reads "X-KIM-DecryptionResult : 00" as a result,
# so the portal must see it as one too (docs/security-headers.md).
_OBS_FIELD_NAME_RE = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]+:")
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")


def repair_header_block(raw: bytes) -> tuple[bytes, int]:
    """Read the header block as RFC 5322 does where the stdlib does not; returns (bytes, re-indented lines).

    Field names followed by whitespace before the colon (obsolete syntax, still to be accepted)
    lose that whitespace. Header continuation lines that lost their leading whitespace are
    re-indented: seen in the wild (and in gematik's own FAQ sample of a CM integrity notice), a
    folded ``To:`` whose second line starts in column 0. The stdlib would end the header block
    there and show X-KIM-IntegrityCheckResult etc. as body text, which would hide the security
    warning. A line is only re-indented when real header fields follow it, so garbage without a
    header block is left alone for the defect report. Only re-indenting is counted: it guesses,
    the obsolete syntax does not.
    """
    end = _HEADER_END_RE.search(raw)
    if end is None:
        return raw, 0
    lines = raw[: end.start()].splitlines(keepends=True)
    normalised = False
    for index, line in enumerate(lines):
        obs = _OBS_FIELD_NAME_RE.match(line)
        if obs is not None and not line.startswith(b"From "):
            lines[index] = obs.group(1) + b":" + line[obs.end() :]
            normalised = True
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
    if not repaired and not normalised:
        return raw, 0
    return b"".join(lines) + raw[end.start() :], repaired


def top_level_headers(raw: bytes) -> Iterator[tuple[str, str]]:
    """(name, raw value) pairs of the top-level header block, read without looking at the body.

    For mail whose body the full parse cannot handle (the stdlib parser recurses once per nested
    multipart): the header bytes alone, parsed with compat32, give plain strings and no MIME tree.
    """
    end = _HEADER_END_RE.search(raw)
    block = raw[: end.start()] if end else raw
    return BytesParser(policy=email.policy.compat32).parsebytes(block, headersonly=True).raw_items()
