"""Delivery reports: DSNs (RFC 3464) and CM error mails matched to the message we sent.

The Fachdienst writes a DSN with ``In-Reply-To`` = our Message-ID (gematik FAQ "Generierung von
Zustellbestätigungen"); the CM's error mails (``X-KIM-Fehlermeldung``) carry it as well, or embed the
original. Matching is by that id within the receiving mailbox, then per recipient by
``Original-Recipient`` (the ``ORCPT`` we give with every RCPT, RFC 3461) or, in a block without one, by
``Final-Recipient``: the address the Fachdienst finally delivered to may be another (an alias, a forwarding). A
report that matches nothing (no message of ours, or none of its recipients) stays an
ordinary message: nothing is dropped.

Called from ingest inside the transaction that stores the received rows, so a report and its effect
on the sent message commit together (and a re-fetched report changes nothing twice).
"""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from email.message import Message as EmailMessageBase
from email.policy import compat32

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from kimportal.jobs import enqueue_on_commit
from kimportal.texts import N_, Stored, StoredText, join
from mailbox import events
from mailbox.models import DeliveryReport, Mailbox, Message, OutgoingMessage, OutgoingRecipient
from mailbox.models.kimresults import ERROR_MSGIDS
from mailbox.services.audit import audit_record
from mailbox.storage import BlobError, blob_get

log = logging.getLogger(__name__)

_MSGID = re.compile(r"<[^<>\s]+>")
# Reports are small; a large "report" is not parsed (it stays an ordinary message).
MAX_REPORT_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class RecipientStatus:
    address: str
    action: str  # delivered, failed, delayed, relayed, expanded
    status: str  # RFC 3463, e.g. 2.0.0 / 5.1.1
    diagnostic: str = ""
    # The Original-Recipient's address, lower-cased: None when the block has none, "" when it cannot be read.
    original: str | None = None


@dataclass
class ParsedReport:
    kind: str  # DeliveryReport.Kind
    referenced_ids: list[str] = field(default_factory=list)
    recipients: list[RecipientStatus] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)
    # The topmost Return-Path (what the delivering mail system wrote), None when the mail has none.
    return_path: str | None = None

    def from_the_mail_system(self, own_address: str) -> bool:
        """Whether the mail came from the mail system itself: a null sender, our own address, or none written.

        A DSN's envelope sender is the null reverse-path (RFC 3461 §6.2). A CM's error mail about our send has
        the null sender or, sent through the Fachdienst as our account, our own address. A participant can
        only send from its own address (the Fachdienst enforces A_23421), and the final delivery writes that
        address on top (RFC 5321 §4.4): a report with it is someone's mail, not a report. qmail writes the null
        sender as ``#@[]``.
        """
        if self.return_path is None:
            return True
        path = "".join(self.return_path.split()).strip("<>").lower()
        return path in ("", "#@[]", own_address.lower())


def _header_ids(value: str | None) -> list[str]:
    return _MSGID.findall(value or "")


def parse_report(raw: bytes, *, kim_error_codes: Iterable[str] = ()) -> ParsedReport | None:
    """The delivery facts of a DSN or CM error mail; None for any other mail."""
    if len(raw) > MAX_REPORT_BYTES:
        return None
    msg = email.message_from_bytes(raw, policy=compat32)
    codes = [c.strip() for c in kim_error_codes if c.strip()]
    report_type = msg.get_param("report-type")
    is_dsn = (
        msg.get_content_type() == "multipart/report"
        and isinstance(report_type, str)
        and report_type.lower() == "delivery-status"
    )
    if not is_dsn and not codes:
        return None
    report = ParsedReport(kind="error_mail" if codes else "dsn", error_codes=codes, return_path=msg.get("Return-Path"))
    embedded: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            report.recipients += _recipient_blocks(part)
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not embedded:
            embedded = _embedded_ids(part)
    # The embedded original says which message the report is about. It wins over In-Reply-To: the CM's
    # notice about a *received* mail it could not decrypt copies that mail's headers (its In-Reply-To may
    # name a message we sent) and embeds that mail, not ours.
    report.referenced_ids = embedded or (_header_ids(msg.get("In-Reply-To")) or _header_ids(msg.get("References"))[-1:])
    return report


