"""The demo's KIS connection: a client system for Kardiologie with a fresh random token in a file (never a fixed
secret in the repository), for scripts/kis_client.py. Run again, it keeps the connection and a still valid token."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from mailbox.models import Mailbox
from signing.api.services import kis_client_create, kis_token_issue
from signing.api.tokens import token_hash
from signing.models import KisClient, KisToken

NAME = "KIS Kardiologie (Demo)"
KARDIOLOGIE = "kardiologie@klinikum-demo.kim.telematik-test"


class Command(BaseCommand):
    help = "Create the demo's KIS client system for Kardiologie and write its token to a file (mode 600)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--token-file", required=True)
        parser.add_argument("--mailbox", default=KARDIOLOGIE)
        parser.add_argument("--manager", default="leitung", help="who creates it (on the audit trail)")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["token_file"])
        mailbox = Mailbox.objects.filter(address=options["mailbox"]).first()
        if mailbox is None:
            raise CommandError(f"mailbox {options['mailbox']} not found (run demo_seed first)")
        manager = get_user_model().objects.filter(username=options["manager"]).first()
        client = KisClient.objects.filter(name=NAME).first()
        if client is None:
            token = kis_client_create(manager=manager, name=NAME, mailboxes=[mailbox]).token
        else:
            existing = path.read_text(encoding="utf-8").strip() if path.exists() else ""
            valid = KisToken.objects.filter(
                client=client, token_hash=token_hash(existing), revoked_at__isnull=True, expires_at__gt=timezone.now()
            ).exists()
            if existing and valid:
                self.stdout.write(f"{NAME}: token in {path} still valid")
                return
            token = kis_token_issue(manager=manager, client=client).token
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created with mode 600 from the start: the token is a password.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        os.chmod(path, 0o600)
        self.stdout.write(f"{NAME}: new token written to {path}")
