"""Fetching a KIM account's mail from the Clientmodul over POP3.

One fetch per account at a time, across any number of workers: a lease row-update decides who
fetches (works on PostgreSQL and SQLite). A killed worker's lease simply expires.

Mail is stored in batches: the messages RETRieved within a batch are parsed and their blobs
written (fsynced side by side) as they arrive; then the batch's rows are committed in one
transaction with one live update, and only then are those messages DELEd. A batch closes at
BATCH_MESSAGES messages, BATCH_BYTES bytes or BATCH_SECONDS, whichever comes first, so a long
round still shows mail as it goes and a round of large mails holds little in memory.

No message can stall the mailbox: an error or a stall on one message's RETR (or while it is
parsed) is recorded for that message alone (FetchFailure, with its own backoff) and the round goes
on with the others; a connection that broke is replaced by a new one (the batch so far is committed
first and DELEd in the new session). A failing message is never DELEd; from
FetchFailure.SHOW_AFTER_TRIES tries on its owners and administrators see it, until it is stored or
the CM no longer lists it. Messages arrive by streaming: RETR writes into a spool in the blob store,
and a large mail is parsed from that file (mailbox.parsing.large), never held in memory.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from kimportal.texts import N_, StoredText
from mailbox import events
from mailbox.clients.pop3 import ListedMessage, Pop3Refused, Pop3Session, pop3_session
from mailbox.clients.tls import CmAuthFailed, CmError, CmTlsError
from mailbox.crypto import CredentialDecryptionError
from mailbox.extensions import messages_ingested_send
from mailbox.models import FetchFailure, KimAccount, Message
from mailbox.services.accounts import account_endpoint, cm_error_text
from mailbox.services.cm_replies import pop3_login_retry, retr_error_message
from mailbox.services.ingest import StagedMessage, message_stage, messages_store
from mailbox.storage import BlobBatch, BlobSpool, incoming_sweep

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 15 * 60
# The consumers render at most 50 new rows per live update (MAX_ROWS_PER_FRAME): one batch fits.
BATCH_MESSAGES = 50
BATCH_BYTES = 16 * 1024 * 1024
BATCH_SECONDS = 2.0


# A failing message waits 30 s, 2 min, 8 min, 32 min, then hourly: five tries take about 40 minutes
# before its owners are shown it (FetchFailure.SHOW_AFTER_TRIES); it is never given up or deleted.
RETRY_FIRST_SECONDS = 30
RETRY_MAX_SECONDS = 3600
# Connections that broke in the middle of a RETR before the round gives up: beyond that it is the
# CM, not a message, and the account's own backoff takes over.
MAX_BROKEN_SESSIONS = 3
# After we broke a connection, the CM may answer [IN-USE] until it notices: wait briefly, a few times.
IN_USE_WAITS = (0.1, 0.3, 1.0, 2.0, 4.0)
# KIM's largest mail is 700 MiB (maxMailSize); an answer that runs on beyond this is not a mail.
# Not tied to LIST: a CM may fetch a KAS attachment while it answers RETR, so the mail grows.
MAX_RETR_BYTES = 1024 * 1024 * 1024


def retry_first_seconds() -> float:
    return float(getattr(settings, "KIMPORTAL_FETCH_RETRY_SECONDS", RETRY_FIRST_SECONDS))


def lease_seconds() -> int:
    return int(getattr(settings, "KIMPORTAL_FETCH_LEASE_SECONDS", 120))


def batch_messages() -> int:
    return max(1, int(getattr(settings, "KIMPORTAL_FETCH_BATCH_MESSAGES", BATCH_MESSAGES)))


@dataclass
class FetchResult:
    account_id: int
    skipped_busy: bool = False
    stored: list[int] = field(default_factory=list)
    deleted: int = 0
    error: str = ""


def account_lease_acquire(*, account_id: int) -> str | None:
    token = secrets.token_hex(16)
    now = timezone.now()
    won = (
        KimAccount.objects.filter(pk=account_id)
        .filter(Q(fetch_lease_until__isnull=True) | Q(fetch_lease_until__lte=now))
        .update(fetch_lease_until=now + timedelta(seconds=lease_seconds()), fetch_lease_token=token)
    )
    return token if won else None


def account_lease_renew(*, account_id: int, token: str) -> bool:
    until = timezone.now() + timedelta(seconds=lease_seconds())
    return bool(KimAccount.objects.filter(pk=account_id, fetch_lease_token=token).update(fetch_lease_until=until))


def account_lease_release(*, account_id: int, token: str) -> None:
    KimAccount.objects.filter(pk=account_id, fetch_lease_token=token).update(
        fetch_lease_until=None, fetch_lease_token=""
    )


class LeaseLost(Exception):
    pass


class FetchInTransaction(RuntimeError):
    """A fetch inside a transaction would DELE mail whose row is not yet committed."""


class MessagesRefused(Exception):
    """The database refused some messages' rows; they stay on the server, the others were stored."""

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} messages refused by the database")
        self.count = count


