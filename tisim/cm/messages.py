"""Byte-level header edits and the mails a Clientmodul generates itself.

Delivered mail must stay byte-identical apart from what a real CM changes, so headers are edited on
the raw bytes (prepend, remove) instead of re-serialising through the ``email`` package. The mails
the CM writes itself (integrity notice, recipients-removed report) are assembled from parts.
"""

from __future__ import annotations

import base64
import codecs
import datetime as dt
import io
import quopri
import re
import secrets
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.header import Header, decode_header, make_header
from email.message import Message, MIMEPart
from email.parser import BytesParser
from email.policy import SMTP, compat32
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
# The Vermerk real CMs append to the first text part after decrypting (KOM-LE-A_2179-02), as in
# gematik's sample samples/KAS/2_4_Client-Mail_finalisiert.txt: two blank lines, 45 dashes, the results.
DECRYPTION_NOTE = (
    "\r\n\r\n" + "-" * 45 + "\r\nDie Nachricht wurde entschlüsselt.\r\nDie Signatur wurde erfolgreich geprüft.\r\n"
)
DECRYPTION_FAILED_SUBJECT = "Beim Entschlüsseln ist ein Fehler aufgetreten. Die Gründe werden aufgeführt."
# Error texts of Tab_Fehlercodes_KOMLE-Clientmodule as the open-source CM openkim words them.
DECRYPTION_ERRORS = {
    "4008": "Das verwendete Client-Modul unterstützt die in der Mail verwendete Version nicht",
    "4009": "Die KIM-Nachricht konnte auf Grund eines nicht verfügbaren Schlüssels nicht entschlüsselt werden",
    "4010": "Die KIM-Nachricht konnte aufgrund des falschen Formats nicht entschlüsselt werden",
    "4011": "Der Konnektor steht für die Entschlüsselung nicht zur Verfügung",
}
LARGE_MESSAGE_SUBJECT = (
    "Die KIM-Nachricht kann nicht empfangen werden, weil der Empfang großer Nachrichten nicht aktiviert wurde"
)
LARGE_MESSAGE_TEXT = (
    f"{LARGE_MESSAGE_SUBJECT}.\n\n"
    "Die Nachricht wurde über den KIM-Attachment-Service (KAS) versendet, weil sie größer als 15 MiB ist. "
    "Für diese KIM-Adresse ist der Empfang großer Nachrichten (KIM-Version „1.5+“) nicht aktiviert; das "
    "Clientmodul hat die Nachricht deshalb nicht heruntergeladen.\n\n"
    "So erhalten Sie die Nachricht:\n"
    "1. Aktivieren Sie im Account Manager Ihres KIM-Anbieters den Empfang großer Nachrichten.\n"
    "2. Leiten Sie diese Fehlermeldung an Ihre eigene KIM-Adresse weiter. Die eingebettete Nachricht wird "
    "dann erneut empfangen.\n"
)
# The results only the receiving CM may write. A sender can put them into its mail too; this CM
# removes them before adding its own (docs/security-headers.md).
RESULT_HEADERS = ("x-kim-decryptionresult", "x-kim-integritycheckresult")

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
    """What the receiving CM hands to the client: transport headers prepended, and for a mail it
    decrypted the result headers (and the sending CM's default Dienstkennung if there was none)."""
    lines = [f"Return-Path: <{envelope.sender}>", received_line(envelope, recipient)]
    if with_results:
        lines += ["X-KIM-DecryptionResult: 00", "X-KIM-IntegrityCheckResult: 01"]
        if get_header(raw, "X-KIM-Dienstkennung") is None:
            lines.append(f"X-KIM-Dienstkennung: {DEFAULT_DIENSTKENNUNG}")
    return prepend_headers(raw, lines)


def strip_result_headers(raw: bytes) -> bytes:
    """The mail without result headers someone other than this CM wrote (any case, ``name : value`` too)."""
    head, body = split_head(raw)
    fields = header_fields(head)
    if not any(name in RESULT_HEADERS for name, _ in fields):
        return raw
    return b"".join(field for name, field in fields if name not in RESULT_HEADERS) + CRLF + body