def _recipient_blocks(part: EmailMessageBase) -> list[RecipientStatus]:
    payload = part.get_payload()
    if isinstance(payload, list):
        # The email package parses message/delivery-status into one pseudo-message per block.
        blocks = [dict((k.lower(), str(v)) for k, v in p.items()) for p in payload if isinstance(p, EmailMessageBase)]
    else:
        text = _decoded(part)
        blocks = [_fields(block) for block in re.split(rb"\r?\n\r?\n", text) if block.strip()]
    out: list[RecipientStatus] = []
    for block in blocks:
        final = block.get("final-recipient", "")
        if not final:
            continue
        address = final.split(";", 1)[-1].strip().strip("<>").lower()
        original = block.get("original-recipient")
        out.append(
            RecipientStatus(
                address=address,
                action=block.get("action", "").strip().lower(),
                status=block.get("status", "").strip().split(" ", 1)[0],
                diagnostic=" ".join(block.get("diagnostic-code", "").split()),
                original=None if original is None else _original_address(original),
            )
        )
    return out


# Longer is not an address of ours (at most 320 characters, three times that as xtext): not read at all.
_MAX_ORIGINAL = 1000
# RFC 3461 §4: "!".."~" except "+" and "=", or "+" and two upper-case hex digits.
_XTEXT = re.compile(r"(?:[!-*,-<>-~]|\+[0-9A-F]{2})*")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")


def xtext_decode(text: str) -> str | None:
    """RFC 3461 xtext decoded; None when *text* is not xtext."""
    if not _XTEXT.fullmatch(text):
        return None
    return _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), text)


def _original_address(value: str) -> str:
    """The address of an Original-Recipient field (``rfc822;`` and the ORCPT's xtext), lower-cased; "" when it
    cannot be read (another address type, not printable US-ASCII, too long).

    Text that is not xtext is taken as it stands: some MTAs write the ORCPT decoded (``a+b@x`` is no xtext). Either
    reading is only ever compared with our own recipients' addresses, never trusted beyond that.
    """
    if len(value) > _MAX_ORIGINAL:
        return ""
    kind, sep, text = value.partition(";")
    if not sep or kind.strip().lower() != "rfc822":
        return ""
    text = text.strip()
    decoded = xtext_decode(text)
    address = (text if decoded is None else decoded).strip().strip("<>")
    # RFC 3461 §4.2: the original address is printable US-ASCII; anything else is no address we sent to.
    if not address or not all(" " <= c <= "~" for c in address):
        return ""
    return address.lower()


def _recipient_of(status: RecipientStatus, addresses: Collection[str]) -> str | None:
    """Which of our recipients (lower-cased *addresses*) a block is about, None for none.

    Its Original-Recipient decides when it has one: it is the ORCPT we gave, so it names the address we sent to,
    while Final-Recipient names where the Fachdienst delivered (an alias or a forwarding may lead elsewhere, even to
    another of our recipients). One that names none of ours, or cannot be read, applies to nobody. Without it (a CM
    that does not offer DSN got no ORCPT, or mail sent before we gave it) Final-Recipient decides.
    """
    wanted = status.address if status.original is None else status.original
    return wanted if wanted and wanted in addresses else None


def _decoded(part: EmailMessageBase) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _fields(block: bytes) -> dict[str, str]:
    unfolded = re.sub(rb"\r?\n[ \t]+", b" ", block).decode("utf-8", "replace")
    out: dict[str, str] = {}
    for line in unfolded.splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _embedded_ids(part: EmailMessageBase) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], EmailMessageBase):
        return _header_ids(payload[0].get("Message-ID"))
    text = _decoded(part)
    match = re.search(rb"(?im)^Message-ID:\s*(<[^<>\s]+>)", text)
    return [match.group(1).decode("ascii", "replace")] if match else []


# --- matching --------------------------------------------------------------------------------------------


def reports_match(*, mailbox: Mailbox, messages: list[Message]) -> list[int]:
    """Match newly stored messages that are DSNs or CM error mails; returns the ids of matched ones.

    Inside the ingest transaction; a report that cannot be read or matched is left as it is.
    """
    candidates = [m for m in messages if m.pk and (m.in_reply_to or m.kim_error_codes or m.references)]
    if not candidates:
        return []
    if not OutgoingMessage.objects.filter(mailbox=mailbox).exclude(message_id="").exists():
        return []
    matched: list[int] = []
    for message in candidates:
        try:
            with transaction.atomic():
                if report_apply(mailbox=mailbox, message=message):
                    matched.append(message.pk)
        except Exception:
            log.exception(
                "matching report %s of mailbox %s failed; kept as an ordinary message", message.pk, mailbox.pk
            )
    return matched


