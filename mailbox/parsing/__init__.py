"""Pure parser for KIM mail received from the Clientmodul over POP3.

No Django models and no I/O: bytes in, a frozen ``ParsedMessage`` out.  Mail from the
CM is partly produced by third-party software (sending Primärsysteme, CM error notices,
DSNs from the Fachdienst), so every step assumes hostile or broken input and degrades
to "show what we can and record a problem" instead of raising.

This module is the entry point (``parse_message`` and its result types); the steps live beside it:
``problems`` (what went wrong, kept untranslated: kimportal.texts), ``charsets``, ``headers`` (addresses,
dates, X-KIM-*), ``parts`` (one part's metadata and payload), ``walk`` (the MIME tree), ``filenames``,
``sanitize`` (the HTML sanitizer, a security boundary), ``html_text`` and ``policy`` (policy.default,
each header object built once per parse).
"""

from __future__ import annotations

import contextlib
import email.policy
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import Policy
from typing import BinaryIO

from kimportal.texts import N_, StoredText
from mailbox.parsing.charsets import decode_8bit_fallback, normalize_newlines
from mailbox.parsing.filenames import extension_for, sanitize_filename
from mailbox.parsing.headers import HeaderFields, header_fields, repair_header_block, top_level_headers
from mailbox.parsing.html_text import html_to_text
from mailbox.parsing.large import SpilledPayload, SpillSink, TooIrregular, skeleton_from_file
from mailbox.parsing.policy import parse_policy
from mailbox.parsing.problems import Problems
from mailbox.parsing.sanitize import html_too_deep, sanitize_html
from mailbox.parsing.walk import Walk, walk

__all__ = [
    "ParsedAttachment",
    "ParsedMessage",
    "SpillSink",
    "SpilledPayload",
    "parse_message",
    "parse_message_file",
    "sanitize_html",
]


