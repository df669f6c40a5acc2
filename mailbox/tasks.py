"""Celery tasks: adapters that take ids, call a service, and own retries and time limits.

Services queue these by name (kimportal.jobs), so this module imports services and nothing imports it.
"""

from __future__ import annotations

from celery import shared_task

from mailbox.services.absences import absence_begin
from mailbox.services.fetch import account_fetch, accounts_due_claim
from mailbox.services.outbox import (
    acknowledgement_auto,
    outgoing_deliver,
    outgoing_due,
    outgoing_recover_stale,
    outgoing_release_held,
)
from mailbox.services.presence import presence_purge_stale
from mailbox.services.retention import retention_run_all
from mailbox.services.sla import sla_overdue_notify


# An hour: one 700 MiB mail from a slow CM takes minutes, and a round may hold several. A stalled RETR
# does not count against it (the POP3 read timeout ends it); the fetch lease keeps a second worker out.
@shared_task(name="mailbox.tasks.mailbox_fetch", soft_time_limit=3600, time_limit=3660, ignore_result=True)
def mailbox_fetch(account_id: int) -> dict:
    result = account_fetch(account_id=account_id)
    return {"stored": len(result.stored), "deleted": result.deleted, "busy": result.skipped_busy, "error": result.error}


@shared_task(name="mailbox.tasks.mailbox_fetch_due", ignore_result=True, expires=30)
def mailbox_fetch_due() -> int:
    due = accounts_due_claim()
    for account_id in due:
        mailbox_fetch.delay(account_id)
    return len(due)


@shared_task(name="mailbox.tasks.mailbox_absence_begin", ignore_result=True)
def mailbox_absence_begin(absence_id: int) -> int:
    return absence_begin(absence_id=absence_id)


@shared_task(name="mailbox.tasks.mailbox_presence_purge", ignore_result=True)
def mailbox_presence_purge() -> int:
    return presence_purge_stale()


@shared_task(name="mailbox.tasks.mailbox_sla_notify", ignore_result=True, expires=240)
def mailbox_sla_notify() -> int:
    return sla_overdue_notify()


# Nightly; a large first run (years of done mail) may take a while: each message is its own transaction, so a
# run cut short by the time limit loses nothing and the next night goes on.
@shared_task(name="mailbox.tasks.mailbox_retention_run", ignore_result=True, soft_time_limit=3600, time_limit=3660)
def mailbox_retention_run() -> int:
    return sum(report.messages for report in retention_run_all(dry_run=False))


# One SMTP dialogue; the lease (mailbox.services.outbox.lease_seconds) outlasts it. Not retried by Celery: the
# outbox row says what is due, and a lost task is picked up by outgoing_dispatch_due within a tick.
@shared_task(name="mailbox.tasks.outgoing_deliver", soft_time_limit=900, time_limit=960, ignore_result=True)
def outgoing_deliver_task(outgoing_id: int) -> str:
    return outgoing_deliver(outgoing_id=outgoing_id)


@shared_task(name="mailbox.tasks.outgoing_dispatch_due", ignore_result=True, expires=25)
def outgoing_dispatch_due() -> int:
    """Recover messages of dead workers ("ungewiss" or queued again), queue what was held for a switched-off
    mailbox or account that is on again, then send what is due."""
    outgoing_recover_stale()
    outgoing_release_held()
    due = outgoing_due()
    for outgoing_id in due:
        outgoing_deliver_task.delay(outgoing_id)
    return len(due)


@shared_task(name="mailbox.tasks.outgoing_acknowledge_auto", ignore_result=True)
def outgoing_acknowledge_auto(message_id: int) -> int | None:
    outgoing = acknowledgement_auto(message_id=message_id)
    return outgoing.pk if outgoing is not None else None
