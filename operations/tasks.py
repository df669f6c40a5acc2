"""The Celery heartbeat: beat queues ``operations_heartbeat`` every few seconds, a worker runs it.

Two stamps in the operations store tell the operations page who is alive: beat stamps when it *publishes* the
task (the ``before_task_publish`` signal fires in the beat process), a worker stamps when it *runs* it. Beat's
stamp fresh and the worker's stale: no worker takes tasks (dead, or stuck on long work). Beat's stamp stale: no
beat, so nothing periodic happens (no fetch, no outbox retries) even if the workers are fine.
"""

from __future__ import annotations

import socket
from typing import Any

from celery import shared_task
from celery.signals import before_task_publish

from operations.services.heartbeat import HEARTBEAT_TASK, stamp_beat, stamp_worker
from operations.services.kimadmin import registrations_expire
from operations.services.password_settle import password_changes_settle_due


@shared_task(name=HEARTBEAT_TASK, ignore_result=True)
def operations_heartbeat() -> None:
    stamp_worker(socket.gethostname())


@before_task_publish.connect
def _beat_published(sender: str | None = None, **_: Any) -> None:
    # Only beat publishes the heartbeat (kimportal.celery's schedule), so this stamp is beat's.
    if sender == HEARTBEAT_TASK:
        stamp_beat()


# Every few minutes (kimportal.celery); expires before the next one so a stopped worker does not pile them up. The
# time limit covers a handful of accounts whose Clientmodul answers slowly (each login test is capped).
@shared_task(name="operations.tasks.kim_password_changes_settle", ignore_result=True, expires=240, time_limit=600)
def kim_password_changes_settle() -> dict[str, int]:
    """Open KIM password changes are settled without waiting for a visit of the mailbox's KIM pages."""
    report = password_changes_settle_due()
    return {
        "applied": report.applied,
        "rejected": report.rejected,
        "uncertain": report.uncertain,
        "failed": report.failed,
    }


# Hourly (kimportal.celery): registration wizards left open lose their registration code and passwords.
@shared_task(name="operations.tasks.kim_registrations_expire", ignore_result=True, expires=3000)
def kim_registrations_expire() -> int:
    return registrations_expire()
