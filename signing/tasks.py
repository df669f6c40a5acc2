"""Celery tasks: adapters that take ids and call a service (services queue them by name)."""

from __future__ import annotations

from celery import shared_task

from signing.services.run import batch_run


# SignDocument waits for the PIN (minutes per call) and a batch may make several calls; the hard limit ends a
# worker stuck beyond any Konnektor timeout. The batch's drafts are then found in state "wird signiert":
# see docs/signing.md (a batch started but never finished).
@shared_task(name="signing.tasks.signing_batch_run", ignore_result=True, soft_time_limit=3600, time_limit=3660)
def signing_batch_run(batch_id: int) -> None:
    batch_run(batch_id)
