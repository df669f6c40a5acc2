"""Mails about a sent message: the Fachdienst's DSNs (RFC 3464) and CM error mails on demand.

DSNs are what the sender's Fachdienst generates (KOM-LE-A_2147; gematik FAQ "Generierung von
Zustellbestätigungen"): ``multipart/report; report-type=delivery-status``, ``In-Reply-To`` = the
sent message's Message-ID, Arrival-Date = when the Fachdienst took it, one block per recipient,
and, since KIM uses only RET=HDRS, the original's header as ``text/rfc822-headers``. They are not
KIM messages (no X-KOM-LE-Version, no X-KIM-Fehlermeldung); the receiving CM passes them through.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.utils import format_datetime, make_msgid

from tisim.cm.messages import (
    CM_FROM,
    CM_HOSTNAME,
    DEFAULT_DIENSTKENNUNG,
    _boundary,
    _multipart,
    _rfc822_part,
    _text_part,
    decoded,
    encode_header_value,
    get_header,
    split_head,
)

FD_HOSTNAME = "fachdienst.tisim.invalid"
FD_FROM = f'"Mail Delivery System" <MAILER-DAEMON@{FD_HOSTNAME}>'

# Error mails on demand (CM send side): the text of the first part, per code. Codes without an
# entry get a generic text; vendor codes (X…) are allowed.
CM_ERROR_TEXTS = {
    "4001": "Der Empfänger wurde entfernt: seine KIM-Version unterstützt den Empfang großer Nachrichten nicht.",
    "4002": "Das Hochladen der Anhänge zum KIM-Attachment-Service ist fehlgeschlagen.",
    "4003": "Für den Empfänger wurde keine eindeutige Telematik-ID mit Verschlüsselungszertifikat gefunden.",
    "4004": "Die Nachricht konnte nicht für alle Empfänger verschlüsselt werden.",
    "4005": (
        "Für den Empfänger wurden mehrere Verschlüsselungszertifikate mit unterschiedlichen Telematik-IDs gefunden."
    ),
    "4011": "Der Konnektor steht nicht zur Verfügung.",
}


@dataclass(frozen=True)
class RecipientResult:
    address: str
    action: str  # "delivered" | "failed" (RFC 3464 §2.3.3)
    status: str  # RFC 3463 code, e.g. "2.0.0", "5.1.1"
    diagnostic: str | None = None  # SMTP reply text for failures
    original_recipient: str | None = None  # the RCPT ORCPT= value


def delivery_status_notification(
    original: bytes,
    *,
    sender: str,
    results: list[RecipientResult],
    arrived: dt.datetime,
    envid: str | None = None,
) -> bytes:
    head, _ = split_head(original)
    message_id = get_header(original, "Message-ID")
    subject = decoded(get_header(original, "Subject"))
    now = dt.datetime.now().astimezone()
    failed = [r for r in results if r.action == "failed"]
    delivered = [r for r in results if r.action == "delivered"]
    lines = [f"Zustellbericht des KIM-Fachdienstes zu Ihrer Nachricht „{subject}“ ({message_id or '-'}).", ""]
    if delivered:
        lines += ["Zugestellt an:", *(f"- {r.address}" for r in delivered), ""]
    if failed:
        lines += ["Nicht zugestellt an:", *(f"- {r.address}: {r.diagnostic or r.status}" for r in failed), ""]

    per_message = [f"Reporting-MTA: dns; {FD_HOSTNAME}"]
    if envid:
        per_message.append(f"Original-Envelope-Id: {envid}")
    per_message.append(f"Arrival-Date: {format_datetime(arrived)}")
    blocks = ["\r\n".join(per_message)]
    for result in results:
        fields = []
        if result.original_recipient:
            fields.append(f"Original-Recipient: {result.original_recipient}")
        fields += [
            f"Final-Recipient: rfc822; {result.address}",
            f"Action: {result.action}",
            f"Status: {result.status}",
        ]
        if result.diagnostic:
            fields.append(f"Diagnostic-Code: smtp; {result.diagnostic}")
        fields.append(f"Last-Attempt-Date: {format_datetime(now)}")
        blocks.append("\r\n".join(fields))
    status_part = b"Content-Type: message/delivery-status\r\n\r\n" + ("\r\n\r\n".join(blocks) + "\r\n").encode(
        "ascii", "replace"
    )
    headers_part = b"Content-Type: text/rfc822-headers\r\n\r\n" + head

    outcome = "fehlgeschlagen" if failed and not delivered else "teilweise zugestellt" if failed else "zugestellt"
    boundary = _boundary()
    headers = [
        "Return-Path: <>",
        f"From: {FD_FROM}",
        f"To: <{sender}>",
        f"Date: {format_datetime(now)}",
        "Subject: " + encode_header_value(f"Zustellbenachrichtigung ({outcome}): {subject}"),
        f"Message-ID: {make_msgid(domain=FD_HOSTNAME)}",
    ]
    if message_id:
        headers += [f"In-Reply-To: {message_id}", f"References: {message_id}"]
    headers += [
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
    ]
    return _multipart(headers, boundary, [_text_part("\n".join(lines)), status_part, headers_part])


def cm_error_mail(original: bytes, *, sender: str, code: str, recipients: list[str], text: str | None = None) -> bytes:
    """An error mail of the sending CM about ``original`` (X-KIM-Fehlermeldung ``code``): a German text
    naming the recipients, the original embedded as message/rfc822 (ILF "Fehlernachrichten")."""
    message_id = get_header(original, "Message-ID")
    subject = decoded(get_header(original, "Subject"))
    body = text or CM_ERROR_TEXTS.get(code, f"Beim Versand ist im Clientmodul der Fehler {code} aufgetreten.")
    listing = "".join(f"- {r}\n" for r in recipients)
    full = f"[{code}] {body}\n\nBetreff: {subject}\nMessage-ID: {message_id or '-'}\n" + (
        f"\nBetroffene Empfänger:\n{listing}" if recipients else ""
    )
    boundary = _boundary()
    headers = [
        "Return-Path: <>",
        f"From: {CM_FROM}",
        f"To: <{sender}>",
        f"Date: {format_datetime(dt.datetime.now().astimezone())}",
        "Subject: " + encode_header_value(f"KIM-Nachricht: Fehler beim Versand ({code}): {subject}"),
        f"Message-ID: {make_msgid(domain=CM_HOSTNAME)}",
    ]
    if message_id:
        headers += [f"In-Reply-To: {message_id}", f"References: {message_id}"]
    headers += [
        f"X-KIM-Fehlermeldung: {code}",
        f"X-KIM-Dienstkennung: {DEFAULT_DIENSTKENNUNG}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{boundary}"',
    ]
    return _multipart(headers, boundary, [_text_part(full), _rfc822_part(original)])
