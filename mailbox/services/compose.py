"""Writing mail: drafts (new, reply, reply-all, forward), their attachments, and the MIME the CM receives.

Drafts save themselves (autosave): ``outgoing_draft_save`` creates or updates, guarded by ``version``.
``mime_chunks`` produces the exact bytes handed to the Clientmodul, piece by piece (an attachment is read from
its blob and base64-encoded in chunks, so a large mail is never held whole), following the gematik rules for
client systems (kim-protocol.md §3, §9.1): ``From`` is the account's address and nothing else names a
sender; ``Message-ID`` is a UUID on a pseudo-domain (unique, no host name, no personal data); the
mandatory ``X-KIM-*`` and ``X-TI-User-Agent`` headers; a text/plain body only (never HTML or
multipart/alternative, as ``KIM-Mail;Default;V1.0`` demands); a forwarded original as a complete,
unchanged ``message/rfc822`` part; never a ``Content-Disposition: x-kas`` part.
"""

from __future__ import annotations

import base64
import re
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr, getaddresses
from typing import IO, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.errors import Conflict, NotAllowed, PortalError
from kimportal.validators import KIM_ADDRESS
from mailbox import events
from mailbox.dienstkennung import split_dienstkennung
from mailbox.models import Mailbox, Message, OutgoingAttachment, OutgoingMessage
from mailbox.permissions import Action, require
from mailbox.services.audit import audit_record
from mailbox.storage import BLOB_CHUNK_BYTES, BlobMissing, blob_chunks, blob_put_chunks, blob_touch

DEFAULT_DIENSTKENNUNG = "KIM-Mail;Default;V1.0"
ACKNOWLEDGEMENT_TYPE = "Eingangsbestaetigung"
# Message-IDs: "<uuid@kim.local>" as gematik recommends: no FQDN of ours, nothing about the sender.
MESSAGE_ID_DOMAIN = "kim.local"
# <Anwendung>;<Nachrichtentyp>;<Version> (gemSpec_Perf A_23167: no spaces or semicolons inside a part).
DIENSTKENNUNG = re.compile(r"^[A-Za-z0-9._-]+;[A-Za-z0-9._-]+;[A-Za-z0-9._-]+$")
_MSGID = re.compile(r"<[^<>\s]+>")
MAX_ATTACHMENT_BYTES = 500 * 1024 * 1024
# gemSpec: at most 700 MiB encoded; the CM's SIZE says the same.
MAX_MAIL_BYTES = 734003200


class DraftInvalid(PortalError):
    """The draft cannot be sent as it is (no recipient, a malformed address …); the message says what."""


def sender_system() -> str:
    """X-KIM-Sendersystem: ``<Systemname>;<Version>`` of the system responsible for content and replies."""
    return str(getattr(settings, "KIMPORTAL_KIM_SENDERSYSTEM", "KIM-Portal;0.1.0"))


def support_address() -> str:
    return str(getattr(settings, "KIMPORTAL_KIM_SUPPORT", "kim-support@klinikum-demo.example"))


def ti_user_agent() -> str:
    """X-TI-User-Agent: the product id registered with gematik (``<Hersteller-Produkt>/<Version>``)."""
    return str(getattr(settings, "KIMPORTAL_TI_USER_AGENT", "KIMPortal-Klinikum/0.1.0"))


@dataclass
class OutgoingData:
    """What the compose form edits."""

    subject: str = ""
    body: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    dienstkennung: str = DEFAULT_DIENSTKENNUNG
    request_dsn: bool = True


def normalize_addresses(values: list[str]) -> list[str]:
    """Bare addresses, lower-cased, without duplicates, in the order given (a pasted list may repeat names).

    Takes typed lists ("a@x; b@y"), header values ("Station <a@x>") and anything between.
    """
    out: list[str] = []
    for value in values:
        text = (value or "").replace(";", ",")
        if "<" not in text and '"' not in text:
            text = ",".join(text.split())
        for _name, address in getaddresses([text]):
            address = address.strip().lower()
            if address and address not in out:
                out.append(address)
    return out


def address_problem(address: str) -> str:
    """Why *address* is no KIM address, in German; "" when it is one."""
    if not KIM_ADDRESS.fullmatch(address):
        return _("„%(address)s“ ist keine KIM-Adresse (…@….kim.telematik).") % {"address": address}
    return ""


