"""Fetching a KIM account's mail from the Clientmodul over POP3.

One fetch per account at a time, across any number of workers: a lease row-update decides who
fetches (works on PostgreSQL and SQLite). A killed worker's lease simply expires.

Mail is stored in batches: the messages RETRieved within a batch are parsed and their blobs
written (fsynced side by side) as they arrive; then the batch's rows are committed in one
transaction with one live update, and only then are those messages DELEd. A batch closes at
BATCH_MESSAGES messages, BATCH_BYTES bytes or BATCH_SECONDS, whichever comes first, so a long
round still shows mail as it goes and a round of large mails holds little in memory.
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

from mailbox import events
from mailbox.clients.pop3 import ListedMessage, Pop3Session, pop3_session
from mailbox.clients.tls import CmAuthFailed, CmError, CmTlsError
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import KimAccount, Message
from mailbox.services.accounts import account_endpoint, cm_error_message
from mailbox.services.ingest import StagedMessage, message_stage, messages_store
from mailbox.storage import BlobBatch

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 15 * 60
# The consumers render at most 50 new rows per live update (MAX_ROWS_PER_FRAME): one batch fits.
BATCH_MESSAGES = 50
BATCH_BYTES = 16 * 1024 * 1024
BATCH_SECONDS = 2.0


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
        result.error = _("Der Abruf für dieses KIM-Konto ist abgeschaltet.")
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
            result.error = cm_error_message(exc, host=account.cm_host, port=account.pop3_port)
            _record_failure(account, exc, result.error)
            return result
        except MessagesRefused as exc:
            result.error = _(
                "%(count)d Nachricht(en) konnten nicht gespeichert werden und bleiben auf dem Clientmodul. "
                "Details im Server-Log."
            ) % {"count": exc.count}
            _record_failure(account, exc, result.error)
            return result
        except Exception as exc:
            # Disk full, a bug, a time limit: visible in the UI and the log, never a silent stall.
            log.exception("fetch of %s failed unexpectedly", account.mailbox.address)
            result.error = _("Interner Fehler beim Abruf (%(kind)s). Details im Server-Log.") % {
                "kind": exc.__class__.__name__
            }
            _record_failure(account, exc, result.error)
            return result
        _record_success(account)
        return result
    finally:
        keeper.stop()
        account_lease_release(account_id=account_id, token=token)


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


def _fetch(account: KimAccount, keeper: _LeaseKeeper, result: FetchResult) -> None:
    mailbox = account.mailbox
    keep_days = account.keep_on_server_days
    refused = 0
    with pop3_session(account_endpoint(account, "pop3")) as session, BlobBatch() as blobs:
        listing = session.listing()
        keys = [m.uidl for m in listing] + [_reused_key(m) for m in listing]
        known = {
            uidl: (received_at, pop3_size)
            for uidl, received_at, pop3_size in Message.objects.filter(mailbox=mailbox, uidl__in=keys).values_list(
                "uidl", "received_at", "pop3_size"
            )
        }
        cutoff = timezone.now() - timedelta(days=keep_days)
        batch = _Batch()
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
            raw = session.retrieve(item.number)
            batch.add(item, message_stage(uidl=key, raw=raw, pop3_size=item.size, blobs=blobs))
            if batch.full():
                refused += _store_batch(session, account, batch, blobs, keeper, result)
                batch = _Batch()
        refused += _store_batch(session, account, batch, blobs, keeper, result)
        # QUIT even after a refused message: the DELEs of the stored ones take effect, it stays.
        session.quit()
    if refused:
        raise MessagesRefused(refused)


def _store_batch(
    session: Pop3Session,
    account: KimAccount,
    batch: _Batch,
    blobs: BlobBatch,
    keeper: _LeaseKeeper,
    result: FetchResult,
) -> int:
    """Commit a batch's rows, then DELE what was committed; returns how many the database refused."""
    if not batch.items:
        return 0
    keeper.check()
    messages = messages_store(mailbox=account.mailbox, staged=[staged for _, staged in batch.items], blobs=blobs)
    refused = 0
    for (item, _staged), message in zip(batch.items, messages, strict=True):
        if message is None:
            refused += 1
            continue
        result.stored.append(message.pk)
        # DELE only after the row is committed (messages_store returned outside any transaction).
        if account.keep_on_server_days == 0:
            session.delete(item.number)
            result.deleted += 1
    return refused


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


def _record_failure(account: KimAccount, exc: BaseException, message: str) -> None:
    now = timezone.now()
    failures = account.consecutive_failures + 1
    # Exponential backoff from the poll interval, capped, so a dead CM is not hammered.
    delay = min(account.poll_interval_seconds * (2 ** min(failures - 1, 10)), MAX_BACKOFF_SECONDS)
    status = KimAccount.Status.AUTH_FAILED if isinstance(exc, CmAuthFailed) else KimAccount.Status.UNREACHABLE
    if isinstance(exc, CredentialDecryptionError | CmTlsError) or not isinstance(exc, CmError | LeaseLost):
        # Not a network blip: a wrong pin, a key problem or a local failure needs an administrator.
        status = KimAccount.Status.ERROR
    KimAccount.objects.filter(pk=account.pk).update(
        status=status,
        status_message=message,
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