def account_fetch(*, account_id: int) -> FetchResult:
    if connection.in_atomic_block:
        # Durability rule: DELE only after the message's own commit. Inside an outer transaction that
        # commit is not real yet; a crash after DELE would lose the mail.
        raise FetchInTransaction("account_fetch must run outside a transaction")
    result = FetchResult(account_id=account_id)
    account = KimAccount.objects.select_related("mailbox").filter(pk=account_id).first()
    if account is None or not account.is_active:
        # Switched off (e.g. CM maintenance): no login, no DELE, whoever asks.
        result.error = _("Der Abruf für dieses KIM-Konto ist abgeschaltet.")  # returned only, not stored
        return result
    token = account_lease_acquire(account_id=account_id)
    if token is None:
        result.skipped_busy = True
        return result
    keeper = _LeaseKeeper(account_id, token)
    keeper.start()
    try:
        try:
            _fetch(account, keeper, result)
        except (CmError, CredentialDecryptionError, LeaseLost) as exc:
            failure = cm_error_text(exc, host=account.cm_host, port=account.pop3_port)
            result.error = str(failure)
            _record_failure(account, exc, failure)
            return result
        except MessagesRefused as exc:
            failure = N_(
                "%(count)d Nachricht(en) konnten nicht gespeichert werden und bleiben auf dem Clientmodul. "
                "Details im Server-Log."
            ) % {"count": exc.count}
            result.error = str(failure)
            _record_failure(account, exc, failure)
            return result
        except Exception as exc:
            # Disk full, a bug, a time limit: visible in the UI and the log, never a silent stall.
            log.exception("fetch of %s failed unexpectedly", account.mailbox.address)
            failure = N_("Interner Fehler beim Abruf (%(kind)s). Details im Server-Log.") % {
                "kind": exc.__class__.__name__
            }
            result.error = str(failure)
            _record_failure(account, exc, failure)
            return result
        _record_success(account)
        return result
    finally:
        keeper.stop()
        account_lease_release(account_id=account_id, token=token)
        # Once per round, after every commit of it (also when the round ended in an error): the new mail's ids.
        messages_ingested_send(mailbox_id=account.mailbox_id, message_ids=result.stored)


class _LeaseKeeper(threading.Thread):
    """Renews the fetch lease by time (a third of the lease), not per mail, on its own connection.

    It also covers one RETR of a very large mail that takes longer than the lease. The fetch asks
    it at every batch whether the lease still holds (``check``), which costs no query.
    """

    def __init__(self, account_id: int, token: str) -> None:
        super().__init__(daemon=True, name=f"lease-{account_id}")
        self.account_id = account_id
        self.token = token
        self.lost = threading.Event()
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(lease_seconds() / 3):
                self.renew()
        finally:
            connection.close()

    def renew(self) -> bool:
        """Renew now; False (and ``lost`` set) once another fetch holds the account."""
        try:
            held = account_lease_renew(account_id=self.account_id, token=self.token)
        except DatabaseError:
            # Unknown, not lost: the next renewal tries again; a lease that runs out is seen then.
            log.exception("renewing the fetch lease of account %s failed", self.account_id)
            return True
        if not held:
            self.lost.set()
        return held

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost("fetch lease expired")

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)


@dataclass
class _Batch:
    """Messages RETRieved and staged, not yet committed (and so not yet DELEd)."""

    items: list[tuple[ListedMessage, StagedMessage]] = field(default_factory=list)
    size: int = 0
    started: float = 0.0

    def add(self, item: ListedMessage, staged: StagedMessage) -> None:
        if not self.items:
            self.started = time.monotonic()
        self.items.append((item, staged))
        self.size += staged.size

    def full(self) -> bool:
        return (
            len(self.items) >= batch_messages()
            or self.size >= BATCH_BYTES
            or time.monotonic() - self.started >= BATCH_SECONDS
        )


@dataclass
class _Round:
    """What one fetch round carries across the sessions it may need."""

    account: KimAccount
    keeper: _LeaseKeeper
    result: FetchResult
    blobs: BlobBatch
    failures: dict[str, FetchFailure]
    attempted: set[str] = field(default_factory=set)
    refused: int = 0
    shown_changed: bool = False


