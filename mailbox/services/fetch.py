"""Fetching a KIM account's mail from the Clientmodul over POP3.

One fetch per account at a time, across any number of workers: a lease row-update decides who
fetches (works on PostgreSQL and SQLite). A killed worker's lease simply expires.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from mailbox import events
from mailbox.clients.pop3 import pop3_session
from mailbox.clients.tls import CmAuthFailed, CmError, CmTlsError
from mailbox.crypto import CredentialDecryptionError
from mailbox.models import KimAccount, Message
from mailbox.services.accounts import account_endpoint, cm_error_message
from mailbox.services.ingest import message_ingest

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 15 * 60


def lease_seconds() -> int:
    return int(getattr(settings, "KIMPORTAL_FETCH_LEASE_SECONDS", 120))


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
            _fetch(account, token, result)
        except (CmError, CredentialDecryptionError, LeaseLost) as exc:
            result.error = cm_error_message(exc, host=account.cm_host, port=account.pop3_port)
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
    """Renews the fetch lease while one RETR of a very large mail takes longer than the lease."""

    def __init__(self, account_id: int, token: str) -> None:
        super().__init__(daemon=True, name=f"lease-{account_id}")
        self.account_id = account_id
        self.token = token
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(lease_seconds() / 3):
                account_lease_renew(account_id=self.account_id, token=self.token)
        finally:
            connection.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)


def _fetch(account: KimAccount, token: str, result: FetchResult) -> None:
    mailbox = account.mailbox
    keep_days = account.keep_on_server_days
    with pop3_session(account_endpoint(account, "pop3")) as session:
        listing = session.listing()
        keys = [m.uidl for m in listing] + [_reused_key(m) for m in listing]
        known = {
            uidl: (received_at, pop3_size)
            for uidl, received_at, pop3_size in Message.objects.filter(mailbox=mailbox, uidl__in=keys).values_list(
                "uidl", "received_at", "pop3_size"
            )
        }
        cutoff = timezone.now() - timedelta(days=keep_days)
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
            message = message_ingest(mailbox=mailbox, uidl=key, raw=raw, pop3_size=item.size)
            result.stored.append(message.pk)
            # DELE only after the row is committed (message_ingest returned outside any transaction).
            if keep_days == 0:
                session.delete(item.number)
                result.deleted += 1
            if not account_lease_renew(account_id=account.pk, token=token):
                raise LeaseLost("fetch lease expired")
        session.quit()


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