# Control characters and the line and paragraph separators: Python's str.splitlines ends a line at each of them
# (\x0b, \x0c, \x1c-\x1e, \x85, U+2028, U+2029 besides CR and LF), and so the email package refuses them in a
# header value. A subject pasted from a word processor carries a vertical tab for a manual line break.
_HEADER_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
MAX_FILENAME = 255
# What the compose form takes (forms_compose): one header line for the subject, a million characters of text.
MAX_SUBJECT = 998
MAX_BODY = 1_000_000
# Recipients (To and Cc together) a message goes to; a draft may hold more while it is written (its text is saved
# whatever the count), sending refuses them (draft_problems). A draft holds at most MAX_STORED_RECIPIENTS: a bound on
# what a hand-made post stores, far beyond what a page can ask for.
MAX_RECIPIENTS = 100
MAX_STORED_RECIPIENTS = 1000
# A reply quotes at most this much of the letter: a draft the form cannot save could never be sent.
MAX_QUOTE = 200_000


def one_line(value: str) -> str:
    """*value* as one header line: every run of control characters and line separators becomes one space."""
    return _HEADER_BREAKS.sub(" ", value or "")


def attachment_filename(filename: str) -> str:
    """The name an attachment goes out with: the last path segment, without control and format characters (a
    line break would end the Content-Disposition header; a right-to-left override, U+202E, makes
    "Befund<RLO>fdp.exe" read as "Befundexe.pdf"), at most 255 characters with the extension kept (it says how
    the recipient's system opens the file)."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")).strip()
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        keep = dot and stem and len(ext) <= 16
        name = f"{stem[: MAX_FILENAME - 1 - len(ext)].rstrip()}.{ext}" if keep else name[:MAX_FILENAME].rstrip()
    return name if name.strip(".") else "Anhang"


def new_message_id() -> str:
    return f"<{uuid.uuid4()}@{MESSAGE_ID_DOMAIN}>"


def require_sender(user: Any, mailbox: Mailbox | int) -> None:
    require(user, mailbox, Action.PROCESS, _("Aus diesem Postfach dürfen Sie nicht senden."))


def _draft_for_update(
    user: Any, draft: OutgoingMessage, version: int | None, content_hash: str | None = None
) -> OutgoingMessage:
    locked = OutgoingMessage.objects.select_for_update().get(pk=draft.pk)
    require_sender(user, locked.mailbox_id)
    if locked.state != OutgoingMessage.State.DRAFT:
        raise Conflict(_("Die Nachricht ist kein Entwurf mehr (%(state)s).") % {"state": locked.get_state_display()})
    # A page that names the text it was based on is compared on that alone: a file added in another tab bumps the
    # version but leaves nothing this save would overwrite. Without it (a page from before), any change counts.
    stale = locked.content_hash != content_hash if content_hash else version is not None and locked.version != version
    if stale:
        raise Conflict(_("Der Entwurf wurde inzwischen an anderer Stelle geändert. Bitte neu laden."), fresh=locked)
    return locked


@transaction.atomic
def outgoing_draft_save(
    *,
    user: Any,
    mailbox_id: int,
    data: OutgoingData,
    draft: OutgoingMessage | None = None,
    version: int | None = None,
    content_hash: str | None = None,
) -> OutgoingMessage:
    """Create or update a draft (autosave). Addresses are kept as typed but normalised; checks come at send.

    The guard is *content_hash* (the text fields the page loaded) when given, else *version* (any change)."""
    fields = {
        "subject": one_line(data.subject),
        "body": data.body,
        "to": normalize_addresses(data.to),
        "cc": normalize_addresses(data.cc),
        "dienstkennung": " ".join((data.dienstkennung or DEFAULT_DIENSTKENNUNG).split()),
        "request_dsn": data.request_dsn,
    }
    if draft is None:
        require_sender(user, mailbox_id)
        draft = OutgoingMessage.objects.create(mailbox_id=mailbox_id, author=user, **fields)
        audit_record(actor=user, action="outgoing.draft_created", mailbox=draft.mailbox, outgoing_id=draft.pk)
    else:
        locked = _draft_for_update(user, draft, version, content_hash)
        if locked.mailbox_id != mailbox_id:
            require_sender(user, mailbox_id)
            fields["mailbox_id"] = mailbox_id
        OutgoingMessage.objects.filter(pk=locked.pk).update(version=F("version") + 1, **fields)
        draft = OutgoingMessage.objects.get(pk=locked.pk)
    events.broadcast_outgoing_changed(mailbox_id=draft.mailbox_id, outgoing_id=draft.pk)
    return draft


def reply_subject(subject: str, prefix: str) -> str:
    stripped = subject.strip()
    if re.match(rf"^{re.escape(prefix)}\s*:", stripped, re.IGNORECASE):
        return stripped
    return f"{prefix}: {stripped}" if stripped else f"{prefix}:"


def references_for(message: Message) -> str:
    chain = message.references.split() if message.references else []
    if not chain and message.in_reply_to:
        chain = [message.in_reply_to.strip()]
    if message.message_id:
        chain.append(message.message_id.strip())
    # RFC 5322 §3.6.4: keep it readable; the first and the last ids carry the thread.
    if len(chain) > 20:
        chain = [chain[0], *chain[-19:]]
    return " ".join(chain)


def _quoted(message: Message) -> str:
    when = timezone.localtime(message.date).strftime("%d.%m.%Y %H:%M") if message.date else ""
    sender = message.from_name or message.from_address
    text = message.text_body or ""
    lines = "\n".join(f"> {line}" for line in text[:MAX_QUOTE].splitlines())
    if len(text) > MAX_QUOTE:
        lines += "\n> […]\n\n" + _("(Zitat gekürzt; die vollständige Nachricht steht im Postfach.)")
    return "\n\n" + _("Am %(when)s schrieb %(sender)s:") % {"when": when, "sender": sender} + "\n" + lines


def _readable_message(user: Any, message: Message) -> Message:
    visible = Message.objects.visible_to(user).filter(pk=message.pk).first()
    if visible is None:
        raise NotAllowed(_("Diese Nachricht ist für Sie nicht sichtbar."))
    require_sender(user, visible.mailbox_id)
    return visible


@transaction.atomic
def outgoing_reply_start(*, user: Any, message: Message, reply_all: bool = False) -> OutgoingMessage:
    """A draft answering *message*: to its sender (and for reply-all its other recipients), threaded."""
    message = _readable_message(user, message)
    own = message.mailbox.address.lower()
    to = normalize_addresses([message.from_address])
    cc: list[str] = []
    if reply_all:
        others = normalize_addresses([*message.to, *message.cc])
        cc = [a for a in others if a != own and a not in to]
    draft = OutgoingMessage.objects.create(
        mailbox_id=message.mailbox_id,
        author=user,
        kind=OutgoingMessage.Kind.REPLY_ALL if reply_all else OutgoingMessage.Kind.REPLY,
        in_reply_to=message,
        in_reply_to_header=message.message_id.strip(),
        references=references_for(message),
        subject=one_line(reply_subject(message.subject, "AW"))[:MAX_SUBJECT],
        body=_quoted(message),
        to=to,
        cc=cc,
    )
    audit_record(actor=user, action="outgoing.draft_created", message=message, outgoing_id=draft.pk, kind=draft.kind)
    events.broadcast_outgoing_changed(mailbox_id=draft.mailbox_id, outgoing_id=draft.pk)
    return draft


@transaction.atomic
def outgoing_forward_start(*, user: Any, message: Message) -> OutgoingMessage:
    """A draft forwarding *message*: the original, byte for byte, as a message/rfc822 attachment."""
    message = _readable_message(user, message)
    gone = _("Der Inhalt dieser Nachricht wurde gelöscht; sie kann nicht weitergeleitet werden.")
    if message.content_deleted_at is not None or not message.raw_sha256:
        raise DraftInvalid(gone)
    try:
        # Before the row names it: a retention run deleting the original now keeps it for this draft (see
        # storage.blob_delete_if_idle), or has deleted it already and the forward is refused.
        blob_touch(message.raw_sha256)
    except BlobMissing:
        raise DraftInvalid(gone) from None
    draft = OutgoingMessage.objects.create(
        mailbox_id=message.mailbox_id,
        author=user,
        kind=OutgoingMessage.Kind.FORWARD,
        in_reply_to=message,
        references=references_for(message),
        subject=one_line(reply_subject(message.subject, "WG"))[:MAX_SUBJECT],
    )
    OutgoingAttachment.objects.create(
        outgoing=draft,
        position=0,
        filename=_forward_filename(message),
        content_type="message/rfc822",
        size=message.size,
        sha256=message.raw_sha256,
        is_forwarded_original=True,
    )
    audit_record(actor=user, action="outgoing.draft_created", message=message, outgoing_id=draft.pk, kind=draft.kind)
    events.broadcast_outgoing_changed(mailbox_id=draft.mailbox_id, outgoing_id=draft.pk)
    return draft


def _forward_filename(message: Message) -> str:
    stem = re.sub(r"[^\w .-]+", "_", message.subject or "Nachricht").strip()[:80] or "Nachricht"
    return f"{stem}.eml"


@transaction.atomic
def outgoing_attachment_add(
    *,
    user: Any,
    draft: OutgoingMessage,
    filename: str,
    content: bytes | IO[bytes],
    content_type: str = "",
    version: int | None = None,
) -> OutgoingAttachment:
    """Attach *content* (bytes, an uploaded file, any binary reader): it goes to the blob store in chunks."""
    locked = _draft_for_update(user, draft, version)
    too_large = DraftInvalid(_("Die Datei „%(name)s“ ist zu groß (höchstens 500 MB).") % {"name": filename})
    announced = len(content) if isinstance(content, bytes) else getattr(content, "size", None)
    if isinstance(announced, int) and announced > MAX_ATTACHMENT_BYTES:
        raise too_large
    name = attachment_filename(filename)
    ctype = (content_type or _guess_type(name)).lower()
    if not re.match(r"^[a-z0-9.+-]+/[a-z0-9.+-]+$", ctype) or ctype == "message/rfc822":
        ctype = "application/octet-stream"
    sha, size = blob_put_chunks(_limited(_content_chunks(content), MAX_ATTACHMENT_BYTES, too_large))
    position = (locked.attachments.aggregate(m=Max("position"))["m"] or 0) + 1
    attachment = OutgoingAttachment.objects.create(
        outgoing=locked, position=position, filename=name, content_type=ctype, size=size, sha256=sha
    )
    OutgoingMessage.objects.filter(pk=locked.pk).update(version=F("version") + 1)
    audit_record(
        actor=user, action="outgoing.attachment_added", mailbox=locked.mailbox, outgoing_id=locked.pk, filename=name
    )
    events.broadcast_outgoing_changed(mailbox_id=locked.mailbox_id, outgoing_id=locked.pk)
    return attachment


def _content_chunks(content: bytes | IO[bytes]) -> Iterator[bytes]:
    if isinstance(content, bytes):
        yield content
        return
    chunks = getattr(content, "chunks", None)  # Django's File and UploadedFile (from the start, 64 KiB each)
    if callable(chunks):
        yield from chunks()
        return
    while block := content.read(BLOB_CHUNK_BYTES):
        yield block


def _limited(chunks: Iterable[bytes], limit: int, error: Exception) -> Iterator[bytes]:
    """The chunks, until more than *limit* bytes came: then *error* (the spool is dropped, nothing is stored)."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise error
        yield chunk


