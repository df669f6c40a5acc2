"""python manage.py audit_verify — walk the hash chain; exit 1 naming every changed, removed, inserted or
reordered event."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from audit.verify import chain_verify

SHOWN = 100  # findings printed; a mass edit is named by its first ones and counted


class Command(BaseCommand):
    help = (
        "Prüft die Hash-Kette des Audit-Protokolls und nennt jedes veränderte, entfernte, eingefügte oder "
        "verschobene Ereignis."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = chain_verify()
        findings = result.findings or []
        for finding in findings[:SHOWN]:
            self.stderr.write(str(finding))
        if len(findings) > SHOWN:
            self.stderr.write(f"… und {len(findings) - SHOWN} weitere Befunde.")
        if findings:
            raise CommandError(f"Audit-Kette verletzt: {len(findings)} Befunde in {result.checked} Ereignissen.")
        self.stdout.write(
            f"Audit-Kette intakt: {result.checked} Ereignisse, Kopf #{result.head_seq} {result.head_hash}"
        )
