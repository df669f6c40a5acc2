"""The rules for client systems (kim-protocol §9.1, ILF "Primärsystem") checked on what reached the CM.

A real KIM service refuses only some of them: the Fachdienst enforces sender integrity (A_23421/
A_23422: ``From`` = MAIL FROM, ``Sender`` absent or equal, ``Reply-To`` only in KIM domains; the
exception is a mail with exactly one RCPT equal to MAIL FROM), and the CM inserts a missing
``X-KIM-Dienstkennung`` instead of refusing. Every other rule is only noted, so the portal's tests
can assert that its bytes follow the rules (``CMSimulator.header_violations()``).

gemSpec_Perf A_23167 / A_27784 give the exact value patterns; they were not available, so the
patterns below follow the format descriptions and gematik's example client mail:
``<Anwendung>;<Nachrichtentyp>;<Version>``, ``<Systemname>;<Version>``, a mail address, and
``<Produkt-ID>/<Version>`` (``MeinPvsFirma-gemApproved/2.0.0``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr

from tisim.cm.messages import CM_HOSTNAME, get_header, header_fields, split_head
from tisim.cm.sendrules import is_kim_address

DIENSTKENNUNG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*;[A-Za-z0-9][A-Za-z0-9_\-]*;V?[0-9]+(\.[0-9]+){1,2}$")
SYSTEM_VERSION_RE = re.compile(r"^[^;\s][^;]*;[Vv]?[0-9][^;\s]*$")
USER_AGENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*/[0-9A-Za-z][0-9A-Za-z._+\-]*$")
ADDR_SPEC_RE = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9\-]+)+$")
MSG_ID_RE = re.compile(r"^<([^<>@\s]+)@([^<>@\s]+)>$")
MANDATORY = ("X-KIM-Dienstkennung", "X-KIM-Sendersystem", "X-KIM-Support", "X-TI-User-Agent")
PATTERNS = {
    "x-kim-dienstkennung": DIENSTKENNUNG_RE,
    "x-kim-sendersystem": SYSTEM_VERSION_RE,
    "x-kim-middleware": SYSTEM_VERSION_RE,
    "x-kim-support": ADDR_SPEC_RE,
    "x-ti-user-agent": USER_AGENT_RE,
}
_PARSE_LIMIT = 64 * 1024 * 1024
SINGLE = ("from", "sender", "reply-to", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references")


@dataclass(frozen=True)
class Violation:
    message_id: str | None  # of the submitted mail, as written
    sender: str  # MAIL FROM
    rule: str  # e.g. "from-mismatch", "missing", "pattern", "message-id-host"
    header: str  # the field concerned ("" for none)
    detail: str
    refused: bool  # the simulated service refused the mail for it


def _host_names() -> set[str]:
    names = {"localhost", "localhost.localdomain", CM_HOSTNAME}
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(name.lower())
    return names


def _telling(local: str) -> bool:
    """Whether finding ``local`` inside a Message-ID means something: a short all-hex local part
    ("abe", "cafe") turns up in random UUIDs by chance."""
    return len(local) >= 8 or (len(local) >= 3 and _HEXISH.fullmatch(local) is None)


_HEXISH = re.compile(r"[0-9a-f._\-]+")


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        return False
    return True


def check_submission(
    content: bytes, *, sender: str, recipients: list[str], enforce_integrity: bool, seen_message_ids: set[str]
) -> list[Violation]:
    """Every rule ``content`` breaks. ``refused`` is set on the sender-integrity rules when
    ``enforce_integrity`` (the Fachdienst is simulated) and the self-send exception does not apply."""
    head, _ = split_head(content)
    fields = header_fields(head)
    names = [name for name, _ in fields]
    message_id = get_header(content, "Message-ID")
    sender = sender.lower()
    self_send = len(recipients) == 1 and recipients[0].lower() == sender
    refuse = enforce_integrity and not self_send
    found: list[Violation] = []

    def note(rule: str, header: str, detail: str, refused: bool = False) -> None:
        found.append(Violation(message_id, sender, rule, header, detail, refused))

    # Sender integrity (A_23421/A_23422).
    from_value = get_header(content, "From")
    from_addresses = [a.lower() for _, a in getaddresses([from_value])] if from_value else []
    if not from_addresses or not all(from_addresses):
        note("from-missing", "From", "From is missing or empty", refuse)
    elif any(a != sender for a in from_addresses):
        note("from-mismatch", "From", f"From {from_value!r} is not the authenticated address <{sender}>", refuse)
    sender_value = get_header(content, "Sender")
    if sender_value is not None and parseaddr(sender_value)[1].lower() != sender:
        note("sender-mismatch", "Sender", f"Sender {sender_value!r} is not <{sender}>", refuse)
    reply_to = get_header(content, "Reply-To")
    if reply_to is not None:
        outside = [a for _, a in getaddresses([reply_to]) if not is_kim_address(a)]
        if outside:
            note("reply-to-domain", "Reply-To", f"Reply-To outside the KIM domains: {', '.join(outside)}", refuse)

    # Message-ID: present, one, no host name, no personal data, never reused (ILF §9.1).
    if message_id is None:
        note("message-id-missing", "Message-ID", "no Message-ID")
    else:
        match = MSG_ID_RE.match(message_id.strip())
        if match is None:
            note("message-id-syntax", "Message-ID", f"not <left@right>: {message_id!r}")
        else:
            left, right = match.group(1).lower(), match.group(2).lower()
            if right in _host_names() or _is_ip(right):
                note("message-id-host", "Message-ID", f"names a host: {right!r}")
            personal = [
                local
                for local in {a.partition("@")[0].lower() for a in [sender, *recipients]}
                if local in left and _telling(local)
            ]
            if personal:
                note("message-id-personal", "Message-ID", f"contains the address part {personal[0]!r}")
        if message_id.strip() in seen_message_ids:
            note("message-id-reused", "Message-ID", f"{message_id.strip()} was submitted before")

    if "date" not in names:
        note("missing", "Date", "no Date")
    if "to" not in names and "cc" not in names:
        note("missing", "To", "neither To nor Cc")
    for name in SINGLE:
        if names.count(name) > 1:
            note("repeated", name.title(), f"{name} appears {names.count(name)} times")

    for header in MANDATORY:
        if header.lower() not in names:
            note("missing", header, f"mandatory {header} is missing")
    for name, pattern in PATTERNS.items():
        for field_name, raw in fields:
            if field_name != name:
                continue
            value = re.sub(rb"\r\n[ \t]", b" ", raw.split(b":", 1)[1]).decode("utf-8", "replace").strip()
            if not pattern.match(value):
                note("pattern", raw.split(b":", 1)[0].decode("ascii", "replace"), f"value {value!r} does not fit")

    dienstkennung = get_header(content, "X-KIM-Dienstkennung") or ""
    # Parsing the MIME tree of a huge mail costs more than the rule is worth.
    if dienstkennung.startswith("KIM-Mail;") and len(content) <= _PARSE_LIMIT:
        shapes = _content_types(content)
        odd = sorted({t for t in shapes if t in ("text/html", "multipart/alternative")})
        if odd:
            note("kim-mail-not-plain", "Content-Type", f"{dienstkennung} must be text/plain only, has {', '.join(odd)}")
    return found


def _content_types(content: bytes) -> list[str]:
    msg = BytesParser(policy=compat32).parsebytes(content)
    types = []
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        ctype = part.get_content_type()
        disposition = (part.get("Content-Disposition") or "").split(";", 1)[0].strip().lower()
        if disposition == "attachment":
            continue  # attachments may be anything (ILF "Umgang mit HTML Mails")
        types.append(ctype)
        # An attached or forwarded mail is not the letter's own body.
        if part.is_multipart() and ctype != "message/rfc822":
            stack.extend(p for p in part.get_payload() if isinstance(p, Message))
    return types