@transaction.atomic
def outgoing_attachment_remove(
    *, user: Any, draft: OutgoingMessage, attachment_id: int, version: int | None = None
) -> None:
    locked = _draft_for_update(user, draft, version)
    deleted, _rows = OutgoingAttachment.objects.filter(outgoing=locked, pk=attachment_id).delete()
    if deleted:
        OutgoingMessage.objects.filter(pk=locked.pk).update(version=F("version") + 1)
        events.broadcast_outgoing_changed(mailbox_id=locked.mailbox_id, outgoing_id=locked.pk)


@transaction.atomic
def outgoing_discard(*, user: Any, outgoing: OutgoingMessage, version: int | None = None) -> None:
    """Delete a draft (its blobs stay: they may be shared with other messages). Sent mail is never deleted.

    A draft left by a former member is deleted by an owner of the mailbox (their author cannot any more)."""
    locked = OutgoingMessage.objects.select_for_update().select_related("mailbox").get(pk=outgoing.pk)
    if locked.author_left_at is not None and locked.author_id != user.pk:
        require(
            user, locked.mailbox_id, Action.MANAGE, _("Nur Eigentümer des Postfachs dürfen diesen Entwurf löschen.")
        )
    else:
        require_sender(user, locked.mailbox_id)
    if locked.state != OutgoingMessage.State.DRAFT:
        raise NotAllowed(_("Nur Entwürfe können verworfen werden; gesendete Nachrichten bleiben erhalten."))
    if version is not None and locked.version != version:
        raise Conflict(_("Der Entwurf wurde inzwischen an anderer Stelle geändert. Bitte neu laden."), fresh=locked)
    former = locked.author_id if locked.author_left_at and locked.author_id != user.pk else None
    if former is None:
        audit_record(actor=user, action="outgoing.draft_discarded", mailbox=locked.mailbox, outgoing_id=locked.pk)
    else:
        audit_record(
            actor=user,
            action="outgoing.draft_discarded",
            mailbox=locked.mailbox,
            outgoing_id=locked.pk,
            former_author=former,
        )
    mailbox_id, pk = locked.mailbox_id, locked.pk
    locked.delete()
    events.broadcast_outgoing_changed(mailbox_id=mailbox_id, outgoing_id=pk)