def received_payload(content: bytes, fault: str | None) -> tuple[bytes, bool]:
    """What the receiving CM makes of a submitted mail, per ``X-Tisim-Fault``: (payload, add results?).

    Without a fault the mail counts as encrypted by the sending CM and decrypted here: sender-written
    result headers are removed, the Vermerk appended, results added by ``delivered_copy``.
    ``keep-result-headers`` is a CM that does not remove them (openkim's behaviour); ``unencrypted``
    a mail that reached the Fachdienst unencrypted and is passed through (results stripped, none
    added); ``integrity``, ``decryption`` and ``4018`` the notices the CM delivers instead.
    """
    if fault is None:
        return append_decryption_note(strip_result_headers(content)), True
    if fault == "keep-result-headers":
        return append_decryption_note(content), True
    if fault == "unencrypted":
        return strip_result_headers(content), False
    if fault == "integrity":
        return integrity_notice(content), False
    if fault == "decryption":
        return decryption_failure_notice(content), False
    if fault == "4018":
        return large_message_notice(content), False
    raise ValueError(f"unknown fault {fault!r}")


RECEIVE_FAULTS = ("integrity", "decryption", "4018", "unencrypted", "keep-result-headers")


def _first_text_part(msg: Message) -> Message | None:
    """The first text/plain part that is the letter's own (not an attachment, not an embedded mail)."""
    stack = [msg]
    while stack:
        part = stack.pop(0)
        ctype = part.get_content_type()
        if part.is_multipart():
            if ctype == "message/rfc822":
                continue
            children = part.get_payload()
            stack = [p for p in children if isinstance(p, Message)] + stack
            continue
        disposition = (part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
        if ctype == "text/plain" and disposition != "attachment":
            return part
    return None


def append_decryption_note(raw: bytes) -> bytes:
    """The Vermerk appended to the first text part, as real CMs do; the mail unchanged if it has none.

    A plain single-part text in UTF-8 or ASCII gets the note appended to its bytes (everything before
    stays byte-identical); any other shape is re-encoded through the email package.
    """
    msg = BytesParser(policy=compat32).parsebytes(raw)
    part = _first_text_part(msg)
    if part is None:
        return raw
    charset = (part.get_content_charset() or "us-ascii").lower()
    cte = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    try:
        codec = codecs.lookup(charset).name
    except LookupError:
        return raw
    if part is msg and cte in ("7bit", "8bit", "binary") and codec == "utf-8":
        head, body = split_head(raw)
        if body and not body.endswith(CRLF):
            body += CRLF
        return head + CRLF + body + DECRYPTION_NOTE.encode("utf-8")
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return raw
    try:
        text = payload.decode(codec)
    except UnicodeDecodeError:
        return raw
    # The note in the part's own line ends (a base64 text keeps whatever it was encoded with).
    newline = "\r\n" if "\r\n" in text or "\n" not in text else "\n"
    if text and not text.endswith("\n"):
        text += newline
    data = (text + DECRYPTION_NOTE.replace("\r\n", newline)).encode("utf-8")
    if cte == "base64":
        encoded = base64.encodebytes(data).decode("ascii").replace("\n", "\r\n")
    elif cte == "quoted-printable":
        encoded = quopri.encodestring(data).decode("ascii")
    else:
        encoded, cte = data.decode("ascii", "surrogateescape"), "8bit"
    part.set_payload(encoded)
    if msg.get("MIME-Version") is None:
        msg["MIME-Version"] = "1.0"
    part.set_param("charset", "utf-8")
    del part["Content-Transfer-Encoding"]
    part["Content-Transfer-Encoding"] = cte
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0, policy=compat32.clone(linesep="\r\n")).flatten(msg)
    return out.getvalue()


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


def _copied_headers(original: bytes, names: tuple[str, ...]) -> list[str]:
    head, _ = split_head(original)
    return [field.decode("utf-8", "replace").rstrip("\r\n") for name, field in header_fields(head) if name in names]


def _outer_message(original: bytes) -> bytes:
    """A stand-in for the encrypted KOM-LE message as the CM fetched it (outer headers, opaque body).

    The simulator does no real S/MIME; the body is the original masked byte by byte, so the portal
    sees an unreadable smime.p7m as it would from a real CM.
    """
    headers = _copied_headers(original, ("message-id", "date", "from", "to", "cc"))
    dienstkennung = get_header(original, "X-KIM-Dienstkennung") or DEFAULT_DIENSTKENNUNG
    headers += [
        "Subject: KOM-LE-Nachricht",
        f"X-KIM-Dienstkennung: {dienstkennung}",
        "X-KOM-LE-Version: 1.5",
        "MIME-Version: 1.0",
        "Content-Type: application/pkcs7-mime; smime-type=authenticated-enveloped-data; name=smime.p7m",
        "Content-Disposition: attachment; filename=smime.p7m",
        "Content-Transfer-Encoding: base64",
    ]
    masked = bytes(b ^ 0x5A for b in original)
    return prepend_headers(b"", headers) + CRLF + base64.encodebytes(masked).replace(b"\n", CRLF)