def _fetch(account: KimAccount, keeper: _LeaseKeeper, result: FetchResult) -> None:
    incoming_sweep()
    failures = {f.uidl: f for f in FetchFailure.objects.filter(account=account)}
    broken = waits = 0
    with BlobBatch() as blobs:
        state = _Round(account, keeper, result, blobs, failures)
        try:
            while True:
                try:
                    with pop3_session(account_endpoint(account, "pop3")) as session:
                        error = _fetch_session(session, state)
                except Pop3Refused as exc:
                    if not (broken and exc.command == "PASS" and exc.code == "IN-USE" and waits < len(IN_USE_WAITS)):
                        raise
                    # The maildrop lock is still our own broken session's, until the CM notices it is gone.
                    time.sleep(IN_USE_WAITS[waits])
                    waits += 1
                    continue
                if error is None:
                    break
                broken += 1
                if broken >= MAX_BROKEN_SESSIONS:
                    raise error
        finally:
            if state.shown_changed:
                events.broadcast_account_status(mailbox_id=account.mailbox_id)
    if state.refused:
        raise MessagesRefused(state.refused)


def _fetch_session(session: Pop3Session, state: _Round) -> CmError | None:
    """Fetch what is due in one POP3 session; the error that broke the connection, or None after QUIT."""
    account, result = state.account, state.result
    mailbox = account.mailbox
    keep_days = account.keep_on_server_days
    listing = session.listing()
    keys = [m.uidl for m in listing] + [_reused_key(m) for m in listing]
    known = {
        uidl: (received_at, pop3_size)
        for uidl, received_at, pop3_size in Message.objects.filter(mailbox=mailbox, uidl__in=keys).values_list(
            "uidl", "received_at", "pop3_size"
        )
    }
    cutoff = timezone.now() - timedelta(days=keep_days)
    wanted: list[tuple[ListedMessage, str]] = []
    for item in listing:
        key = item.uidl
        if key in known and known[key][1] not in (None, item.size):
            # RFC 1939 lets a server reuse a UIDL once the old message is gone: a known UIDL with
            # another size is new mail, stored under its own key, and never deleted unseen.
            log.warning("UIDL %s of %s reused with another size", item.uidl, mailbox.address)
            key = _reused_key(item)
        if key in known:
            # Stored earlier (maybe by a worker that died before QUIT): delete when due.
            if keep_days == 0 or known[key][0] <= cutoff:
                session.delete(item.number)
                result.deleted += 1
            continue
        wanted.append((item, key))
    _failures_forget(state, keep={key for _, key in wanted})
    now = timezone.now()
    # New mail first; a message that failed before comes after it (when due), so it delays nobody.
    fresh = [(i, k) for i, k in wanted if k not in state.failures and k not in state.attempted]
    due = [
        (i, k)
        for i, k in wanted
        if k in state.failures and k not in state.attempted and state.failures[k].next_try_at <= now
    ]
    batch = _Batch()
    for item, key in fresh + due:
        state.attempted.add(key)
        spool = BlobSpool()
        try:
            session.retrieve_into(item.number, spool, announced=item.size or None, limit=MAX_RETR_BYTES)
            staged = message_stage(uidl=key, raw=spool, pop3_size=item.size, blobs=state.blobs)
        except CmError as exc:
            spool.discard()
            _failure_record(state, item, key, retr_error_message(exc, timeout=account.timeout_seconds))
            if session.broken:
                # The connection is unusable (no QUIT, so no DELE of it counts): keep what arrived.
                _store_batch(None, state, batch)
                return exc
            continue
        except OSError:
            spool.discard()
            raise  # the blob store cannot be written: every message would fail, the account's problem
        except Exception as exc:
            # A parser bug or a hostile mail it did not survive: this message only.
            log.exception("staging %s of %s failed", key, mailbox.address)
            spool.discard()
            _failure_record(state, item, key, retr_error_message(exc, timeout=account.timeout_seconds))
            continue
        batch.add(item, staged)
        if batch.full():
            _store_batch(session, state, batch)
            batch = _Batch()
    _store_batch(session, state, batch)
    # QUIT even after a refused or failing message: the DELEs of the stored ones take effect, they stay.
    session.quit()
    return None


def _store_batch(session: Pop3Session | None, state: _Round, batch: _Batch) -> None:
    """Commit a batch's rows, then DELE what was committed (when a session is given)."""
    if not batch.items:
        return
    account = state.account
    state.keeper.check()
    messages = messages_store(mailbox=account.mailbox, staged=[staged for _, staged in batch.items], blobs=state.blobs)
    stored: list[str] = []
    for (item, staged), message in zip(batch.items, messages, strict=True):
        if message is None:
            state.refused += 1
            _failure_record(
                state, item, staged.uidl, N_("Die Datenbank hat die Nachricht abgelehnt. Details im Server-Log.")
            )
            continue
        stored.append(staged.uidl)
        state.result.stored.append(message.pk)
        # DELE only after the row is committed (messages_store returned outside any transaction).
        if session is not None and account.keep_on_server_days == 0:
            session.delete(item.number)
            state.result.deleted += 1
    _failures_forget(state, drop=set(stored))