def outgoing_drafts_return(*, actor: Any, mailbox_id: int, person: Any, reason: str = "membership_ended") -> int:
    """A person who can no longer work the mailbox leaves drafts nobody else sees: they are marked as left by a
    former member, so the mailbox's owners see them (and delete or take them over). Audited per draft, inside the
    caller's transaction; returns how many."""
    return _drafts_hand_over(
        actor=actor,
        mailbox_id=mailbox_id,
        person=person,
        leaving=True,
        action="outgoing.draft_left",
        details={"previous": person.pk, "reason": reason},
    )


def outgoing_drafts_reclaim(*, actor: Any, mailbox_id: int, person: Any, reason: str) -> int:
    """The person works the mailbox again: their drafts left there (and not taken over) are theirs again, and the
    owners no longer see them. The other half of outgoing_drafts_return: audited per draft, inside the caller's
    transaction; returns how many."""
    return _drafts_hand_over(
        actor=actor,
        mailbox_id=mailbox_id,
        person=person,
        leaving=False,
        action="outgoing.draft_reclaimed",
        details={"person": person.pk, "reason": reason},
    )


def _drafts_hand_over(
    *, actor: Any, mailbox_id: int, person: Any, leaving: bool, action: str, details: dict[str, Any]
) -> int:
    left_at = timezone.now() if leaving else None
    drafts = list(
        OutgoingMessage.objects.select_for_update()
        .select_related("mailbox")
        .filter(mailbox_id=mailbox_id, author=person, state=OutgoingMessage.State.DRAFT, author_left_at__isnull=leaving)
        .order_by("pk")
    )
    for draft in drafts:
        OutgoingMessage.objects.filter(pk=draft.pk).update(author_left_at=left_at, version=F("version") + 1)
        audit_record(actor=actor, action=action, mailbox=draft.mailbox, outgoing_id=draft.pk, **details)
        events.broadcast_outgoing_changed(mailbox_id=mailbox_id, outgoing_id=draft.pk)
    return len(drafts)


