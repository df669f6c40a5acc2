"""Demo only: the seeded KIM accounts speak to the simulated Konnektor in its own call context.

The simulated Account Manager accepts a JWT signed by the SMC-B "Klinikum Demo" in the simulated Konnektor
(operations.services.amauth builds it in the KIM account's Konnektor context). mailbox's demo_seed names the
client system "KIM-Portal", the simulated Konnektor knows "KIMPortal" (its konnektor.json, exported by scripts/demo.sh
as KIMPORTAL_KONNEKTOR_MANDANT/CLIENT_SYSTEM): this aligns the demo accounts with the Konnektor, so that leitung can
set an out-of-office note for aufnahme@ in the demo. The simulated Clientmodul accepts either name in its logins.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from mailbox.models import KimAccount

DEMO_ADDRESSES = ("kardiologie@klinikum-demo.kim.telematik-test", "aufnahme@klinikum-demo.kim.telematik-test")


class Command(BaseCommand):
    help = "Demo: give the demo's KIM accounts the simulated Konnektor's Mandant and client system."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--address", action="append", help="a KIM address (default: the demo's two)")

    def handle(self, *args: Any, **options: Any) -> None:
        addresses = options["address"] or list(DEMO_ADDRESSES)
        changed = KimAccount.objects.filter(mailbox__address__in=addresses).update(
            mandant_id=settings.KIMPORTAL_KONNEKTOR_MANDANT,
            client_system_id=settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM,
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"{changed} demo KIM account(s) use the Konnektor context "
                f"{settings.KIMPORTAL_KONNEKTOR_MANDANT}/{settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM}"
            )
        )
