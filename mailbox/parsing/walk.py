"""The MIME tree walk: picks the text and HTML bodies and collects everything else as attachments.

An explicit stack instead of recursion, so hostile nesting cannot exhaust the interpreter's
recursion limit here; one part that cannot be read is reported and kept as raw bytes, the others
are unaffected.  Embedded messages (message/rfc822, DSN blocks) become attachments as received.
"""

from __future__ import annotations

import contextlib
import email.policy
import re
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO

from kimportal.texts import N_, StoredText
from mailbox.parsing import parts
from mailbox.parsing.charsets import decode_text, normalize_newlines
from mailbox.parsing.headers import decode_header_value
from mailbox.parsing.large import SpilledPayload
from mailbox.parsing.policy import VALUE_LIMIT
from mailbox.parsing.problems import Problems

_MIME_HEADERS = {"content-type", "content-disposition", "content-transfer-encoding"}
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


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
            return " ".join(decode_header_value(raw).split())
    return ""


@dataclass
class Walk:
    """What the walk found: body candidates and raw attachments, in document order."""

    linesep: str
    problems: Problems
    text_parts: list[str] = field(default_factory=list)
    html_raw: str | None = None
    # (filename-or-None, content_type, payload, content_id, disposition)
    attachments: list[tuple[str | None, str, bytes | SpilledPayload, str, str]] = field(default_factory=list)
    # Large parts of a large mail, decoded to disk while the file was read (see parsing.large).
    spills: dict[str, SpilledPayload] = field(default_factory=dict)


def _spill_token(payload: object) -> str:
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], Message):
        payload = payload[0].get_payload()  # message/rfc822: the token reads as a header-less message
    return payload.strip() if isinstance(payload, str) and len(payload) < 200 else ""


def _take_spilled(part: Message, ctype: str, payload: object, where: StoredText, state: Walk) -> bool:
    """A part whose payload went to disk: listed as an attachment (a huge text body too, with a note)."""
    spilled = state.spills.get(_spill_token(payload))
    if spilled is None:
        return False
    disposition = parts.disposition(part)
    filename = parts.raw_filename(part)
    if ctype in ("message/rfc822", "message/global"):
        subject = spilled.embedded_subject
        filename = filename or (f"{subject[:200]}.eml" if subject else "weitergeleitete-nachricht.eml")
        ctype = "message/rfc822"
    elif ctype in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        megabytes = spilled.size / 1_000_000
        text = N_("Der Nachrichtentext ist sehr groß (%(megabytes)s MB) und liegt als Anhang vor (%(where)s)")
        state.problems.add(text % {"megabytes": f"{megabytes:.0f}", "where": where}, severe=False)
    state.attachments.append((filename, ctype, spilled, parts.content_id(part), disposition))
    return True


def walk(root: Message, state: Walk) -> None:
    # Explicit stack instead of Message.walk(): no recursion limit on hostile nesting.
    stack: list[tuple[Message, bool]] = [(root, False)]
    counter = 0
    while stack:
        part, in_alternative = stack.pop()
        counter += 1
        where = N_("Nachricht") if part is root else N_("Teil %(number)s") % {"number": counter}
        try:
            _handle_part(part, in_alternative, where, state, stack)
        except Exception as exc:  # one bad part must not lose the others
            text = N_("Teil konnte nicht gelesen werden (%(where)s: %(error)s)")
            state.problems.add(text % {"where": where, "error": type(exc).__name__})
            with contextlib.suppress(Exception):
                raw = part.get_payload()
                if isinstance(raw, str):
                    state.attachments.append(
                        (None, "application/octet-stream", raw.encode("utf-8", "surrogateescape"), "", "attachment")
                    )


def _handle_part(
    part: Message,
    in_alternative: bool,
    where: StoredText,
    state: Walk,
    stack: list[tuple[Message, bool]],
) -> None:
    for name, value in part.raw_items():
        if len(value) > VALUE_LIMIT and name.lower() in _MIME_HEADERS:
            text = N_("Kopfzeile „%(name)s“ zu lang (%(length)s Zeichen); nur ihr Anfang gelesen (%(where)s)")
            state.problems.add(text % {"name": name, "length": len(value), "where": where})
    ctype = parts.content_type(part)
    maintype = ctype.split("/", 1)[0]
    payload = part.get_payload()
    if state.spills and _take_spilled(part, ctype, payload, where, state):
        return
    state.problems.add_defects(part.defects, where)

    if ctype in ("message/rfc822", "message/global"):
        embedded = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(embedded, Message):
            data = _serialize(embedded, state.linesep)
            subject = _embedded_subject(embedded)
        else:
            data = parts.payload_bytes(part, state.problems, where)
            subject = ""
        explicit = parts.raw_filename(part)
        name = explicit or (f"{subject[:200]}.eml" if subject else "weitergeleitete-nachricht.eml")
        state.attachments.append((name, "message/rfc822", data, parts.content_id(part), parts.disposition(part)))
        return

    if isinstance(payload, list):
        if maintype == "message":
            # message/delivery-status and friends: header blocks, keep them as one text file.
            data = b"".join(_serialize(sub, state.linesep) for sub in payload if isinstance(sub, Message))
            state.attachments.append(
                (parts.raw_filename(part), ctype, data, parts.content_id(part), parts.disposition(part))
            )
            return
        child_alt = ctype == "multipart/alternative" or (in_alternative and maintype == "multipart")
        # Reverse so the stack pops children in document order.
        for child in reversed(payload):
            if isinstance(child, Message):
                stack.append((child, child_alt))
        return

    disposition = parts.disposition(part)
    filename = parts.raw_filename(part)
    # A "multipart/*" without usable parts (broken boundary) arrives as one text blob;
    # show it as text instead of hiding it.
    body_type = "text/plain" if maintype == "multipart" else ctype
    is_body_candidate = body_type in ("text/plain", "text/html") and disposition != "attachment" and not filename

    if is_body_candidate and body_type == "text/plain":
        if not state.text_parts or not in_alternative:
            data = parts.payload_bytes(part, state.problems, where)
            state.text_parts.append(normalize_newlines(decode_text(data, parts.charset(part), state.problems, where)))
            return
    if is_body_candidate and body_type == "text/html" and state.html_raw is None:
        data = parts.payload_bytes(part, state.problems, where)
        charset = parts.charset(part)
        if charset is None:
            match = _META_CHARSET_RE.search(data[:4096])
            charset = match.group(1).decode("ascii") if match else None
        state.html_raw = normalize_newlines(decode_text(data, charset, state.problems, where))
        return

    data = parts.payload_bytes(part, state.problems, where)
    state.attachments.append((filename, ctype, data, parts.content_id(part), disposition))
