"""Byte-level header edits and the mails a Clientmodul generates itself.

Delivered mail must stay byte-identical apart from what a real CM changes, so headers are edited on
the raw bytes (prepend, remove) instead of re-serialising through the ``email`` package. The mails
the CM writes itself (integrity notice, recipients-removed report) are assembled from parts.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from email.header import Header, decode_header, make_header
from email.message import MIMEPart
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

DEFAULT_DIENSTKENNUNG = "KIM-Mail;Default;V1.0"
CM_HOSTNAME = "cm.tisim.invalid"
CM_FROM = f'"KIM-Clientmodul" <clientmodul@{CM_HOSTNAME}>'

INTEGRITY_TEXT = (
    "Beim Empfang dieser KIM-Nachricht wurde eine Sicherheitsverletzung erkannt. Dies kann eine technisches "
    "Ursache haben oder auf eine missbräuchliche Nutzung des KIM-Dienstes hinweisen. Zu Ihrem Schutz wurde der "
    "Inhalt dieser Nachricht durch diesen Text ausgetauscht. Bitte kontaktieren Sie den Absender und/oder Ihren "
    "Administrator. Die entschlüsselte Nachricht wurde in diese Fehlernachricht eingebettet und kann, abhängig vom "
    "verwendeten E-Mail-Client, in eigener Verantwortung eingesehen bzw. verarbeitet werden."
)
INTEGRITY_DETAIL = "[Integritätsprüfung] [ID 08] Die Nachricht wurde nach der Verschlüsselung manipuliert."
PARTIAL_SEND_TEXT = (
    "Die Nachricht wurde nur an einen Teil der gewünschten Adressaten versendet, denn es konnten nicht für alle "
    "Empfänger gültige Verschlüsselungszertifikate ermittelt werden."
)

CRLF = b"\r\n"
_FIELD_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")


# --- raw header access ------------------------------------------------------------------------


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """(header block incl. its last CRLF, body) of a CRLF message; the blank line belongs to neither."""
    if raw.startswith(CRLF):
        return b"", raw[2:]
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return raw, b""
    return raw[: end + 2], raw[end + 4 :]


def header_fields(head: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, raw field incl. folded continuation lines and CRLF) in order."""
    fields: list[tuple[str, bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + line)
            continue
        match = _FIELD_NAME_RE.match(line)
        fields.append((match.group(1).decode("ascii").lower() if match else "", line))
    return fields


def get_header(raw: bytes, name: str) -> str | None:
    """First value of ``name``, unfolded, RFC 2047 words left encoded."""
    head, _ = split_head(raw)
    for field_name, field in header_fields(head):
        if field_name == name.lower():
            value = field.split(b":", 1)[1]
            return re.sub(rb"\r\n[ \t]", b" ", value).decode("utf-8", "replace").strip()
    return None


def remove_headers(raw: bytes, name: str) -> bytes:
    head, body = split_head(raw)
    kept = b"".join(field for field_name, field in header_fields(head) if field_name != name.lower())
    return kept + CRLF + body


def prepend_headers(raw: bytes, lines: list[str]) -> bytes:
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8") + raw


def decoded(value: str | None) -> str:
    if not value:
        return ""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value


def encode_header_value(value: str) -> str:
    return value if value.isascii() else Header(value, "utf-8").encode(linesep="\r\n")


# --- headers the CM adds on delivery -----------------------------------------------------------


@dataclass(frozen=True)
class Envelope:
    sender: str
    helo: str
    peer: str
    arrived: dt.datetime


def received_line(envelope: Envelope, recipient: str, *, hostname: str = CM_HOSTNAME) -> str:
    smtp_id = secrets.token_hex(6).upper()
    return (
        f"Received: from {envelope.helo} ([{envelope.peer}])\r\n"
        f"\tby {hostname} (KIM-Clientmodul-Simulator) with ESMTPSA id {smtp_id}\r\n"
        f"\tfor <{recipient}>; {format_datetime(envelope.arrived)}"
    )


def delivered_copy(raw: bytes, envelope: Envelope, recipient: str, *, with_results: bool = True) -> bytes:
    """What the receiving CM hands to the client: transport and result headers prepended."""
    lines = [f"Return-Path: <{envelope.sender}>", received_line(envelope, recipient)]
    if with_results:
        lines += ["X-KIM-DecryptionResult: 00", "X-KIM-IntegrityCheckResult: 01"]
    if get_header(raw, "X-KIM-Dienstkennung") is None:
        lines.append(f"X-KIM-Dienstkennung: {DEFAULT_DIENSTKENNUNG}")
    return prepend_headers(raw, lines)


# --- mails the CM writes itself ----------------------------------------------------------------


def _text_part(text: str) -> bytes:
    part = MIMEPart(policy=SMTP)
    part.set_content(text, charset="utf-8", cte="quoted-printable")
    return part.as_bytes(policy=SMTP)


def _boundary() -> str:
    return f"=_tisim_{secrets.token_hex(12)}"


def _multipart(headers: list[str], boundary: str, parts: list[bytes]) -> bytes:
    out = [prepend_headers(b"", headers), CRLF, b"This is a multi-part message in MIME format.\r\n"]
    for part in parts:
        # The CRLF before a delimiter belongs to the delimiter, so a part's own final CRLF survives.
        out += [b"\r\n--", boundary.encode("ascii"), CRLF, part]
    out += [b"\r\n--", boundary.encode("ascii"), b"--\r\n"]
    return b"".join(out)


def _rfc822_part(raw: bytes) -> bytes:
    # RFC 2046 §5.2.1: message/rfc822 may only be 7bit, 8bit or binary.
    cte = "" if raw.isascii() else "Content-Transfer-Encoding: 8bit\r\n"
    return f"Content-Type: message/rfc822\r\n{cte}\r\n".encode("ascii") + raw


def integrity_notice(original: bytes) -> bytes:
    """The notice a CM delivers instead of a message that failed the integrity check (A_23165).

    Shape as in gematik's FAQ example: the addressing headers of the original, result headers with
    IntegrityCheckResult 08, a German text part, then the decrypted original as message/rfc822.
    """
    head, _ = split_head(original)
    copied = [
        field.decode("utf-8", "replace").rstrip("\r\n")
        for name, field in header_fields(head)
        if name in ("message-id", "date", "from", "to", "cc", "subject")
    ]
    if get_header(original, "Message-ID") is None:
        copied.insert(0, f"Message-ID: {make_msgid(domain=CM_HOSTNAME)}")
    if get_header(original, "Date") is None:
        copied.insert(0, f"Date: {format_datetime(dt.datetime.now().astimezone())}")
    dienstkennung = get_header(original, "X-KIM-Dienstkennung") or DEFAULT_DIENSTKENNUNG
    boundary = _boundary()
    headers = [
        *copied,
        "X-KIM-DecryptionResult: 00",
        "X-KIM-IntegrityCheckResult: 08",
        f"X-KIM-Dienstkennung: {dienstkennung}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ]
    text = f"{INTEGRITY_TEXT}\n\nErgänzende Informationen:\nDie Nachricht wurde entschlüsselt.\n{INTEGRITY_DETAIL}\n"
    return _multipart(headers, boundary, [_text_part(text), _rfc822_part(original)])


@dataclass(frozen=True)
class RemovedRecipient:
    address: str
    original_recipient: str | None = None  # the RCPT ORCPT= parameter, if given


def recipients_removed_report(
    original: bytes,
    *,
    sender: str,
    removed: list[RemovedRecipient],
    arrived: dt.datetime,
    envid: str | None = None,
) -> bytes:
    """The error mail (X-KIM-Fehlermeldung 4004) a CM puts into the sender's maildrop when it had to
    drop recipients: a multipart/report DSN (RFC 3464) with a German explanation and the original headers."""
    head, _ = split_head(original)
    message_id = get_header(original, "Message-ID")
    subject = decoded(get_header(original, "Subject"))
    listing = "\n".join(f"- {r.address}" for r in removed)
    text = (
        f"{PARTIAL_SEND_TEXT}\n\n"
        f"Betreff: {subject}\n"
        f"Message-ID: {message_id or '-'}\n"
        f"Gesendet: {format_datetime(arrived)}\n\n"
        f"Folgende Empfänger wurden entfernt (keine gültigen Verschlüsselungszertifikate):\n{listing}\n"
    )
    per_message = [f"Reporting-MTA: dns; {CM_HOSTNAME}"]
    if envid:
        per_message.append(f"Original-Envelope-Id: {envid}")
    per_message.append(f"Arrival-Date: {format_datetime(arrived)}")
    blocks = ["\r\n".join(per_message)]
    for recipient in removed:
        fields = [f"Final-Recipient: rfc822; {recipient.address}"]
        if recipient.original_recipient:
            fields.append(f"Original-Recipient: {recipient.original_recipient}")
        fields += [
            "Action: failed",
            "Status: 5.1.1",
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient.address}>: no valid encryption certificate (4004)",
        ]
        blocks.append("\r\n".join(fields))
    status_part = b"Content-Type: message/delivery-status\r\n\r\n" + ("\r\n\r\n".join(blocks) + "\r\n").encode("ascii")
    headers_part = b"Content-Type: text/rfc822-headers\r\n\r\n" + head

    boundary = _boundary()
    headers = [
        "Return-Path: <>",
        f"From: {CM_FROM}",
        f"To: <{sender}>",
        f"Date: {format_datetime(dt.datetime.now().astimezone())}",
        "Subject: " + encode_header_value(f"KIM-Nachricht nicht an alle Empfänger zugestellt: {subject}"),
        f"Message-ID: {make_msgid(domain=CM_HOSTNAME)}",
    ]
    if message_id:
        headers += [f"In-Reply-To: {message_id}", f"References: {message_id}"]
    headers += [
        "X-KIM-Fehlermeldung: 4004",
        f"X-KIM-Dienstkennung: {DEFAULT_DIENSTKENNUNG}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    return _multipart(headers, boundary, [_text_part(text), status_part, headers_part])
