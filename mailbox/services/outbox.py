"""The outbox: queue a draft (stored first), deliver it over SMTP to the CM, retry, and never send twice.

The rule (docs/sending.md): a message is queued with its final bytes and Message-ID in the blob store
before any task runs. A delivery attempt is a row committed before the first SMTP command, and its
``final_dot_at`` is committed before the end-of-data sequence goes out. Until that sequence reaches the
CM the message cannot have been delivered, so an attempt without ``final_dot_at`` that died is simply
repeated; an attempt with it and without a recorded answer may have been delivered and is never
repeated by the machine: the message becomes "Zustellung ungewiss" until a DSN reconciles it or a
person decides.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Collection
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from directory.selectors import directory_entries_for_addresses
from kimportal.errors import Conflict, NotAllowed
from kimportal.jobs import enqueue_on_commit
from kimportal.texts import N_, StoredText, join
from mailbox import events
from mailbox.clients.smtp import MessageSource, SmtpOutcomeUnknown, SmtpRefused, smtp_send
from mailbox.clients.tls import CmAuthFailed, CmError, CmTlsError
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import DeliveryAttempt, KimAccount, Message, OutgoingMessage, OutgoingRecipient
from mailbox.permissions import Action, can, require, user_role
from mailbox.services.accounts import account_endpoint, cm_error_text
from mailbox.services.audit import audit_record
from mailbox.services.compose import (
    DraftInvalid,
    OutgoingData,
    acknowledgement_dienstkennung,
    draft_problems,
    estimated_size,
    is_arztbrief,
    mime_chunks,
    new_message_id,
    one_line,
    references_for,
    reply_subject,
    require_sender,
)
from mailbox.services.preflight import PreflightFailed, PreflightProblem, outgoing_preflight, recipient_problems
from mailbox.storage import BlobError, blob_chunks, blob_put_chunks

log = logging.getLogger(__name__)

DELIVER_TASK = "mailbox.tasks.outgoing_deliver"
# Temporary failures wait 30 s, 1, 2, 4 … minutes, at most an hour; after MAX_ATTEMPTS the message
# fails and becomes a person's job (it stays in the outbox, "Erneut senden" queues it again).
RETRY_FIRST_SECONDS = 30
RETRY_MAX_SECONDS = 3600
MAX_ATTEMPTS = 10

# gematik's texts (docs/Primaersystem.adoc "Informieren über gescheiterten Nachrichtenversand", FAQ). Reasons are
# stored as N_ texts (kimportal.texts): translated when shown, in the reader's language.
TEXT_NO_RECIPIENT = (
    "Die Nachricht konnte nicht gesendet werden, weil für keinen Empfänger gültige Verschlüsselungszertifikate "
    "ermittelt werden konnten."
)
TEXT_PARTIAL = (
    "Die Nachricht wurde nur an einen Teil der gewünschten Adressaten versendet, denn es konnten nicht für alle "
    "Empfänger gültige Verschlüsselungszertifikate ermittelt werden."
)


def retry_first_seconds() -> float:
    return float(getattr(settings, "KIMPORTAL_SEND_RETRY_SECONDS", RETRY_FIRST_SECONDS))


def lease_seconds(account: KimAccount | None = None) -> float:
    """Long enough for a whole SMTP dialogue: connect, each command and the end of DATA may each take the timeout."""
    timeout = account.timeout_seconds if account is not None else 30.0
    return float(getattr(settings, "KIMPORTAL_SEND_LEASE_SECONDS", 0)) or timeout * 6 + 30


def _changed(outgoing: OutgoingMessage | int, mailbox_id: int) -> None:
    pk = outgoing if isinstance(outgoing, int) else outgoing.pk
    events.broadcast_outgoing_changed(mailbox_id=mailbox_id, outgoing_id=pk)


def _locked(outgoing: OutgoingMessage | int) -> OutgoingMessage:
    # The message's row only, not its mailbox's: switching a mailbox off locks the mailbox and then its queued
    # messages (to hold them); a path that locked a message and then waited for its mailbox would deadlock with it.
    pk = outgoing if isinstance(outgoing, int) else outgoing.pk
    return OutgoingMessage.objects.select_for_update(of=("self",)).select_related("mailbox").get(pk=pk)


# --- queue -----------------------------------------------------------------------------------------------


class AttachmentsChanged(Conflict):
    """The draft's files are not the ones the sending page showed (added or removed in another tab meanwhile)."""


def outgoing_send(
    *, user: Any, draft: OutgoingMessage, version: int | None, attachments: Collection[int] | None = None
) -> OutgoingMessage:
    """Check the draft against the directory, then queue it; the delivery task starts after the commit.

    *attachments*, when given, are the files the sending page showed: any other set is AttachmentsChanged, so
    that nothing is sent the user did not see (nor without a file they saw).

    Raises PreflightFailed (problems per recipient), DirectoryUnreachable, Conflict (AttachmentsChanged) or
    NotAllowed; in every case nothing was queued.
    """
    draft = OutgoingMessage.objects.select_related("mailbox").get(pk=draft.pk)
    require_sender(user, draft.mailbox_id)
    if draft.state != OutgoingMessage.State.DRAFT:
        raise Conflict(_("Die Nachricht wurde bereits gesendet."), fresh=draft)
    # The directory is asked outside the transaction (network I/O); the version check below makes sure
    # the draft that was checked is the draft that is queued.
    _require_attachments(draft, attachments)  # at once, not only after the directory answered
    problems = outgoing_preflight(user=user, draft=draft)
    if problems:
        raise PreflightFailed(problems)
    return _queue(
        user=user,
        outgoing_id=draft.pk,
        version=draft.version if version is None else version,
        attachments=attachments,
    )


def _require_attachments(outgoing: OutgoingMessage, attachments: Collection[int] | None) -> None:
    if attachments is not None and set(outgoing.attachments.values_list("pk", flat=True)) != set(attachments):
        raise AttachmentsChanged(
            _(
                "Die Anhänge des Entwurfs wurden inzwischen geändert (in einem anderen Fenster?). Die Liste der "
                "Anhänge zeigt jetzt, was gesendet würde; bitte prüfen und erneut senden."
            ),
            fresh=outgoing,
        )


