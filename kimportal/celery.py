from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kimportal.settings")

app = Celery("kimportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule(sender: Celery, **_: object) -> None:
    from django.conf import settings

    # One tick dispatches the accounts that are due; each account keeps its own interval.
    sender.add_periodic_task(
        settings.KIMPORTAL_FETCH_TICK_SECONDS, sender.signature("mailbox.tasks.mailbox_fetch_due"), name="fetch-due"
    )
    sender.add_periodic_task(300.0, sender.signature("mailbox.tasks.mailbox_presence_purge"), name="presence-purge")
    # SLA breaches are notified within five minutes; each message once.
    sender.add_periodic_task(300.0, sender.signature("mailbox.tasks.mailbox_sla_notify"), name="sla-notify")
    # Retention (data minimisation) at night, when nobody works the mailboxes.
    sender.add_periodic_task(
        crontab(hour=2, minute=41), sender.signature("mailbox.tasks.mailbox_retention_run"), name="retention-run"
    )
    # The outbox: messages of dead workers recovered, due (re)tries sent; a lost task costs one tick.
    sender.add_periodic_task(30.0, sender.signature("mailbox.tasks.outgoing_dispatch_due"), name="outgoing-due")
    # Signing batches whose worker died give their drafts back to the queue.
    sender.add_periodic_task(60.0, sender.signature("signing.tasks.signing_recover_stale"), name="signing-recover")
    # gematik: local copies of directory entries are refreshed from the VZD daily.
    sender.add_periodic_task(
        crontab(hour=3, minute=17), sender.signature("directory.tasks.directory_refresh_contacts"), name="vzd-refresh"
    )
    # Received signatures the Konnektor could not check yet are tried again when due (signing.services.received).
    sender.add_periodic_task(
        60.0, sender.signature("signing.tasks.signing_received_retry_due"), name="signing-received-retry"
    )
    # KIS drafts' state changes become callbacks; failed callbacks are retried when due (signing.api.callbacks).
    sender.add_periodic_task(10.0, sender.signature("signing.tasks.kis_callbacks_due"), name="kis-callbacks")
    # KIM password changes left open (provider's answer lost, CM unreachable) are settled by a login test.
    sender.add_periodic_task(
        300.0, sender.signature("operations.tasks.kim_password_changes_settle"), name="kim-password-settle"
    )
    # KIM registration wizards left open longer than a day lose their registration code and passwords.
    sender.add_periodic_task(
        3600.0, sender.signature("operations.tasks.kim_registrations_expire"), name="kim-registrations-expire"
    )
    # The operations page's heartbeat: beat stamps when it queues it, a worker when it runs it (operations.tasks).
    # It expires after two beats, so a stopped worker does not come back to a pile of stale heartbeats.
    sender.add_periodic_task(
        settings.KIMPORTAL_HEARTBEAT_SECONDS,
        sender.signature(
            "operations.tasks.operations_heartbeat", options={"expires": 2 * settings.KIMPORTAL_HEARTBEAT_SECONDS}
        ),
        name="operations-heartbeat",
    )