@transaction.atomic
def outgoing_draft_take_over(*, user: Any, draft: OutgoingMessage, version: int | None = None) -> OutgoingMessage:
    """An owner of the mailbox makes a former member's draft their own (to finish, send or delete it)."""
    locked = OutgoingMessage.objects.select_for_update().select_related("mailbox").get(pk=draft.pk)
    require(user, locked.mailbox_id, Action.MANAGE, _("Nur Eigentümer des Postfachs dürfen diesen Entwurf übernehmen."))
    if locked.state != OutgoingMessage.State.DRAFT or locked.author_left_at is None:
        raise Conflict(_("Dieser Entwurf gehört keinem ehemaligen Mitglied (mehr)."), fresh=locked)
    if version is not None and locked.version != version:
        raise Conflict(_("Der Entwurf wurde inzwischen an anderer Stelle geändert. Bitte neu laden."), fresh=locked)
    previous = locked.author_id
    OutgoingMessage.objects.filter(pk=locked.pk).update(author=user, author_left_at=None, version=F("version") + 1)
    audit_record(
        actor=user,
        action="outgoing.draft_taken_over",
        mailbox=locked.mailbox,
        outgoing_id=locked.pk,
        previous=previous,
    )
    events.broadcast_outgoing_changed(mailbox_id=locked.mailbox_id, outgoing_id=locked.pk)
    return OutgoingMessage.objects.select_related("mailbox").get(pk=locked.pk)


def _guess_type(filename: str) -> str:
    import mimetypes

    return mimetypes.guess_type(filename)[0] or "application/octet-stream"