@transaction.atomic
def _queue(*, user: Any, outgoing_id: int, version: int, attachments: Collection[int] | None = None) -> OutgoingMessage:
    outgoing = _locked(outgoing_id)
    if outgoing.state != OutgoingMessage.State.DRAFT:
        raise Conflict(_("Die Nachricht wurde bereits gesendet."), fresh=outgoing)
    # Before the version: a file added while the directory was asked is named as such, not as a text conflict.
    _require_attachments(outgoing, attachments)
    if outgoing.version != version:
        raise Conflict(_("Der Entwurf wurde inzwischen geändert. Bitte prüfen und erneut senden."), fresh=outgoing)
    now = timezone.now()
    message_id = new_message_id()
    try:
        # Written piece by piece into the store (a large attachment is never held whole); they reach the disk
        # before the row names them: a retry sends exactly these.
        sha, size = blob_put_chunks(mime_chunks(outgoing, message_id=message_id, date=now))
    except BlobError as exc:
        raise DraftInvalid(
            _("Ein Anhang dieses Entwurfs ist nicht mehr vorhanden (gelöscht?). Bitte entfernen und neu anfügen.")
        ) from exc
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=OutgoingMessage.State.QUEUED,
        message_id=message_id,
        raw_sha256=sha,
        size=size,
        queued_at=now,
        next_try_at=now,
        last_error="",
        version=F("version") + 1,
        author=outgoing.author or user,
    )
    OutgoingRecipient.objects.filter(outgoing=outgoing).delete()
    OutgoingRecipient.objects.bulk_create(
        [OutgoingRecipient(outgoing=outgoing, address=a, field=OutgoingRecipient.Field.TO) for a in outgoing.to]
        + [
            OutgoingRecipient(outgoing=outgoing, address=a, field=OutgoingRecipient.Field.CC)
            for a in outgoing.cc
            if a not in outgoing.to
        ]
    )
    _record_contacts(outgoing, user)
    audit_record(
        actor=user,
        action="outgoing.queued",
        mailbox=outgoing.mailbox,
        message=outgoing.in_reply_to,
        outgoing_id=outgoing.pk,
        message_id=message_id,
        recipients=outgoing.recipients,
        dienstkennung=outgoing.dienstkennung,
        subject=outgoing.subject,
        kind=outgoing.kind,
    )
    enqueue_on_commit(DELIVER_TASK, outgoing.pk)
    _changed(outgoing, outgoing.mailbox_id)
    return OutgoingMessage.objects.select_related("mailbox").get(pk=outgoing.pk)


def _record_contacts(outgoing: OutgoingMessage, user: Any) -> None:
    # "Frequent contacts" for the recipient picker; a directory hiccup must not stop a send.
    from directory.services import contact_record_use

    for address in outgoing.recipients:
        try:
            with transaction.atomic():
                contact_record_use(address=address, user=user)
        except Exception:
            log.exception("recording the use of %s failed", address)


# --- deliver ---------------------------------------------------------------------------------------------


class LeaseLost(Exception):
    """This worker no longer holds the message's delivery lease."""


class DeliverInTransaction(RuntimeError):
    """Delivery inside a transaction: the attempt markers would not be committed before the SMTP dialogue."""


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def outgoing_deliver(*, outgoing_id: int) -> str:
    """Deliver a queued message once; returns its state afterwards. Safe to call any number of times."""
    if connection.in_atomic_block:
        raise DeliverInTransaction("outgoing_deliver must run outside a transaction")
    outgoing = OutgoingMessage.objects.select_related("mailbox").filter(pk=outgoing_id).first()
    if outgoing is None:
        return ""
    if outgoing.state == OutgoingMessage.State.SENDING:
        outgoing_recover(outgoing_id=outgoing_id)
    account = KimAccount.objects.select_related("mailbox").filter(mailbox_id=outgoing.mailbox_id).first()
    token = secrets.token_hex(16)
    now = timezone.now()
    # The lease: one conditional UPDATE decides which worker sends (a second task for the same id, a beat
    # dispatch racing a retry); the state "sending" is visible at once. A switched-off mailbox or account is
    # part of the condition, so a message is never taken after the switch-off committed.
    won = (
        OutgoingMessage.objects.filter(pk=outgoing_id, state=OutgoingMessage.State.QUEUED)
        .filter(Q(next_try_at__isnull=True) | Q(next_try_at__lte=now))
        .filter(_sendable_q())
        .update(
            state=OutgoingMessage.State.SENDING,
            lease_token=token,
            lease_until=now + timedelta(seconds=lease_seconds(account)),
            version=F("version") + 1,
        )
    )
    if not won:
        if outgoing_hold(outgoing_id=outgoing_id):
            return OutgoingMessage.State.HELD
        return OutgoingMessage.objects.filter(pk=outgoing_id).values_list("state", flat=True).first() or ""
    number = DeliveryAttempt.objects.filter(outgoing_id=outgoing_id).count() + 1
    attempt = DeliveryAttempt.objects.create(outgoing_id=outgoing_id, number=number, worker=_worker_name())
    _broadcast_now(outgoing)
    if account is None:
        return _finish_permanent(
            outgoing_id, token, attempt, None, N_("Für dieses Postfach ist kein KIM-Konto eingerichtet.")
        )
    where = f"{account.cm_host}:{account.smtp_port}"
    keeper = _LeaseKeeper(outgoing_id, token, lease_seconds(account))
    keeper.start()
    try:
        return _deliver(outgoing, account, token, attempt, where)
    finally:
        keeper.stop()


# --- switched off: held, not sent, not lost --------------------------------------------------------------


def _sendable_q() -> Q:
    """The message's mailbox is on, and so is its KIM account if it has one (no account fails on its own)."""
    switched_off = KimAccount.objects.filter(mailbox_id=OuterRef("mailbox_id"), is_active=False)
    return Q(mailbox__is_active=True) & ~Q(Exists(switched_off))


def _held_reason(mailbox: Any) -> StoredText:
    if not mailbox.is_active:
        return N_(
            "Zurückgehalten: Das Postfach %(address)s ist abgeschaltet. Die Nachricht wird nicht gesendet und bleibt "
            "erhalten; sie geht hinaus, sobald das Postfach wieder aktiv ist."
        ) % {"address": mailbox.address}
    return N_(
        "Zurückgehalten: Das KIM-Konto des Postfachs %(address)s ist abgeschaltet. Die Nachricht wird nicht gesendet "
        "und bleibt erhalten; sie geht hinaus, sobald das Konto wieder aktiv ist, oder kann als Entwurf "
        "zurückgeholt werden."
    ) % {"address": mailbox.address}