@dataclass(frozen=True)
class ParsedAttachment:
    position: int
    filename: str
    content_type: str
    # Bytes, or for a large part of a large mail its decoded payload already on its way to disk.
    payload: bytes | SpilledPayload
    content_id: str
    is_inline: bool

    @property
    def size(self) -> int:
        return self.payload.size if isinstance(self.payload, SpilledPayload) else len(self.payload)


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
    # Kept untranslated (kimportal.texts): the message is read later, in the reader's language.
    problems: list[StoredText] = field(default_factory=list)
    is_malformed: bool = False

    @property
    def problem_texts(self) -> list[str]:
        """The problems in the active language."""
        return [str(problem) for problem in self.problems]


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one received mail. Never raises; defects end up in ``problems``."""
    try:
        return _parse(raw)
    except Exception as exc:  # contract: never raise, degrade to raw text
        return _unparsed(raw, exc)


def parse_message_file(fh: BinaryIO, *, spill: Callable[[], SpillSink]) -> ParsedMessage:
    """Parse a large mail from a file: large part payloads go to sinks from *spill*, never into memory.

    Never raises for the mail's content (only for I/O errors of *fh* or the sinks); a mail whose
    structure cannot be followed within the limits keeps its headers and is flagged.
    """
    try:
        skeleton = skeleton_from_file(fh, spill)
    except TooIrregular:
        fh.seek(0)
        return _headers_only(fh.read(1024 * 1024))
    try:
        parsed = _parse(skeleton.data, spills=skeleton.spills)
    except Exception as exc:  # contract: never raise, degrade to the headers
        parsed = _unparsed(skeleton.data, exc)
    if skeleton.problems:
        parsed = replace(parsed, problems=[*parsed.problems, *skeleton.problems], is_malformed=True)
    return parsed


_HEADERS_ONLY = N_(
    "Sehr große Nachricht mit ungewöhnlichem Aufbau; nur die Kopfzeilen wurden gelesen, "
    "die Rohnachricht ist vollständig gespeichert"
)


def _headers_only(head: bytes) -> ParsedMessage:
    problems = Problems()
    problems.add(_HEADERS_ONLY)
    fields = HeaderFields()
    with contextlib.suppress(Exception):
        fields = header_fields(top_level_headers(_repaired(head, Problems())), problems)
    return ParsedMessage(**fields.as_kwargs(), problems=problems.result(), is_malformed=True)


_HTML_TOO_DEEP = N_(
    "Der HTML-Text ist zu tief verschachtelt und wird nur als einfacher Text angezeigt; "
    "die Rohnachricht ist vollständig gespeichert"
)
_TAG_OR_SPACE_RE = re.compile(r"<[^>]*>|\s+")
_SPACE_RE = re.compile(r"\s+")


def _tags_stripped(html_raw: str) -> str:
    """Text of HTML too deep for the sanitizer: tags removed in one linear pass (no tree is built)."""
    # No tag ends after the last ">": looking for one's end from every "<" there would scan to the end each time.
    end = html_raw.rfind(">") + 1
    text = _TAG_OR_SPACE_RE.sub(" ", html_raw[:end]) + _SPACE_RE.sub(" ", html_raw[end:])
    return html.unescape(text).strip()


def _parse(raw: bytes, spills: dict[str, SpilledPayload] | None = None) -> ParsedMessage:
    raw = bytes(raw or b"")
    problems = Problems()
    if not raw.strip():
        problems.add(N_("Leere Nachricht"))
        return ParsedMessage(problems=problems.result(), is_malformed=True)

    raw_for_parser = _repaired(raw, problems)
    msg: Message
    try:
        msg = parse_bytes(raw_for_parser, parse_policy())
    except Exception as exc:  # header objects can raise while parsing
        problems.add(N_("Nachricht nur eingeschränkt lesbar (%(error)s)") % {"error": type(exc).__name__})
        msg = BytesParser(policy=email.policy.compat32).parsebytes(raw_for_parser)

    fields = header_fields(msg.raw_items(), problems)

    linesep = "\r\n" if b"\r\n" in raw[:65536] else "\n"
    state = Walk(linesep=linesep, problems=problems, spills=spills or {})
    walk(msg, state)

    html_raw = state.html_raw or ""
    if len(state.text_parts) == 1:
        text_body = state.text_parts[0]
    else:
        # Several inline text parts (e.g. text around an inline image): show them all.
        text_body = "\n\n".join(part.strip("\n") for part in state.text_parts)
    too_deep = html_too_deep(html_raw)
    html_body = "" if too_deep else sanitize_html(html_raw, depth_checked=True)
    if too_deep:
        problems.add(_HTML_TOO_DEEP)
    if not state.text_parts and html_body:
        # Render the *sanitized* HTML so text hidden by the sanitizer (script, style,
        # form content) does not reappear in the plain-text view.
        text_body = html_to_text(html_body)
    elif not state.text_parts and too_deep:
        text_body = _tags_stripped(html_raw)

    return ParsedMessage(
        **fields.as_kwargs(),
        # NUL cannot be stored in PostgreSQL text columns; make it visible instead.
        text_body=text_body.replace("\x00", "\ufffd"),
        html_body=html_body,
        attachments=_build_attachments(state, html_body),
        problems=problems.result(),
        is_malformed=problems.severe,
    )


# Base64 bodies without the stdlib's line-by-line walk.  The feed parser reads a mail line by line, and
# what it does with a line depends on its class only: a header line (a name and a colon, or a leading
# blank), a blank line, a boundary (starting with "--"), or "From " on the first line; every other line
# is content of whatever it is collecting (a body, a preamble, an epilogue; in a header block it
# ends the block and is the body's first line).  A non-empty line of only base64 characters is none of
# the former, nor is a line holding a token of characters that ASCII with surrogateescape cannot
# produce.  So a run of base64 lines is replaced by one token line before parsing, and the token by
# the run in the payloads, preambles and epilogues afterwards: the same tree, without the per-line
# cost for the attachment that is most of a mail.
_B64_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_RUN_MIN = 2048  # shorter runs are not worth a token
_TOKEN_RE = re.compile("\ue000([0-9]+)\ue001")


def parse_bytes(raw: bytes, policy: Policy) -> Message:
    """``BytesParser(policy=policy).parsebytes(raw)``, with long base64 runs kept out of the line-by-line walk."""
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser does
    runs: list[str] = []
    pieces: list[str] = []
    last = 0
    blank = raw.find(b"\r\n\r\n")
    while blank >= 0:
        start = blank + 4
        following = raw.find(b"\r\n\r\n", start)
        first_end = raw.find(b"\r\n", start, start + 1000)
        if first_end - start >= 40 and not raw[start:first_end].translate(None, _B64_CHARS):
            # A run ends before the next blank line or line starting with "-" (each byte is looked at a few times).
            dash = raw.find(b"\r\n-", start, len(raw) if following < 0 else following)
            end = dash if dash >= 0 else following
            if end - start >= _RUN_MIN and _is_base64_run(raw[start:end]):
                pieces += [text[last:start], f"\ue000{len(runs)}\ue001"]
                runs.append(text[start:end])
                last = end
        blank = following
    if not runs:
        return Parser(policy=policy).parsestr(text)
    pieces.append(text[last:])
    message = Parser(policy=policy).parsestr("".join(pieces))
    if _restore(message, runs) != len(runs):  # cannot happen; never lose a run over it
        return Parser(policy=policy).parsestr(text)
    return message


def _is_base64_run(segment: bytes) -> bool:
    """Whole non-empty lines of base64 characters, joined by CRLF (the segment stops before the last CRLF)."""
    if not segment or segment[:1] in (b"\r", b"\n"):
        return False
    rest = segment.translate(None, _B64_CHARS)
    return rest == b"\r\n" * (len(rest) // 2)


def _restore(message: Message, runs: list[str]) -> int:
    """Put the runs back in place of their tokens; how many tokens were replaced."""
    replaced = 0

    def run(match: re.Match[str]) -> str:
        nonlocal replaced
        replaced += 1
        return runs[int(match.group(1))]

    stack = [message]
    while stack:  # no recursion: hostile nesting
        part = stack.pop()
        payload = part._payload  # type: ignore[attr-defined]  # get_payload() would decode
        if isinstance(payload, list):
            stack.extend(sub for sub in payload if isinstance(sub, Message))
        elif isinstance(payload, str) and "\ue000" in payload:
            part._payload = _TOKEN_RE.sub(run, payload)  # type: ignore[attr-defined]
        for name in ("preamble", "epilogue"):
            value = getattr(part, name, None)
            if isinstance(value, str) and "\ue000" in value:
                setattr(part, name, _TOKEN_RE.sub(run, value))
    return replaced


def _unparsed(raw: bytes, exc: Exception) -> ParsedMessage:
    """The full parse failed: the raw text is the body, and the top-level header block still counts.

    Without sender and subject such a message would be listed as "(ohne Betreff)" and could be
    neither found nor triaged; the header block parses on its own, the body is not looked at again.
    """
    problems = Problems()
    text = N_("Nachricht konnte nicht verarbeitet werden (%(error)s); Rohtext wird angezeigt")
    problems.add(text % {"error": type(exc).__name__})
    fields = HeaderFields()
    with contextlib.suppress(Exception):  # the header fallback must never cost the raw text
        header_problems = Problems()
        data = _repaired(bytes(raw or b""), header_problems)
        fields = header_fields(top_level_headers(data), header_problems)
        for text in header_problems.result():
            problems.add(text)
    return ParsedMessage(
        **fields.as_kwargs(),
        text_body=_best_effort_text(raw),
        problems=problems.result(),
        is_malformed=True,
    )


def _repaired(raw: bytes, problems: Problems) -> bytes:
    repaired_raw, repaired = repair_header_block(raw)
    if repaired:
        problems.add(N_("Kopfzeile ohne Einrückung fortgesetzt; als Fortsetzung der vorigen Kopfzeile gelesen"))
    return repaired_raw


def _build_attachments(state: Walk, html_body: str) -> list[ParsedAttachment]:
    named: set[str] | None = None  # read only when a part has a Content-ID (most mail has none)
    result: list[ParsedAttachment] = []
    embedded: set[str] = set()  # the names (cid) shown so far, and their bytes
    embedded_bytes = 0
    for position, (name, ctype, data, cid, disposition) in enumerate(state.attachments):
        filename = sanitize_filename(name) if name else ""
        if not filename:
            filename = f"anhang-{position + 1}{extension_for(ctype)}"
        # "Inline" (left out of the attachment list) only when the message view shows it in the HTML: an image of a
        # type and size it embeds, named by an image of the sanitized body, within the total of all embedded images
        # (embedded_images: the view decides by the same rule). Anything else stays in the list, so nothing is
        # hidden from the user: a PDF or an oversized image the HTML names by cid:, a name only a link or a comment
        # mentions, a sender's images beyond the total, a second part under a name already shown. A part marked
        # "attachment" is listed even when shown.
        is_inline = False
        size = _payload_size(data)
        if cid and inline_shown(ctype, size):
            named = cids_shown(html_body) if named is None else named
            key = cid_key(cid)
            # A name given to several parts: the view shows the first; the others are listed.
            if key in named and key not in embedded and embedded_bytes + size <= MAX_INLINE_TOTAL_BYTES:
                embedded.add(key)
                embedded_bytes += size
                is_inline = disposition != "attachment"
        result.append(ParsedAttachment(position, filename, ctype, data, cid, is_inline))
    return result


# What the message view embeds in a message's HTML where it names a part by cid: (mailbox.services.rendering).
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
MAX_INLINE_IMAGE_BYTES = 5 * 1024 * 1024
# All of a message's embedded images together: the view reads them and sends them base64-encoded in one document, on
# every view. A hostile sender's hundred 5 MB images would otherwise cost a web process gigabytes per view.
MAX_INLINE_TOTAL_BYTES = 10 * 1024 * 1024


def inline_shown(content_type: str, size: int) -> bool:
    return content_type in INLINE_IMAGE_TYPES and size <= MAX_INLINE_IMAGE_BYTES


# An image of the sanitized body that names a part: <img src="cid:…"> (sanitize.py keeps cid: sources only there).
CID_SRC = re.compile(r'src="cid:([^"]+)"', re.IGNORECASE)


def cid_key(content_id: str) -> str:
    """A Content-ID as the body's cid: references name it: without angle brackets, case-insensitive."""
    return content_id.strip().strip("<>").lower()


def cids_shown(html_body: str) -> set[str]:
    """The parts the sanitized body shows as images, by cid_key."""
    return {cid_key(html.unescape(cid)) for cid in CID_SRC.findall(html_body)}


def _payload_size(data: bytes | SpilledPayload) -> int:
    return data.size if isinstance(data, SpilledPayload) else len(data)


def _best_effort_text(raw: bytes) -> str:
    try:
        return normalize_newlines(decode_8bit_fallback(bytes(raw))).replace("\x00", "\ufffd")
    except Exception:
        return ""