def too_many_recipients(count: int) -> str:
    """Why a message to *count* recipients is not sent (German), or "" when that many may be sent to."""
    if count <= MAX_RECIPIENTS:
        return ""
    return too_many_recipients_text(count, count - MAX_RECIPIENTS)


def too_many_recipients_text(count: int | str, over: int | str) -> str:
    """too_many_recipients' sentence; with placeholders ("{count}") it is the compose page's template for the same
    sentence, filled in as chips are removed."""
    return _(
        "Höchstens %(n)s Empfänger je Nachricht (An und Kopie zusammen); diese hat %(count)s. Bitte entfernen Sie "
        "%(over)s."
    ) % {"n": MAX_RECIPIENTS, "count": count, "over": over}


def recipient_limit_notice(count: int) -> str:
    """What the compose page says of *count* recipients (German): that no more can be added at the limit, that some
    must go above it, nothing below it."""
    if count == MAX_RECIPIENTS:
        return _(
            "Höchstens %(n)s Empfänger je Nachricht (An und Kopie zusammen); diese hat %(n)s. Um weitere "
            "hinzuzufügen, entfernen Sie bitte zuerst einen."
        ) % {"n": MAX_RECIPIENTS}
    return too_many_recipients(count)


def draft_problems(draft: OutgoingMessage) -> list[tuple[str, str]]:
    """(address or "", German reason) for everything that keeps the draft from being sent, before the directory."""
    problems: list[tuple[str, str]] = []
    if not draft.to and not draft.cc:
        problems.append(("", _("Bitte mindestens einen Empfänger angeben.")))
    if too_many := too_many_recipients(len(draft.recipients)):
        problems.append(("", too_many))
    for address in draft.recipients:
        reason = address_problem(address)
        if reason:
            problems.append((address, reason))
    size = estimated_size(draft, list(draft.attachments.all()))
    if size > MAX_MAIL_BYTES:
        problems.append(
            (
                "",
                _("Die Nachricht ist mit etwa %(size)s MiB größer als die 700 MiB, die KIM befördert.")
                % {"size": size // (1024 * 1024)},
            )
        )
    if not DIENSTKENNUNG.fullmatch(draft.dienstkennung or ""):
        problems.append(
            (
                "",
                _("Die Dienstkennung „%(value)s“ hat nicht die Form Anwendung;Typ;Version.")
                % {"value": draft.dienstkennung},
            )
        )
    return problems


def estimated_size(draft: OutgoingMessage, attachments: list[OutgoingAttachment]) -> int:
    """The size of the MIME message as the CM will see it (base64 adds a third, plus line breaks)."""
    size = 2048 + len(draft.subject.encode()) + len(draft.body.encode()) * 3 // 2
    for a in attachments:
        if a.is_forwarded_original:
            size += a.size + 200
        else:
            size += (a.size + 2) // 3 * 4 * 78 // 76 + 300
    return size


# --- MIME ---------------------------------------------------------------------------------------------------


def build_mime(outgoing: OutgoingMessage, *, message_id: str, date: datetime | None = None) -> bytes:
    """The RFC 5322 message for *outgoing* (CRLF line ends, ready for DATA), whole: for small mail and checks.

    The outbox stores ``mime_chunks`` instead, which gives the same bytes without holding them.
    """
    return b"".join(mime_chunks(outgoing, message_id=message_id, date=date))


def mime_chunks(outgoing: OutgoingMessage, *, message_id: str, date: datetime | None = None) -> Iterator[bytes]:
    """The RFC 5322 message for *outgoing* in pieces of at most about a MiB; joined, they are the message.

    Attachments are read from their blobs as the pieces are taken: a missing blob raises BlobMissing, one whose
    bytes no longer match raises BlobCorrupted once it has been read (before the last piece is given), so a
    consumer that stores the pieces keeps nothing from a failed run.
    """
    attachments = list(outgoing.attachments.order_by("position"))
    head = EmailMessage(policy=SMTP)
    # one_line here too: a draft stored before its text was cleaned, or a mailbox's name, must not stop a send.
    head["From"] = formataddr((one_line(outgoing.mailbox.display_name), outgoing.mailbox.address))
    if outgoing.to:
        head["To"] = ", ".join(outgoing.to)
    if outgoing.cc:
        head["Cc"] = ", ".join(outgoing.cc)
    head["Subject"] = one_line(outgoing.subject)
    head["Date"] = format_datetime(timezone.localtime(date or timezone.now()))
    head["Message-ID"] = message_id
    if outgoing.in_reply_to_header:
        head["In-Reply-To"] = outgoing.in_reply_to_header
    if outgoing.references:
        head["References"] = outgoing.references
    head["X-KIM-Dienstkennung"] = outgoing.dienstkennung
    head["X-KIM-Sendersystem"] = sender_system()
    head["X-KIM-Support"] = support_address()
    head["X-TI-User-Agent"] = ti_user_agent()
    head["MIME-Version"] = "1.0"

    text = _text_part(outgoing.body)
    if not attachments:
        for name, value in text.items():
            head[name] = value
        yield _headers_bytes(head) + b"\r\n" + _body_bytes(text)
        return

    # The headers name the boundary and say whether the body is 8bit: forwarded originals are looked at first.
    boundary = f"=_kim_{uuid.uuid4().hex}"
    eight_bit_originals: dict[int, bool] = {}
    for attachment in attachments:
        if attachment.is_forwarded_original:
            is_8bit, holds_boundary = _scan_original(attachment.sha256, boundary.encode())
            eight_bit_originals[attachment.pk] = is_8bit
            if holds_boundary:  # a UUID boundary inside the original: practically never
                boundary = f"=_kim_{uuid.uuid4().hex}_{uuid.uuid4().hex}"
    head["Content-Type"] = f'multipart/mixed; boundary="{boundary}"'
    if any(eight_bit_originals.values()):
        head["Content-Transfer-Encoding"] = "8bit"
    delimiter = b"--" + boundary.encode() + b"\r\n"
    yield _headers_bytes(head) + b"\r\n" + b"This is a multi-part message in MIME format.\r\n"
    yield delimiter + _part_bytes(text) + b"\r\n"
    for attachment in attachments:
        yield delimiter
        if attachment.is_forwarded_original:
            yield from _rfc822_part_chunks(
                attachment.sha256, attachment.filename, eight_bit=eight_bit_originals[attachment.pk]
            )
        else:
            yield from _file_part_chunks(
                attachment.sha256, attachment_filename(attachment.filename), attachment.content_type
            )
        yield b"\r\n"
    yield b"--" + boundary.encode() + b"--\r\n"


def _text_part(body: str) -> EmailMessage:
    part = EmailMessage(policy=SMTP)
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    part.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    del part["MIME-Version"]
    return part


def _file_part(data: bytes, filename: str, content_type: str) -> EmailMessage:
    part = EmailMessage(policy=SMTP)
    maintype, _slash, subtype = content_type.partition("/")
    part.set_content(
        data, maintype=maintype, subtype=subtype, cte="base64", disposition="attachment", filename=filename
    )
    del part["MIME-Version"]
    return part


# The email package's base64 body: lines of 76 characters, each the encoding of 57 bytes (policy SMTP's 78 // 4 * 3).
_BASE64_LINE_BYTES = 57
# Read in pieces of whole lines, a quarter MiB: encoding one takes a few times that in line-sized pieces.
_BASE64_READ_BYTES = _BASE64_LINE_BYTES * 4096


def _file_part_chunks(sha256: str, filename: str, content_type: str) -> Iterator[bytes]:
    """What ``_part_bytes(_file_part(data, …))`` gives, read from the blob and encoded a chunk at a time."""
    yield _headers_bytes(_file_part(b"", filename, content_type)) + b"\r\n"
    yield from base64_lines(blob_chunks(sha256, chunk_size=_BASE64_READ_BYTES))


def base64_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Base64 in CRLF-ended lines of 76 characters, as the email package writes an attachment, whatever the
    chunks' sizes: each line is the encoding of 57 bytes, a chunk's remainder waits for the next."""
    carry = b""
    for chunk in chunks:
        data = carry + chunk if carry else chunk
        whole = len(data) - len(data) % _BASE64_LINE_BYTES
        carry = data[whole:]
        if whole:
            yield base64.encodebytes(data[:whole]).replace(b"\n", b"\r\n")
    if carry:
        yield base64.encodebytes(carry).replace(b"\n", b"\r\n")


def _rfc822_head(filename: str, *, eight_bit: bool) -> bytes:
    header = EmailMessage(policy=SMTP)
    header["Content-Type"] = "message/rfc822"
    header.add_header("Content-Disposition", "inline", filename=filename)
    if eight_bit:
        header["Content-Transfer-Encoding"] = "8bit"
    return _headers_bytes(header) + b"\r\n"


def _scan_original(sha256: str, boundary: bytes) -> tuple[bool, bool]:
    """Whether a forwarded original has 8-bit bytes, and whether *boundary* occurs in it (read, never held)."""
    eight_bit = holds_boundary = False
    keep = len(boundary) - 1
    tail = b""
    for chunk in blob_chunks(sha256):
        eight_bit = eight_bit or not chunk.isascii()
        window = tail + chunk
        holds_boundary = holds_boundary or boundary in window
        tail = window[-keep:] if keep else b""
    return eight_bit, holds_boundary


def _rfc822_part_chunks(sha256: str, filename: str, *, eight_bit: bool) -> Iterator[bytes]:
    """The original unchanged (line ends made CRLF, as SMTP carries them anyway): message/rfc822, inline."""
    yield _rfc822_head(filename, eight_bit=eight_bit)
    yield from crlf_lines(blob_chunks(sha256))


# A lone CR is left alone: the stored message (its checksum, the SIZE announced) stays byte for byte what the
# whole-message build gave. SMTP DATA normalises it on the wire (mailbox.clients.smtp.dot_stuffed, a CR alone
# there is a line end, RFC 5321 §2.3.8), which is why the two writers differ and are not one.
_LINE_END = re.compile(rb"\r?\n")


def crlf_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Every LF (or CRLF) made CRLF, a bare CR left alone, a CRLF added at the end if missing; the same bytes,
    however the input is cut into chunks (a CR at a chunk's end waits for the next chunk's first byte).

    A chunk with CRLF line ends only (as a received mail is stored) is passed on as it is; others are rewritten
    a slice at a time, so memory stays a few times a slice, not a chunk."""
    pending_cr = False
    ends_crlf = False
    for chunk in chunks:
        if not pending_cr and not chunk.endswith(b"\r") and chunk.count(b"\n") == chunk.count(b"\r\n"):
            if chunk:
                ends_crlf = chunk.endswith(b"\n")
                yield chunk
            continue
        for start in range(0, len(chunk), _SLICE_BYTES):
            piece = chunk[start : start + _SLICE_BYTES]
            if pending_cr:
                piece = b"\r" + piece
            pending_cr = piece.endswith(b"\r")
            if pending_cr:
                piece = piece[:-1]
            if piece:
                out = _LINE_END.sub(b"\r\n", piece)
                ends_crlf = out.endswith(b"\r\n")
                yield out
    if pending_cr:
        yield b"\r"
        ends_crlf = False
    if not ends_crlf:
        yield b"\r\n"


_SLICE_BYTES = 64 * 1024


_ID_HEADERS = ("message-id", "in-reply-to", "references")


def _headers_bytes(message: EmailMessage) -> bytes:
    return b"".join(
        _id_header(name, value) if name.lower() in _ID_HEADERS else SMTP.fold_binary(name, value)
        for name, value in message.items()
    )


def _id_header(name: str, value: str) -> bytes:
    # Message ids are never folded inside or before an id (some parsers keep the folding blank in the value);
    # References get one id per line.
    ids = _MSGID.findall(value) or [value.strip()]
    return (f"{name}: " + "\r\n ".join(ids) + "\r\n").encode("ascii", "replace")


def _body_bytes(part: EmailMessage) -> bytes:
    payload = part.get_payload()
    assert isinstance(payload, str)
    return re.sub(r"\r?\n", "\r\n", payload).encode("ascii")


def _part_bytes(part: EmailMessage) -> bytes:
    return _headers_bytes(part) + b"\r\n" + _body_bytes(part)


def acknowledgement_dienstkennung(dienstkennung: str) -> str:
    """``Arztbrief;VHitG-Versand;V1.2`` → ``Arztbrief;Eingangsbestaetigung;V1.2`` (same application and version)."""
    application, _type, version = split_dienstkennung(dienstkennung)
    return f"{application};{ACKNOWLEDGEMENT_TYPE};{version or 'V1.0'}"


def is_arztbrief(dienstkennung: str) -> bool:
    application, message_type, _version = split_dienstkennung(dienstkennung)
    return application.casefold() == "arztbrief" and message_type.casefold() == "vhitg-versand"