@transaction.atomic
def outgoing_hold(*, outgoing_id: int) -> bool:
    """Hold a queued message whose mailbox or KIM account is switched off; True if it is held now."""
    outgoing = _locked(outgoing_id)
    if outgoing.state == OutgoingMessage.State.HELD:
        return True
    if outgoing.state != OutgoingMessage.State.QUEUED:
        return False
    if OutgoingMessage.objects.filter(pk=outgoing_id).filter(_sendable_q()).exists():
        return False
    text = _held_reason(outgoing.mailbox)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=OutgoingMessage.State.HELD, next_try_at=None, last_error=text.stored, version=F("version") + 1
    )
    _audit(outgoing, "outgoing.held", reason=text.stored)
    _changed(outgoing, outgoing.mailbox_id)
    return True


def outgoing_hold_mailbox(*, mailbox_id: int) -> int:
    """A mailbox (or its account) was switched off: its queued messages are held at once, so the outbox says so
    before the next delivery try would. Inside the caller's transaction; returns how many."""
    ids = list(
        OutgoingMessage.objects.filter(mailbox_id=mailbox_id, state=OutgoingMessage.State.QUEUED).values_list(
            "pk", flat=True
        )
    )
    return sum(1 for pk in ids if outgoing_hold(outgoing_id=pk))


@transaction.atomic
def outgoing_release_held(*, mailbox_id: int | None = None) -> list[int]:
    """Held messages whose mailbox and account are on again are queued, due at once (the beat calls this every
    tick, so a switch in any place — the manage page, the account form, the admin — is noticed)."""
    held = (
        OutgoingMessage.objects.select_for_update(of=("self",))
        .filter(state=OutgoingMessage.State.HELD)
        .filter(_sendable_q())
    )
    if mailbox_id is not None:
        held = held.filter(mailbox_id=mailbox_id)
    released = list(held.select_related("mailbox").order_by("pk"))
    now = timezone.now()
    for outgoing in released:
        OutgoingMessage.objects.filter(pk=outgoing.pk).update(
            state=OutgoingMessage.State.QUEUED, next_try_at=now, last_error="", version=F("version") + 1
        )
        _audit(outgoing, "outgoing.released_held")
        enqueue_on_commit(DELIVER_TASK, outgoing.pk)
        _changed(outgoing, outgoing.mailbox_id)
    return [o.pk for o in released]


@transaction.atomic
def outgoing_withdraw(*, user: Any, outgoing: OutgoingMessage, version: int | None = None) -> OutgoingMessage:
    """A held message back to a draft of its author (nothing of it went out): it can be changed, sent later or
    discarded. A message some recipients already got stays where it is: sending it again would be a duplicate."""
    locked = _guarded(user, outgoing, version)
    if locked.state != OutgoingMessage.State.HELD:
        raise Conflict(
            _("Nur zurückgehaltene Nachrichten können als Entwurf zurückgeholt werden (Zustand: %(state)s).")
            % {"state": locked.get_state_display()},
            fresh=locked,
        )
    # Only a recipient the CM took counts (sent, delivered, delayed); one it refused for good (5xx at RCPT TO) did
    # not get it, and a new send may try again.
    if OutgoingRecipient.objects.filter(
        outgoing=locked, state__in=["sent", "delivered", "delayed", "uncertain"]
    ).exists():
        raise Conflict(
            _("Die Nachricht ging bereits an einen Teil der Empfänger und kann nicht mehr zurückgeholt werden."),
            fresh=locked,
        )
    # Drafts are their author's only: an author who can no longer work the mailbox (left it while the message was
    # held) would leave a draft nobody sees. Then it is the draft of the person who took it back.
    author = locked.author
    details: dict[str, Any] = {}
    if author is None or not can(user_role(author, locked.mailbox_id), Action.PROCESS):
        author = user
        if locked.author_id is not None:
            details["former_author"] = locked.author_id
    OutgoingRecipient.objects.filter(outgoing=locked).delete()
    OutgoingMessage.objects.filter(pk=locked.pk).update(
        state=OutgoingMessage.State.DRAFT,
        message_id="",
        raw_sha256="",
        size=0,
        queued_at=None,
        next_try_at=None,
        last_error="",
        author=author,
        version=F("version") + 1,
    )
    audit_record(
        actor=user,
        action="outgoing.withdrawn",
        mailbox=locked.mailbox,
        outgoing_id=locked.pk,
        message_id=locked.message_id,
        **details,
    )
    _changed(locked, locked.mailbox_id)
    return OutgoingMessage.objects.get(pk=locked.pk)


class _LeaseKeeper(threading.Thread):
    """Renews the delivery lease while the SMTP dialogue runs (a 700 MiB mail takes longer than any fixed
    lease); only a dead worker's lease runs out. On its own database connection."""

    def __init__(self, outgoing_id: int, token: str, seconds: float) -> None:
        super().__init__(daemon=True, name=f"send-lease-{outgoing_id}")
        self.outgoing_id, self.token, self.seconds = outgoing_id, token, seconds
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.seconds / 3):
                try:
                    OutgoingMessage.objects.filter(pk=self.outgoing_id, lease_token=self.token).update(
                        lease_until=timezone.now() + timedelta(seconds=self.seconds)
                    )
                except DatabaseError:
                    log.exception("renewing the delivery lease of %s failed", self.outgoing_id)
        finally:
            connection.close()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)


