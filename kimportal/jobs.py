"""Queue a Celery task by its name after the current transaction commits.

Services start background work but must not import the task modules that import them (tasks are
adapters over services): naming the task keeps the import graph one-way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import current_app
from django.db import transaction


def enqueue_on_commit(name: str, *args: Any, eta: datetime | None = None) -> None:
    def send() -> None:
        if current_app.conf.task_always_eager:
            # Eager mode (some tests, one-process setups) runs the registered task in place; outside a worker
            # nothing has imported the task modules yet (autodiscovery runs when a worker starts).
            current_app.loader.import_default_modules()
            current_app.tasks[name].apply(args=args)
            return
        current_app.send_task(name, args=args, eta=eta)

    transaction.on_commit(send)
