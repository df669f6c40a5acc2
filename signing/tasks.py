"""Celery tasks: adapters that take ids and call a service (services queue them by name)."""

from __future__ import annotations

from celery import shared_task

from signing.services.comfort import comfort_activation_run, comfort_konnektor_deactivate, comfort_sweep
from signing.services.received import (
    received_signatures_dispatch,
    received_signatures_retry_due,
    received_signatures_verify,
)
from signing.services.run import SOFT_TIME_LIMIT, TIME_LIMIT, batch_run, batches_recover_stale
from signing.services.send import signed_draft_send


# SignDocument waits for the PIN (minutes per call) and a batch may make several calls. The soft limit ends the
# batch in its worker ("took too long", the job at the Konnektor stopped); the hard limit kills a worker stuck
# beyond that, and signing_recover_stale then ends its batch and gives the drafts back.
@shared_task(
    name="signing.tasks.signing_batch_run",
    ignore_result=True,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=TIME_LIMIT,
)
def signing_batch_run(batch_id: int) -> None:
    batch_run(batch_id)


@shared_task(name="signing.tasks.signing_recover_stale", ignore_result=True, expires=300)
def signing_recover_stale() -> int:
    # Also the Komfortsignatur nobody ended: a sign-in session gone without a logout, its time up, a dead task.
    comfort_sweep()
    return batches_recover_stale()


@shared_task(name="signing.tasks.signing_send_signed", ignore_result=True)
def signing_send_signed(draft_id: int) -> None:
    signed_draft_send(draft_id=draft_id)


# VerifyDocument for a received message's signatures: one short call per signature; the beat's sweep follows a
# worker that died (the rows' lease) and tries again while the Konnektor cannot be asked (the rows' next_try_at).
@shared_task(name="signing.tasks.signing_received_verify", ignore_result=True, soft_time_limit=600, time_limit=660)
def signing_received_verify(message_id: int, force: bool = False, requested_by: int | None = None) -> int:
    return received_signatures_verify(message_id=message_id, force=force, requested_by=requested_by)


@shared_task(name="signing.tasks.signing_received_retry_due", ignore_result=True, expires=50)
def signing_received_retry_due() -> int:
    return received_signatures_retry_due()


# A fetch round's messages that may carry signatures: one task from the fetch, a task per message from here.
@shared_task(name="signing.tasks.signing_received_dispatch", ignore_result=True)
def signing_received_dispatch(message_ids: list[int]) -> int:
    return received_signatures_dispatch(message_ids=message_ids)


# --- KIS callbacks (signing.api.callbacks) ---


@shared_task(name="signing.tasks.kis_callbacks_due", ignore_result=True, expires=60)
def kis_callbacks_due() -> None:
    """Beat (and every API write, after its commit): changes become callbacks, due ones are sent, each in a task
    of its own so that one slow client holds up no other."""
    from signing.api.callbacks import callbacks_due, callbacks_sweep

    callbacks_sweep()
    for callback_id in callbacks_due():
        kis_callback_deliver.delay(callback_id)


# One POST with a timeout (KIMPORTAL_KIS_CALLBACK_TIMEOUT, 10 s); a failure is retried by the beat's dispatcher at
# the row's next_attempt_at (exponential backoff), not by Celery's own retry: the schedule survives a worker restart.
@shared_task(name="signing.tasks.kis_callback_deliver", ignore_result=True, soft_time_limit=120, time_limit=150)
def kis_callback_deliver(callback_id: int) -> None:
    from signing.api.callbacks import callback_deliver

    callback_deliver(callback_id)


# ActivateComfortSignature waits for the PIN at the card terminal like SignDocument (one call, minutes at most).
@shared_task(name="signing.tasks.signing_comfort_activate", ignore_result=True, soft_time_limit=1800, time_limit=1860)
def signing_comfort_activate(activation_id: int) -> None:
    comfort_activation_run(activation_id)


@shared_task(name="signing.tasks.signing_comfort_deactivate", ignore_result=True)
def signing_comfort_deactivate(activation_id: int) -> None:
    comfort_konnektor_deactivate(activation_id)