def _deliver(outgoing: OutgoingMessage, account: KimAccount, token: str, attempt: DeliveryAttempt, where: str) -> str:
    outgoing_id = outgoing.pk
    try:
        endpoint = account_endpoint(account, "smtp")
        source = _stored_message(outgoing.raw_sha256)
        # Only those still waiting: a recipient the CM accepted in an earlier attempt (the others were refused
        # for the moment) must not get a second copy.
        recipients = list(
            OutgoingRecipient.objects.filter(outgoing_id=outgoing_id, state=OutgoingRecipient.State.QUEUED)
            .order_by("id")
            .values_list("address", flat=True)
        )
        if not recipients:
            return _finish_sent(outgoing_id, token, attempt, 250, "", {})

        def before_final_dot() -> None:
            # Still ours? A worker that lost its lease (its renewals failed, another took over) stops here,
            # before the CM can have the message: the CM drops an unfinished DATA.
            held = OutgoingMessage.objects.filter(
                pk=outgoing_id, lease_token=token, state=OutgoingMessage.State.SENDING
            ).update(lease_until=timezone.now() + timedelta(seconds=lease_seconds(account)))
            if not held:
                raise LeaseLost(f"outgoing {outgoing_id}: delivery lease lost before the end of DATA")
            # Committed (autocommit) before the dot leaves: from here on a lost answer means "ungewiss".
            DeliveryAttempt.objects.filter(pk=attempt.pk).update(final_dot_at=timezone.now())

        result = smtp_send(
            endpoint,
            mail_from=account.mailbox.address,
            recipients=recipients,
            raw=source,
            notify="SUCCESS,FAILURE,DELAY" if outgoing.request_dsn else None,
            before_final_dot=before_final_dot,
        )
    except SmtpOutcomeUnknown as exc:
        return _finish_uncertain(
            outgoing_id,
            token,
            attempt,
            N_(
                "Die Nachricht wurde vollständig an das Clientmodul %(where)s übergeben, aber dessen Antwort ist "
                "nicht angekommen (%(detail)s). Ob sie versendet wurde, ist ungewiss; sie wird nicht automatisch "
                "erneut gesendet. Eine Zustellbestätigung klärt es, sonst bitte entscheiden."
            )
            % {"where": where, "detail": exc},
        )
    except LeaseLost as exc:
        log.warning("%s", exc)
        _end_attempt(
            attempt,
            DeliveryAttempt.Outcome.ABORTED,
            None,
            "",
            N_("Abgebrochen: ein anderer Sendeprozess hat übernommen."),
        )
        return OutgoingMessage.objects.filter(pk=outgoing_id).values_list("state", flat=True).first() or ""
    except SmtpRefused as exc:
        return _finish_refused(outgoing_id, token, attempt, exc, where)
    except (CmError, CredentialDecryptionError) as exc:
        text = cm_error_text(exc, host=account.cm_host, port=account.smtp_port)
        # A wrong password, pin or key does not heal by itself, but an administrator fixes it: keep retrying.
        needs_admin = isinstance(exc, CmAuthFailed | CmTlsError | CredentialDecryptionError)
        return _finish_temporary(outgoing_id, token, attempt, None, text, needs_admin=needs_admin)
    except Exception as exc:
        log.exception("delivering outgoing %s failed unexpectedly", outgoing_id)
        text = N_("Interner Fehler beim Senden (%(kind)s). Details im Server-Log.") % {"kind": exc.__class__.__name__}
        if DeliveryAttempt.objects.filter(pk=attempt.pk, final_dot_at__isnull=False).exists():
            return _finish_uncertain(outgoing_id, token, attempt, text)
        return _finish_temporary(outgoing_id, token, attempt, None, text)
    return _finish_sent(outgoing_id, token, attempt, result.code, result.text, result.refused)


def _stored_message(sha256: str) -> MessageSource:
    """The queued bytes as DATA reads them, a chunk at a time. Read once first: checked against their name before
    anything is sent (a damaged blob sends nothing), and measured for MAIL FROM (SIZE=, BODY=8BITMIME). DATA
    checks them again as it reads and stops before the end of DATA if they no longer match."""
    size, eight_bit = 0, False
    for chunk in blob_chunks(sha256):
        size += len(chunk)
        eight_bit = eight_bit or not chunk.isascii()
    return MessageSource(size, eight_bit, lambda: blob_chunks(sha256))


def _broadcast_now(outgoing: OutgoingMessage) -> None:
    with transaction.atomic():
        _changed(outgoing, outgoing.mailbox_id)


def _end_attempt(attempt: DeliveryAttempt, outcome: str, code: int | None, text: str, error: StoredText | None) -> None:
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        outcome=outcome,
        smtp_code=code,
        smtp_text=text[:2000],
        error=error.stored if error is not None else "",
        ended_at=timezone.now(),
    )


@transaction.atomic
def _finish_sent(
    outgoing_id: int, token: str, attempt: DeliveryAttempt, code: int, text: str, refused: dict[str, str]
) -> str:
    outgoing = _locked(outgoing_id)
    _end_attempt(attempt, DeliveryAttempt.Outcome.SENT, code, text, None)
    if outgoing.lease_token != token and outgoing.state != OutgoingMessage.State.UNCERTAIN:
        # Our lease ran out and the message moved on; the CM's answer is recorded on the attempt only.
        log.warning("outgoing %s: answer after the lease ended (state %s)", outgoing_id, outgoing.state)
        return outgoing.state
    now = timezone.now()
    OutgoingRecipient.objects.filter(outgoing=outgoing, state__in=["queued", "uncertain"]).exclude(
        address__in=list(refused)
    ).update(state=OutgoingRecipient.State.SENT, updated_at=now)
    temporary = _refusals_settle(outgoing, refused, now)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(sent_at=now)
    _audit(
        outgoing,
        "outgoing.sent",
        attempt=attempt.number,
        reply=f"{code} {text}"[:500],
        refused=sorted(refused),
    )
    if temporary:
        return _recipients_defer(outgoing, attempt, temporary)
    return _sent_settle(outgoing)


def _refusals_settle(outgoing: OutgoingMessage, refused: dict[str, str], now: Any) -> dict[str, str]:
    """Recipients refused at RCPT TO: a permanent (5xx) refusal fails the recipient at once; a temporary one (4xx)
    leaves it queued for the next attempt. Returns the temporary ones."""
    temporary = {a: r for a, r in refused.items() if r.startswith("4")}
    for address, reply in refused.items():
        if address in temporary:
            continue
        OutgoingRecipient.objects.filter(outgoing=outgoing, address=address).update(
            state=OutgoingRecipient.State.FAILED,
            reason=(N_("Vom Clientmodul abgelehnt: %(reply)s") % {"reply": reply}).stored,
            status_code=reply.split(" ", 1)[0],
            updated_at=now,
        )
    return temporary


def _sent_settle(outgoing: OutgoingMessage) -> str:
    """The worker is done with a message some recipients took: "versendet" (gematik's text if not all did)."""
    partial = OutgoingRecipient.objects.filter(outgoing=outgoing, state=OutgoingRecipient.State.FAILED).exists()
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=OutgoingMessage.State.SENT,
        lease_token="",
        lease_until=None,
        next_try_at=None,
        last_error=N_(TEXT_PARTIAL).stored if partial else "",
        version=F("version") + 1,
    )
    _changed(outgoing, outgoing.mailbox_id)
    return OutgoingMessage.State.SENT