def _failure_record(state: _Round, item: ListedMessage, key: str, error: StoredText) -> None:
    now = timezone.now()
    earlier = state.failures.get(key)
    tries = (earlier.tries if earlier else 0) + 1
    delay = min(retry_first_seconds() * 4 ** min(tries - 1, 10), RETRY_MAX_SECONDS)
    failure, _created = FetchFailure.objects.update_or_create(
        account=state.account,
        uidl=key,
        defaults={
            "pop3_size": item.size,
            "tries": tries,
            "last_error": error.stored,
            "last_failed_at": now,
            "next_try_at": now + timedelta(seconds=delay),
        },
        create_defaults={
            "pop3_size": item.size,
            "tries": tries,
            "last_error": error.stored,
            "first_failed_at": now,
            "last_failed_at": now,
            "next_try_at": now + timedelta(seconds=delay),
        },
    )
    state.failures[key] = failure
    if failure.is_shown:
        state.shown_changed = True
    log.warning("message %s of %s failed (try %s): %s", key, state.account.mailbox.address, tries, error)


def _failures_forget(state: _Round, *, keep: set[str] | None = None, drop: set[str] | None = None) -> None:
    """Forget failures of messages now stored (*drop*) or no longer listed by the CM (all but *keep*)."""
    if keep is not None:
        gone = [key for key in state.failures if key not in keep]
    else:
        gone = [key for key in state.failures if key in (drop or set())]
    if not gone:
        return
    FetchFailure.objects.filter(account=state.account, uidl__in=gone).delete()
    for key in gone:
        if state.failures.pop(key).is_shown:
            state.shown_changed = True


def _reused_key(item) -> str:
    return f"{item.uidl}~{item.size}"


def _record_success(account: KimAccount) -> None:
    now = timezone.now()
    changed = account.status != KimAccount.Status.OK
    KimAccount.objects.filter(pk=account.pk).update(
        status=KimAccount.Status.OK,
        status_message="",
        last_success_at=now,
        last_attempt_at=now,
        consecutive_failures=0,
        next_fetch_at=now + timedelta(seconds=account.poll_interval_seconds),
    )
    if changed:
        events.broadcast_account_status(mailbox_id=account.mailbox_id)


def _record_failure(account: KimAccount, exc: BaseException, message: StoredText) -> None:
    now = timezone.now()
    failures = account.consecutive_failures + 1
    # Exponential backoff from the poll interval, capped, so a dead CM is not hammered.
    delay = min(account.poll_interval_seconds * (2 ** min(failures - 1, 10)), MAX_BACKOFF_SECONDS)
    status = KimAccount.Status.AUTH_FAILED if isinstance(exc, CmAuthFailed) else KimAccount.Status.UNREACHABLE
    if isinstance(exc, CredentialDecryptionError | CmTlsError) or not isinstance(exc, CmError | LeaseLost):
        # Not a network blip: a wrong pin, a key problem or a local failure needs an administrator.
        status = KimAccount.Status.ERROR
    if isinstance(exc, Pop3Refused) and exc.code:
        # RFC 2449 says how to go on: [IN-USE] soon, [LOGIN-DELAY] not before a while, [SYS/PERM] rarely.
        retry = pop3_login_retry(exc.code, poll_seconds=account.poll_interval_seconds, failures=failures)
        if retry is not None:
            delay, needs_admin = retry
            if needs_admin:
                status = KimAccount.Status.ERROR
    KimAccount.objects.filter(pk=account.pk).update(
        status=status,
        status_message=message.stored,
        last_attempt_at=now,
        consecutive_failures=failures,
        next_fetch_at=now + timedelta(seconds=delay),
    )
    log.warning("fetch %s failed (%s): %s", account.mailbox.address, failures, message)
    events.broadcast_account_status(mailbox_id=account.mailbox_id)


def accounts_due_claim(*, now=None) -> list[int]:
    """Accounts whose next fetch is due; pushing next_fetch_at forward first avoids double dispatch."""
    now = now or timezone.now()
    due = list(
        KimAccount.objects.filter(is_active=True, mailbox__is_active=True)
        .filter(Q(next_fetch_at__isnull=True) | Q(next_fetch_at__lte=now))
        .filter(Q(fetch_lease_until__isnull=True) | Q(fetch_lease_until__lte=now))
        .values_list("pk", "poll_interval_seconds", "next_fetch_at")
    )
    claimed = []
    for pk, interval, next_at in due:
        if KimAccount.objects.filter(pk=pk, next_fetch_at=next_at).update(
            next_fetch_at=now + timedelta(seconds=interval)
        ):
            claimed.append(pk)
    return claimed
