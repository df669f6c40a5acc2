from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from directory.clients.vzd import VzdError
from directory.services import contacts_refresh


class Command(BaseCommand):
    help = "Compare the local address book with the VZD now (the daily task does the same)."

    def handle(self, *args, **options) -> None:
        try:
            report = contacts_refresh()
        except VzdError as exc:
            raise CommandError(f"VZD not reachable: {exc}") from exc
        self.stdout.write(
            f"checked {report.checked}, changed {report.changed}, vanished {report.vanished}, "
            f"unchanged {report.unchanged}"
        )