def _retry_delay(try_number: int) -> float:
    return float(min(retry_first_seconds() * 2 ** (try_number - 1), RETRY_MAX_SECONDS))


def _try_in_round(outgoing: OutgoingMessage, attempt: DeliveryAttempt) -> int:
    """The attempt's place in its round: counted from the latest "Erneut senden" (tries_before), so that a person
    sending a failed message again gets the whole backoff and all MAX_ATTEMPTS tries, not one."""
    return attempt.number - outgoing.tries_before


def _recipients_defer(outgoing: OutgoingMessage, attempt: DeliveryAttempt, temporary: dict[str, str]) -> str:
    """Recipients the CM refused for the moment (4xx at RCPT TO) get the message later, with the backoff and the
    limit of any temporary failure; those it accepted are never sent it again (only queued recipients go out)."""
    now = timezone.now()
    names = ", ".join(sorted(temporary))
    replies = "; ".join(sorted(set(temporary.values())))
    tries = _try_in_round(outgoing, attempt)
    if tries >= MAX_ATTEMPTS:
        reason = N_(
            "Vom Clientmodul wiederholt vorübergehend abgelehnt (%(reply)s). Nach %(n)d Versuchen aufgegeben."
        ) % {"reply": replies, "n": tries}
        for address, reply in temporary.items():
            OutgoingRecipient.objects.filter(outgoing=outgoing, address=address).update(
                state=OutgoingRecipient.State.FAILED,
                reason=(
                    N_(
                        "Vom Clientmodul wiederholt vorübergehend abgelehnt (%(reply)s). Nach %(n)d Versuchen "
                        "aufgegeben."
                    )
                    % {"reply": reply, "n": tries}
                ).stored,
                status_code=reply.split(" ", 1)[0],
                updated_at=now,
            )
        if OutgoingRecipient.objects.filter(outgoing=outgoing, state__in=["sent", "delivered", "delayed"]).exists():
            return _sent_settle(outgoing)
        text = N_("Die Nachricht wurde an keinen Empfänger gesendet: %(names)s – %(reason)s") % {
            "names": names,
            "reason": reason,
        }
        return _fail(outgoing, attempt, int(replies[:3]) if replies[:3].isdigit() else None, text)
    for address, reply in temporary.items():
        OutgoingRecipient.objects.filter(outgoing=outgoing, address=address).update(
            reason=(N_("Vom Clientmodul vorübergehend abgelehnt: %(reply)s") % {"reply": reply}).stored,
            status_code=reply.split(" ", 1)[0],
            updated_at=now,
        )
    next_try = now + timedelta(seconds=_retry_delay(tries))
    text = N_("Vorübergehend abgelehnt für %(names)s (%(reply)s); nur diese Empfänger werden erneut versucht.") % {
        "names": names,
        "reply": replies,
    }
    suffix = N_("Nächster Versuch um %(time)s.") % {"time": timezone.localtime(next_try).strftime("%H:%M:%S")}
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=OutgoingMessage.State.QUEUED,
        lease_token="",
        lease_until=None,
        next_try_at=next_try,
        last_error=join(text, suffix).stored,
        version=F("version") + 1,
    )
    _audit(
        outgoing,
        "outgoing.attempt_failed",
        attempt=attempt.number,
        reason=text.stored,
        recipients=sorted(temporary),
        next_try_at=next_try.isoformat(),
        needs_admin=False,
    )
    enqueue_on_commit(DELIVER_TASK, outgoing.pk, eta=next_try)
    _changed(outgoing, outgoing.mailbox_id)
    return OutgoingMessage.State.QUEUED


@transaction.atomic
def _finish_rcpt_refused(outgoing_id: int, token: str, attempt: DeliveryAttempt, exc: SmtpRefused, where: str) -> str:
    """Every recipient of this attempt was refused at RCPT TO (nothing was sent now): each by its own reply."""
    outgoing = _locked(outgoing_id)
    temporary = {a: r for a, r in exc.refused.items() if r.startswith("4")}
    outcome = DeliveryAttempt.Outcome.TEMPORARY if temporary else DeliveryAttempt.Outcome.PERMANENT
    text = N_("%(where)s hat die Empfänger abgelehnt (%(reply)s).") % {"where": where, "reply": exc}
    _end_attempt(attempt, outcome, exc.code, str(exc), text)
    if outgoing.lease_token != token:
        return outgoing.state
    _refusals_settle(outgoing, exc.refused, timezone.now())
    if temporary:
        return _recipients_defer(outgoing, attempt, temporary)
    if OutgoingRecipient.objects.filter(outgoing=outgoing, state__in=["sent", "delivered", "delayed"]).exists():
        return _sent_settle(outgoing)
    text = N_("%(where)s hat die Nachricht dauerhaft abgelehnt (%(reply)s).") % {"where": where, "reply": exc}
    return _fail(outgoing, attempt, exc.code, text)


@transaction.atomic
def _finish_uncertain(outgoing_id: int, token: str, attempt: DeliveryAttempt, text: StoredText) -> str:
    outgoing = _locked(outgoing_id)
    _end_attempt(attempt, DeliveryAttempt.Outcome.UNCERTAIN, None, "", text)
    if outgoing.lease_token != token:
        return outgoing.state
    _mark_uncertain(outgoing, text, attempt.number)
    return OutgoingMessage.State.UNCERTAIN


def _mark_uncertain(outgoing: OutgoingMessage, text: StoredText, attempt_number: int) -> None:
    _settle(
        outgoing,
        state=OutgoingMessage.State.UNCERTAIN,
        recipients=OutgoingRecipient.objects.filter(outgoing=outgoing, state="queued"),
        recipient_fields={"state": OutgoingRecipient.State.UNCERTAIN},
        text=text,
        action="outgoing.uncertain",
        attempt=attempt_number,
    )


def _audit(outgoing: OutgoingMessage, action: str, **details: Any) -> None:
    """An event of the worker's (no actor) about this sent message."""
    audit_record(
        actor=None,
        action=action,
        mailbox=outgoing.mailbox,
        outgoing_id=outgoing.pk,
        message_id=outgoing.message_id,
        **details,
    )


