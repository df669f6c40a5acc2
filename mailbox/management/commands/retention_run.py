from __future__ import annotations

from django.core.management.base import BaseCommand
from django.template.defaultfilters import filesizeformat

from mailbox.services.retention import retention_run_all


class Command(BaseCommand):
    help = (
        "Report (default) or, with --delete, delete the content of done messages past their mailbox's retention "
        "period. Messages under legal hold are kept and counted."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--delete", action="store_true", help="really delete (default: dry run, nothing changes)")

    def handle(self, *args, **options) -> None:
        dry_run = not options["delete"]
        for report in retention_run_all(dry_run=dry_run):
            self.stdout.write(
                f"{report.mailbox}: {report.messages} messages, {report.attachments} attachments, "
                f"{report.notes} notes, {filesizeformat(report.bytes)}, {report.blobs} blob files, "
                f"{report.held} under legal hold{' (dry run)' if dry_run else ' deleted'}"
            )
