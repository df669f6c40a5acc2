"""Celery adapters for the directory."""

from __future__ import annotations

from celery import shared_task

from directory.clients.vzd import VzdError
from directory.services import contacts_refresh


@shared_task(
    name="directory.tasks.directory_refresh_contacts",
    autoretry_for=(VzdError,),
    retry_backoff=300,
    max_retries=6,
    time_limit=600,
)
def directory_refresh_contacts() -> dict[str, int]:
    """Daily: compare the local address book with the VZD and flag changed/vanished contacts."""
    report = contacts_refresh()
    return {"checked": report.checked, "changed": report.changed, "vanished": report.vanished}