def _settle(
    outgoing: OutgoingMessage,
    *,
    state: str,
    recipients: QuerySet[OutgoingRecipient],
    recipient_fields: dict[str, Any],
    text: StoredText,
    action: str,
    **details: Any,
) -> None:
    """The end of the worker's part (failed, uncertain): recipients and message settled, the lease given up, the
    version moved (pages holding the old one refresh), audited, announced."""
    now = timezone.now()
    recipients.update(**recipient_fields, updated_at=now)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=state,
        lease_token="",
        lease_until=None,
        next_try_at=None,
        last_error=text.stored,
        version=F("version") + 1,
    )
    _audit(outgoing, action, reason=text.stored, **details)
    _changed(outgoing, outgoing.mailbox_id)


def _finish_refused(outgoing_id: int, token: str, attempt: DeliveryAttempt, exc: SmtpRefused, where: str) -> str:
    reply = str(exc)
    if exc.code == 553 or (exc.enhanced.startswith("5.7.") and exc.stage == "mail"):
        text = N_(
            "Die Nachricht wurde nicht gesendet: Für das eigene Postfach (Absender) ist im Verzeichnis kein gültiges "
            "Verschlüsselungszertifikat hinterlegt (%(reply)s). Bitte die Betreuung des KIM-Kontos verständigen."
        ) % {"reply": reply}
        return _finish_permanent(outgoing_id, token, attempt, exc.code, text, reply=exc)
    if exc.code == 451 and exc.stage == "end_of_data":
        # KIM: no recipient had a valid encryption certificate. But CMs answer 451 for internal errors too,
        # so say both; the recipients were checked before, so it is not retried blindly.
        text = join(
            N_(TEXT_NO_RECIPIENT),
            N_(
                "(Antwort des Clientmoduls: %(reply)s. Ein Clientmodul meldet 451 auch bei einem internen Fehler; "
                "die Empfänger waren vor dem Senden im Verzeichnis geprüft worden.)"
            )
            % {"reply": reply},
        )
        return _finish_permanent(outgoing_id, token, attempt, exc.code, text, reply=exc)
    if exc.stage == "rcpt" and exc.refused:
        return _finish_rcpt_refused(outgoing_id, token, attempt, exc, where)
    if exc.temporary:
        text = N_("%(where)s hat vorübergehend abgelehnt (%(reply)s).") % {"where": where, "reply": reply}
        return _finish_temporary(outgoing_id, token, attempt, exc, text)
    text = N_("%(where)s hat die Nachricht dauerhaft abgelehnt (%(reply)s).") % {"where": where, "reply": reply}
    return _finish_permanent(outgoing_id, token, attempt, exc.code, text, reply=exc)


@transaction.atomic
def _finish_temporary(
    outgoing_id: int,
    token: str,
    attempt: DeliveryAttempt,
    exc: SmtpRefused | None,
    text: StoredText,
    *,
    needs_admin: bool = False,
) -> str:
    outgoing = _locked(outgoing_id)
    code = exc.code if exc is not None else None
    _end_attempt(attempt, DeliveryAttempt.Outcome.TEMPORARY, code, str(exc or ""), text)
    if outgoing.lease_token != token:
        return outgoing.state
    tries = _try_in_round(outgoing, attempt)
    if tries >= MAX_ATTEMPTS:
        outgoing_text = join(text, N_("Nach %(n)d Versuchen aufgegeben.") % {"n": tries})
        return _fail(outgoing, attempt, code, outgoing_text)
    next_try = timezone.now() + timedelta(seconds=_retry_delay(tries))
    suffix = N_("Nächster Versuch um %(time)s.") % {"time": timezone.localtime(next_try).strftime("%H:%M:%S")}
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=OutgoingMessage.State.QUEUED,
        lease_token="",
        lease_until=None,
        next_try_at=next_try,
        last_error=join(text, suffix).stored,
        version=F("version") + 1,
    )
    _audit(
        outgoing,
        "outgoing.attempt_failed",
        attempt=attempt.number,
        reason=text.stored,
        next_try_at=next_try.isoformat(),
        needs_admin=needs_admin,
    )
    enqueue_on_commit(DELIVER_TASK, outgoing.pk, eta=next_try)
    _changed(outgoing, outgoing.mailbox_id)
    return OutgoingMessage.State.QUEUED


@transaction.atomic
def _finish_permanent(
    outgoing_id: int,
    token: str,
    attempt: DeliveryAttempt,
    code: int | None,
    text: StoredText,
    *,
    reply: SmtpRefused | None = None,
) -> str:
    outgoing = _locked(outgoing_id)
    _end_attempt(attempt, DeliveryAttempt.Outcome.PERMANENT, code, str(reply or ""), text)
    if outgoing.lease_token != token:
        return outgoing.state
    return _fail(outgoing, attempt, code, text)


def _fail(outgoing: OutgoingMessage, attempt: DeliveryAttempt, code: int | None, text: StoredText) -> str:
    _settle(
        outgoing,
        state=OutgoingMessage.State.FAILED,
        # Only those still waiting: one the CM took in an earlier attempt was sent; one already failed keeps its reason.
        recipients=OutgoingRecipient.objects.filter(outgoing=outgoing, state__in=["queued", "uncertain"]),
        recipient_fields={
            "state": OutgoingRecipient.State.FAILED,
            "reason": text.stored,
            "status_code": str(code or ""),
        },
        text=text,
        action="outgoing.failed",
        attempt=attempt.number,
        smtp_code=code,
    )
    return OutgoingMessage.State.FAILED


# --- recovery --------------------------------------------------------------------------------------------


@transaction.atomic
def outgoing_recover(*, outgoing_id: int) -> str:
    """A message left "sending" by a dead worker (its lease ran out): "ungewiss" if its last attempt reached
    the end of DATA, else queued again at once (the CM cannot have delivered an unfinished DATA)."""
    outgoing = _locked(outgoing_id)
    now = timezone.now()
    if outgoing.state != OutgoingMessage.State.SENDING or (outgoing.lease_until and outgoing.lease_until > now):
        return outgoing.state
    attempt = outgoing.attempts.order_by("-number").first()
    if attempt is not None and attempt.final_dot_at is not None:
        text = N_(
            "Der Versand wurde nach der vollständigen Übergabe an das Clientmodul unterbrochen (Absturz oder "
            "Neustart des Sendeprozesses). Ob die Nachricht versendet wurde, ist ungewiss; sie wird nicht "
            "automatisch erneut gesendet."
        )
        if attempt.outcome == DeliveryAttempt.Outcome.RUNNING:
            _end_attempt(attempt, DeliveryAttempt.Outcome.UNCERTAIN, None, "", text)
        _mark_uncertain(outgoing, text, attempt.number)
        return OutgoingMessage.State.UNCERTAIN
    if attempt is not None and attempt.outcome == DeliveryAttempt.Outcome.RUNNING:
        _end_attempt(
            attempt,
            DeliveryAttempt.Outcome.ABORTED,
            None,
            "",
            N_("Der Sendeprozess wurde vor dem Ende der Übertragung beendet; die Nachricht wird erneut gesendet."),
        )
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(
        state=OutgoingMessage.State.QUEUED, lease_token="", lease_until=None, next_try_at=now, version=F("version") + 1
    )
    _audit(
        outgoing,
        "outgoing.requeued",
        attempt=attempt.number if attempt else None,
    )
    _changed(outgoing, outgoing.mailbox_id)
    return OutgoingMessage.State.QUEUED