def report_apply(*, mailbox: Mailbox, message: Message) -> DeliveryReport | None:
    if DeliveryReport.objects.filter(message=message).exists():
        return None
    try:
        raw = blob_get(message.raw_sha256)
    except BlobError:
        return None
    parsed = parse_report(raw, kim_error_codes=message.kim_error_codes)
    if parsed is None or not parsed.referenced_ids:
        return None
    if not parsed.from_the_mail_system(mailbox.address) or message.decryption_results or message.integrity_results:
        # Written by a participant (a recipient knows our Message-ID): sent from an address, or encrypted and
        # decrypted by our CM, which no DSN or error mail is. It stays mail for people to read.
        log.warning(
            "message %s of mailbox %s looks like a delivery report but was sent by a participant (%s); not applied",
            message.pk,
            mailbox.pk,
            parsed.return_path or "encrypted",
        )
        return None
    outgoing = (
        OutgoingMessage.objects.select_for_update()
        .filter(mailbox=mailbox, message_id__in=parsed.referenced_ids)
        .exclude(state=OutgoingMessage.State.DRAFT)
        .first()
    )
    if outgoing is None:
        return None
    addresses = {address.lower() for address in outgoing.recipient_rows.values_list("address", flat=True)}
    if (parsed.recipients or not parsed.error_codes) and not any(
        _recipient_of(status, addresses) for status in parsed.recipients
    ):
        # About our message but about none of its recipients (one we never sent to, or no recipient block we can
        # read): applied, it would be hidden from every list and linked from no recipient on the message's page.
        log.warning(
            "report %s of mailbox %s names none of the recipients of outgoing %s; kept as an ordinary message",
            message.pk,
            mailbox.pk,
            outgoing.pk,
        )
        return None
    report = DeliveryReport.objects.create(message=message, outgoing=outgoing, kind=parsed.kind)
    # Not open work: the facts moved to the sent message's timeline (the report stays readable there).
    Message.objects.filter(pk=message.pk).update(
        state=Message.State.DONE, done_at=timezone.now(), is_delivery_report=True
    )
    _apply_statuses(outgoing, message, parsed)
    return report


def _reason(status: RecipientStatus, parsed: ParsedReport) -> Stored:
    """Why, for the recipient's timeline: stored untranslated (kimportal.texts), translated when shown."""
    if status.action == "delivered":
        return ""
    parts: list[StoredText] = [
        N_("%(text)s (%(code)s)") % {"text": N_(ERROR_MSGIDS[code]), "code": code}
        for code in parsed.error_codes
        if code in ERROR_MSGIDS
    ]
    if status.action == "delayed":
        parts.insert(0, N_("Zustellung verzögert; der Fachdienst versucht es weiter."))
    elif status.status.startswith("5.1."):
        parts.insert(0, N_("Empfängeradresse unbekannt oder ohne gültiges Verschlüsselungszertifikat."))
    elif status.status.startswith("5."):
        parts.insert(0, N_("Zustellung dauerhaft fehlgeschlagen."))
    elif status.status.startswith("4."):
        parts.insert(0, N_("Zustellung vorübergehend nicht möglich."))
    if status.diagnostic:
        parts.append(N_("Meldung: %(text)s") % {"text": status.diagnostic[:500]})
    return (join(*parts) if parts else N_("Zustellung fehlgeschlagen.")).stored


