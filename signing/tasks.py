"""Celery tasks: adapters that take ids and call a service (services queue them by name)."""

from __future__ import annotations

from celery import shared_task

from signing.services.run import batch_run, batches_recover_stale
from signing.services.send import signed_draft_send


# SignDocument waits for the PIN (minutes per call) and a batch may make several calls; the hard limit ends a
# worker stuck beyond any Konnektor timeout; signing_recover_stale then ends its batch and gives the drafts back.
@shared_task(name="signing.tasks.signing_batch_run", ignore_result=True, soft_time_limit=3600, time_limit=3660)
def signing_batch_run(batch_id: int) -> None:
    batch_run(batch_id)


@shared_task(name="signing.tasks.signing_recover_stale", ignore_result=True, expires=300)
def signing_recover_stale() -> int:
    return batches_recover_stale()


@shared_task(name="signing.tasks.signing_send_signed", ignore_result=True)
def signing_send_signed(draft_id: int) -> None:
    signed_draft_send(draft_id=draft_id)