def outgoing_recover_stale(*, now: Any = None) -> list[int]:
    """Recover every message whose sending worker died; returns the ids queued again."""
    now = now or timezone.now()
    stale = OutgoingMessage.objects.filter(state=OutgoingMessage.State.SENDING, lease_until__lt=now).values_list(
        "pk", flat=True
    )
    return [pk for pk in list(stale) if outgoing_recover(outgoing_id=pk) == OutgoingMessage.State.QUEUED]


def outgoing_due(*, now: Any = None) -> list[int]:
    """Queued messages whose next try is due (the beat dispatches them; a lost task costs one tick)."""
    now = now or timezone.now()
    return list(
        OutgoingMessage.objects.filter(state=OutgoingMessage.State.QUEUED, next_try_at__lte=now)
        .order_by("next_try_at")
        .values_list("pk", flat=True)[:500]
    )


# --- people decide ---------------------------------------------------------------------------------------


def _guarded(user: Any, outgoing: OutgoingMessage, version: int | None) -> OutgoingMessage:
    locked = _locked(outgoing)
    require(user, locked.mailbox_id, Action.PROCESS, _("In diesem Postfach dürfen Sie nicht senden."))
    if version is not None and locked.version != version:
        raise Conflict(_("Die Nachricht hat sich inzwischen geändert. Bitte neu laden."), fresh=locked)
    return locked


@transaction.atomic
def outgoing_retry(*, user: Any, outgoing: OutgoingMessage, version: int | None = None) -> OutgoingMessage:
    """ "Erneut senden" for a failed message, or "jetzt senden" for one waiting for its next try."""
    locked = _guarded(user, outgoing, version)
    if locked.state not in (OutgoingMessage.State.FAILED, OutgoingMessage.State.QUEUED):
        raise Conflict(
            _("Nur fehlgeschlagene oder wartende Nachrichten können erneut gesendet werden (Zustand: %(state)s).")
            % {"state": locked.get_state_display()},
            fresh=locked,
        )
    now = timezone.now()
    # A recipient the CM already took (sent, delivered, or delayed by the Fachdienst, which still tries) never gets
    # the message a second time. "Jetzt senden" for a waiting message only brings its next try forward: a
    # recipient refused for good stays refused.
    # Sending a failed message again starts a new round of tries (the CM may be back, or fail briefly once more);
    # "jetzt senden" keeps the round it is in.
    tries_before = locked.tries_before
    if locked.state == OutgoingMessage.State.FAILED:
        OutgoingRecipient.objects.filter(outgoing=locked).exclude(state__in=["delivered", "sent", "delayed"]).update(
            state=OutgoingRecipient.State.QUEUED, reason="", status_code="", updated_at=now
        )
        tries_before = DeliveryAttempt.objects.filter(outgoing=locked).count()
    OutgoingMessage.objects.filter(pk=locked.pk).update(
        state=OutgoingMessage.State.QUEUED,
        next_try_at=now,
        last_error="",
        tries_before=tries_before,
        version=F("version") + 1,
    )
    audit_record(
        actor=user,
        action="outgoing.retried",
        mailbox=locked.mailbox,
        outgoing_id=locked.pk,
        message_id=locked.message_id,
    )
    enqueue_on_commit(DELIVER_TASK, locked.pk)
    _changed(locked, locked.mailbox_id)
    return OutgoingMessage.objects.get(pk=locked.pk)


@transaction.atomic
def outgoing_resolve_uncertain(
    *, user: Any, outgoing: OutgoingMessage, delivered: bool, version: int | None = None
) -> OutgoingMessage:
    """A person decides an uncertain send: it did arrive (mark as sent) or it did not (send it again, same bytes)."""
    locked = _guarded(user, outgoing, version)
    if locked.state != OutgoingMessage.State.UNCERTAIN:
        raise Conflict(_("Die Zustellung dieser Nachricht ist nicht mehr ungewiss."), fresh=locked)
    now = timezone.now()
    if delivered:
        OutgoingRecipient.objects.filter(outgoing=locked, state="uncertain").update(
            state=OutgoingRecipient.State.SENT, updated_at=now
        )
        OutgoingMessage.objects.filter(pk=locked.pk).update(
            state=OutgoingMessage.State.SENT, sent_at=locked.sent_at or now, last_error="", version=F("version") + 1
        )
    else:
        OutgoingRecipient.objects.filter(outgoing=locked, state="uncertain").update(
            state=OutgoingRecipient.State.QUEUED, updated_at=now
        )
        # Sent again by a person's decision: a new round of tries, as "Erneut senden".
        OutgoingMessage.objects.filter(pk=locked.pk).update(
            state=OutgoingMessage.State.QUEUED,
            next_try_at=now,
            last_error="",
            tries_before=DeliveryAttempt.objects.filter(outgoing=locked).count(),
            version=F("version") + 1,
        )
        enqueue_on_commit(DELIVER_TASK, locked.pk)
    audit_record(
        actor=user,
        action="outgoing.uncertain_resolved",
        mailbox=locked.mailbox,
        outgoing_id=locked.pk,
        message_id=locked.message_id,
        delivered=delivered,
    )
    _changed(locked, locked.mailbox_id)
    return OutgoingMessage.objects.get(pk=locked.pk)