def _apply_statuses(outgoing: OutgoingMessage, message: Message, parsed: ParsedReport) -> None:
    now = timezone.now()
    rows = {r.address.lower(): r for r in OutgoingRecipient.objects.select_for_update().filter(outgoing=outgoing)}
    statuses = parsed.recipients
    if not statuses and parsed.error_codes:
        # An error mail that lists no recipient concerns the whole submission: the recipients the CM was given, not
        # those still waiting for their next try after a temporary refusal at RCPT TO (unless nobody has had one).
        given = [address for address, row in rows.items() if row.state != OutgoingRecipient.State.QUEUED]
        statuses = [RecipientStatus(address, "failed", "", "") for address in given or rows]
    # The recipients whose last submission went unanswered: a report settles the uncertainty only if it is about one
    # of them (a report on recipients of an earlier attempt says nothing about a later one's).
    uncertain = {address for address, row in rows.items() if row.state == OutgoingRecipient.State.UNCERTAIN}
    changed: list[tuple[str, str]] = []
    for status in statuses:
        address = _recipient_of(status, rows)
        if address is None:
            if status.original is not None and status.address in rows:
                log.warning(
                    "report %s: the block delivered to %s has an Original-Recipient that is none of ours or "
                    "unreadable; applied to nobody",
                    message.pk,
                    status.address[:100],
                )
            continue
        row = rows[address]
        new_state = {
            "delivered": OutgoingRecipient.State.DELIVERED,
            "relayed": OutgoingRecipient.State.DELIVERED,
            "expanded": OutgoingRecipient.State.DELIVERED,
            "failed": OutgoingRecipient.State.FAILED,
            "delayed": OutgoingRecipient.State.DELAYED,
        }.get(status.action)
        if new_state is None:
            continue
        # A final state is not taken back by a later "delayed".
        if new_state == OutgoingRecipient.State.DELAYED and row.state in ("delivered", "failed"):
            continue
        OutgoingRecipient.objects.filter(pk=row.pk).update(
            state=new_state,
            reason=_reason(status, parsed),
            status_code=(",".join(parsed.error_codes) if parsed.error_codes else status.status)[:40],
            report=message,
            updated_at=now,
        )
        row.state = new_state
        changed.append((address, new_state))
    states = {r.state for r in rows.values()}
    new = outgoing.state
    if states and states <= {"delivered"}:
        new = OutgoingMessage.State.DELIVERED
    elif states and states <= {"delivered", "failed"}:
        new = OutgoingMessage.State.FAILED if "delivered" not in states else OutgoingMessage.State.PARTIALLY_DELIVERED
    elif (
        outgoing.state in (OutgoingMessage.State.UNCERTAIN, OutgoingMessage.State.SENDING)
        and changed
        # A report on the recipients of an earlier attempt says nothing about those still waiting for theirs, nor
        # about those whose later attempt is uncertain.
        and "queued" not in states
        and (not uncertain or any(address in uncertain for address, _state in changed))
    ):
        # Any report proves the message reached the Fachdienst: no longer uncertain.
        new = OutgoingMessage.State.SENT
    previous = outgoing.state
    updates: dict[str, object] = {"version": F("version") + 1}
    if new != previous:
        updates["state"] = new
        if previous == OutgoingMessage.State.UNCERTAIN:
            # Reconciled: the unanswered recipients were evidently sent.
            OutgoingRecipient.objects.filter(outgoing=outgoing, state="uncertain").update(
                state=OutgoingRecipient.State.SENT, updated_at=now
            )
        if new == OutgoingMessage.State.FAILED:
            updates["last_error"] = N_("Für keinen Empfänger zugestellt.").stored
        elif new == OutgoingMessage.State.PARTIALLY_DELIVERED:
            updates["last_error"] = N_(
                "Die Nachricht wurde nur an einen Teil der gewünschten Adressaten zugestellt."
            ).stored
        if not outgoing.sent_at:
            updates["sent_at"] = now
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(**updates)
    actions: dict[str, str] = {
        OutgoingMessage.State.DELIVERED: "outgoing.delivered",
        OutgoingMessage.State.PARTIALLY_DELIVERED: "outgoing.delivered",
        OutgoingMessage.State.FAILED: "outgoing.failed",
    }
    action = actions.get(str(new), "outgoing.report_received")
    audit_record(
        actor=None,
        action=action,
        mailbox=outgoing.mailbox,
        message=message,
        outgoing_id=outgoing.pk,
        message_id=outgoing.message_id,
        report=parsed.kind,
        recipients=[f"{a}: {s}" for a, s in changed],
        state=new,
        reconciled=previous == OutgoingMessage.State.UNCERTAIN,
    )
    events.broadcast_outgoing_changed(mailbox_id=outgoing.mailbox_id, outgoing_id=outgoing.pk)


def acknowledgements_offer(*, mailbox: Mailbox, messages: list[Message]) -> None:
    """After ingest: an incoming eArztbrief in a mailbox that acknowledges by itself gets its acknowledgement
    (a task after the commit: it asks the directory and talks to the CM)."""
    if not mailbox.auto_acknowledge_arztbrief:
        return
    from mailbox.services.compose import is_arztbrief

    for message in messages:
        if message.pk and is_arztbrief(message.dienstkennung):
            enqueue_on_commit("mailbox.tasks.outgoing_acknowledge_auto", message.pk)
