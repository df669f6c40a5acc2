from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from mailbox.models import KimAccount
from mailbox.services.fetch import account_fetch


class Command(BaseCommand):
    help = "Fetch new mail for one KIM account (or all active ones) now, in this process."

    def add_arguments(self, parser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--account", type=int, help="KimAccount id")
        group.add_argument("--address", help="KIM address of the mailbox")
        group.add_argument("--all", action="store_true")

    def handle(self, *args, **options) -> None:
        accounts = KimAccount.objects.filter(is_active=True)
        if options["account"]:
            accounts = accounts.filter(pk=options["account"])
        elif options["address"]:
            accounts = accounts.filter(mailbox__address=options["address"])
        ids = list(accounts.values_list("pk", flat=True))
        if not ids:
            raise CommandError("no matching active KIM account")
        failed = False
        for account_id in ids:
            result = account_fetch(account_id=account_id)
            if result.skipped_busy:
                self.stdout.write(f"account {account_id}: another fetch is running")
            elif result.error:
                failed = True
                self.stderr.write(f"account {account_id}: {result.error}")
            else:
                self.stdout.write(f"account {account_id}: {len(result.stored)} stored, {result.deleted} deleted")
        if failed:
            raise CommandError("fetch failed")