@transaction.atomic
def outgoing_claim(*, user: Any, outgoing: OutgoingMessage) -> OutgoingMessage:
    """Take a sent message as one's own job (a failed or uncertain send needs someone)."""
    locked = _guarded(user, outgoing, None)
    if locked.claimed_by_id and locked.claimed_by_id != user.pk:
        raise Conflict(_("Jemand anderes kümmert sich bereits um diese Nachricht."), fresh=locked)
    OutgoingMessage.objects.filter(pk=locked.pk).update(
        claimed_by=user, claimed_at=timezone.now(), version=F("version") + 1
    )
    audit_record(actor=user, action="outgoing.claimed", mailbox=locked.mailbox, outgoing_id=locked.pk)
    _changed(locked, locked.mailbox_id)
    return OutgoingMessage.objects.get(pk=locked.pk)


@transaction.atomic
def outgoing_release(*, user: Any, outgoing: OutgoingMessage) -> OutgoingMessage:
    locked = _guarded(user, outgoing, None)
    _release(locked, actor=user)
    return OutgoingMessage.objects.get(pk=locked.pk)


def _release(outgoing: OutgoingMessage, *, actor: Any, **details: Any) -> None:
    """Nobody is the send's contact any more: written, audited, and its pages told (in the caller's transaction)."""
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(claimed_by=None, claimed_at=None, version=F("version") + 1)
    audit_record(actor=actor, action="outgoing.released", mailbox=outgoing.mailbox, outgoing_id=outgoing.pk, **details)
    _changed(outgoing, outgoing.mailbox_id)


def outgoing_claims_return(*, actor: Any, mailbox_id: int, person: Any, reason: str = "membership_ended") -> int:
    """A person who can no longer work the mailbox is nobody's contact for its sends any more: the failed or
    uncertain sends they took on become unclaimed (colleagues see "Ich kümmere mich" again). Audited with the
    reason, as their messages and drafts are (mailbox.services.members.work_return). Inside the caller's
    transaction; returns how many."""
    claimed = list(
        OutgoingMessage.objects.select_for_update()
        .select_related("mailbox")
        .filter(mailbox_id=mailbox_id, claimed_by=person)
        .order_by("pk")
    )
    for outgoing in claimed:
        _release(outgoing, actor=actor, previous=person.pk, reason=reason)
    return len(claimed)


# --- eArztbrief acknowledgement --------------------------------------------------------------------------


def acknowledgement_offered(message: Message) -> bool:
    """Whether the message page offers "Eingangsbestätigung senden" (an eArztbrief not yet acknowledged)."""
    return is_arztbrief(message.dienstkennung) and not _acknowledged(message)


def _acknowledged(message: Message) -> bool:
    return (
        OutgoingMessage.objects.filter(in_reply_to=message, kind=OutgoingMessage.Kind.ACKNOWLEDGEMENT)
        .exclude(state=OutgoingMessage.State.DRAFT)
        .exists()
    )


def outgoing_acknowledge(*, user: Any, message: Message) -> OutgoingMessage:
    """Send the ``Arztbrief;Eingangsbestaetigung`` for an incoming eArztbrief (pre-flight and outbox as any send).

    *user* None: sent by the portal itself (the mailbox's automatic acknowledgement).
    """
    with transaction.atomic():
        message = Message.objects.select_for_update().select_related("mailbox").get(pk=message.pk)
        if user is not None:
            require(user, message.mailbox_id, Action.PROCESS, _("Aus diesem Postfach dürfen Sie nicht senden."))
        if not is_arztbrief(message.dienstkennung):
            raise NotAllowed(_("Nur ein eArztbrief kann mit einer Eingangsbestätigung beantwortet werden."))
        existing = OutgoingMessage.objects.filter(
            in_reply_to=message, kind=OutgoingMessage.Kind.ACKNOWLEDGEMENT
        ).first()
        if existing is not None and existing.state != OutgoingMessage.State.DRAFT:
            return existing

        received = timezone.localtime(message.received_at).strftime("%d.%m.%Y %H:%M")
        # The letter goes to a German practice: in German, whatever language the person who clicked reads the portal in.
        with translation.override("de"):
            data = OutgoingData(
                subject=one_line(reply_subject(message.subject, _("Eingangsbestätigung"))),
                body=_(
                    "Eingangsbestätigung: Ihr eArztbrief (Message-ID %(mid)s) ist am %(when)s bei %(mailbox)s "
                    "eingegangen."
                )
                % {"mid": message.message_id or "–", "when": received, "mailbox": message.mailbox.address},
                to=[message.from_address.lower()],
                dienstkennung=acknowledgement_dienstkennung(message.dienstkennung),
            )
        # A draft left by an earlier try (the directory refused then) is sent now, not a second one.
        draft = existing or OutgoingMessage.objects.create(
            mailbox_id=message.mailbox_id,
            author=user,
            kind=OutgoingMessage.Kind.ACKNOWLEDGEMENT,
            in_reply_to=message,
            in_reply_to_header=message.message_id.strip(),
            references=references_for(message),
            subject=data.subject,
            body=data.body,
            to=data.to,
            dienstkennung=data.dienstkennung,
        )
        audit_record(
            actor=user,
            action="outgoing.acknowledged",
            message=message,
            outgoing_id=draft.pk,
            automatic=user is None,
        )
    problems = outgoing_preflight_system(draft) if user is None else outgoing_preflight(user=user, draft=draft)
    if problems:
        raise PreflightFailed(problems)
    return _queue(user=user, outgoing_id=draft.pk, version=draft.version)


def outgoing_preflight_system(draft: OutgoingMessage) -> list[PreflightProblem]:
    """Pre-flight for what the portal sends by itself (no user whose role to check)."""
    problems = [PreflightProblem(a, r) for a, r in draft_problems(draft)]
    if problems:
        return problems
    entries = directory_entries_for_addresses(draft.recipients)
    size = estimated_size(draft, [])
    for address in draft.recipients:
        problems += recipient_problems(address, entries.get(address), size=size)
    return problems


def acknowledgement_auto(*, message_id: int) -> OutgoingMessage | None:
    """The mailbox setting "Eingangsbestätigung automatisch": acknowledge a newly received eArztbrief."""
    message = Message.objects.select_related("mailbox").filter(pk=message_id).first()
    if message is None or not message.mailbox.auto_acknowledge_arztbrief or not is_arztbrief(message.dienstkennung):
        return None
    try:
        return outgoing_acknowledge(user=None, message=message)
    except PreflightFailed as exc:
        # Left as a draft for a person to look at (the message page still offers the acknowledgement).
        log.warning("automatic acknowledgement of message %s not sent: %s", message_id, exc.message)
        return None