def _notice(original: bytes, *, subject: str, extra: list[str], text: str) -> bytes:
    """A CM error message to the recipient: the original's addressing, a text part, the encrypted
    original as message/rfc822 (KOM-LE-A_2046 as openkim builds it; A_28602 for 4018)."""
    copied = _copied_headers(original, ("date", "from", "sender", "reply-to", "to", "cc"))
    if get_header(original, "Date") is None:
        copied.insert(0, f"Date: {format_datetime(dt.datetime.now().astimezone())}")
    dienstkennung = get_header(original, "X-KIM-Dienstkennung") or DEFAULT_DIENSTKENNUNG
    boundary = _boundary()
    headers = [
        *copied,
        "Subject: " + encode_header_value(subject),
        f"Message-ID: {make_msgid(domain=CM_HOSTNAME)}",
        *extra,
        f"X-KIM-Dienstkennung: {dienstkennung}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ]
    return _multipart(headers, boundary, [_text_part(text), _rfc822_part(_outer_message(original))])


def decryption_failure_notice(original: bytes, codes: tuple[str, ...] = ("4009",)) -> bytes:
    """What the recipient gets when the CM cannot decrypt: one X-KIM-DecryptionResult per error, and
    X-KIM-Fehlermeldung as every CM error message carries (ILF, "Fehlernachrichten")."""
    extra = [f"X-KIM-DecryptionResult: {code}" for code in codes]
    extra += [f"X-KIM-Fehlermeldung: {code}" for code in codes]
    text = "".join(f"[{code}] {DECRYPTION_ERRORS.get(code, 'Fehler beim Entschlüsseln')}\n" for code in codes)
    return _notice(original, subject=DECRYPTION_FAILED_SUBJECT, extra=extra, text=text)


def large_message_notice(original: bytes) -> bytes:
    """A_23512/A_28602: a large (KAS) mail for an address without "1.5+" is not downloaded; the
    recipient gets this notice with the encrypted message embedded, to forward to itself once enabled."""
    return _notice(
        original, subject=LARGE_MESSAGE_SUBJECT, extra=["X-KIM-Fehlermeldung: 4018"], text=LARGE_MESSAGE_TEXT
    )


@dataclass(frozen=True)
class RemovedRecipient:
    address: str
    original_recipient: str | None = None  # the RCPT ORCPT= parameter, if given


# Why the CM removed a recipient, per error code (Tab_Fehlercodes_KOMLE-Clientmodule as openkim words them).
REMOVAL_REASONS = {
    "4001": "KIM-Version des Empfängers unterstützt den Empfang großer Nachrichten nicht",
    "4003": "keine eindeutige Telematik-ID mit Verschlüsselungszertifikat",
    "4004": "keine gültigen Verschlüsselungszertifikate",
    "4005": "mehrere Verschlüsselungszertifikate mit unterschiedlichen Telematik-IDs",
}
REMOVAL_DIAGNOSTICS = {
    "4001": "recipient does not accept large messages",
    "4003": "no unique TelematikID with encryption certificate",
    "4004": "no valid encryption certificate",
    "4005": "encryption certificates with different TelematikIDs",
}


def recipients_removed_report(
    original: bytes,
    *,
    sender: str,
    removed: list[RemovedRecipient],
    arrived: dt.datetime,
    envid: str | None = None,
    code: str = "4004",
) -> bytes:
    """The error mail (X-KIM-Fehlermeldung ``code``, 4004 by default) a CM puts into the sender's maildrop
    when it had to drop recipients: a multipart/report DSN (RFC 3464) with a German explanation and the
    original headers."""
    head, _ = split_head(original)
    message_id = get_header(original, "Message-ID")
    subject = decoded(get_header(original, "Subject"))
    listing = "\n".join(f"- {r.address}" for r in removed)
    text = (
        f"{PARTIAL_SEND_TEXT}\n\n"
        f"Betreff: {subject}\n"
        f"Message-ID: {message_id or '-'}\n"
        f"Gesendet: {format_datetime(arrived)}\n\n"
        f"Folgende Empfänger wurden entfernt ({REMOVAL_REASONS.get(code, 'Fehler ' + code)}):\n{listing}\n"
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
            f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient.address}>: "
            f"{REMOVAL_DIAGNOSTICS.get(code, 'removed by the Clientmodul')} ({code})",
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
        f"X-KIM-Fehlermeldung: {code}",
        f"X-KIM-Dienstkennung: {DEFAULT_DIENSTKENNUNG}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    return _multipart(headers, boundary, [_text_part(text), status_part, headers_part])
