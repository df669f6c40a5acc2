from __future__ import annotations

import json
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from mailbox.models import KimAccount, Mailbox, Membership

HOSPITAL_MAILBOXES = [
    ("kardiologie@klinikum-demo.kim.telematik-test", "Station Kardiologie"),
    ("aufnahme@klinikum-demo.kim.telematik-test", "Zentrale Aufnahme"),
]
USERS = [
    # username, first, last, kind: "" (staff on a ward), "manager" (Leitung: manage_house, not a superuser),
    # "admin" (IT: the Django admin)
    ("station", "Sabine", "Stationsteam", ""),
    # The name on her eHBA (the simulated Konnektor's card) and under the seeded letters.
    ("aerztin", "Dr. med. Anna", "Sommer", ""),
    ("leitung", "Lena", "Leitung", "manager"),
    ("admin", "Ingo", "IT-Administration", "admin"),
]
MEMBERS = {
    "kardiologie@klinikum-demo.kim.telematik-test": [("station", "processor"), ("aerztin", "processor")],
    "aufnahme@klinikum-demo.kim.telematik-test": [("station", "processor")],
}


class Command(BaseCommand):
    help = "Seed the demo hospital: users, two functional mailboxes and their KIM accounts at the simulator's CM."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--cm-json", required=True, help="cm.json written by the running simulator")
        parser.add_argument("--password", default="demo")
        parser.add_argument("--poll-seconds", type=int, default=5)

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        path = Path(options["cm_json"])
        if not path.exists():
            raise CommandError(f"{path} not found: is the simulator running?")
        cm = json.loads(path.read_text())
        password = options["password"]
        User = get_user_model()
        users = {}
        manage_house = Permission.objects.get(content_type__app_label="mailbox", codename="manage_house")
        for username, first, last, kind in USERS:
            user, created = User.objects.get_or_create(
                username=username, defaults={"first_name": first, "last_name": last}
            )
            if created:
                user.set_password(password)
            # A demo seeded before keeps its passwords, but takes the names as they are here now.
            user.first_name, user.last_name = first, last
            user.is_staff = user.is_superuser = kind == "admin"
            user.save()
            if kind == "manager":
                user.user_permissions.add(manage_house)
            users[username] = user
        for address, name in HOSPITAL_MAILBOXES:
            mailbox, _ = Mailbox.objects.update_or_create(
                address=address, defaults={"display_name": name, "kind": Mailbox.Kind.FUNCTIONAL}
            )
            for username, role in MEMBERS[address]:
                Membership.objects.update_or_create(mailbox=mailbox, user=users[username], defaults={"role": role})
            Membership.objects.update_or_create(mailbox=mailbox, user=users["leitung"], defaults={"role": "owner"})
            account = KimAccount.objects.filter(mailbox=mailbox).first() or KimAccount(mailbox=mailbox)
            account.cm_host = cm["host"]
            account.smtp_port = cm["smtp_port"]
            account.pop3_port = cm["pop3_port"]
            # The simulator's cm.json says how it offers TLS; its certificate is self-signed, so it is pinned.
            if not cm.get("tls"):
                account.transport = KimAccount.Transport.PLAIN
            elif cm.get("starttls"):
                account.transport = KimAccount.Transport.STARTTLS
            else:
                account.transport = KimAccount.Transport.IMPLICIT_TLS
            account.tls_certificate_check = KimAccount.CertificateCheck.PINNED
            account.tls_fingerprint_sha256 = cm.get("fingerprint_sha256", "") if cm.get("tls") else ""
            account.fachdienst = "klinikum-demo.kim.telematik-test:465"
            account.mandant_id = "Mandant1"
            account.client_system_id = "KIM-Portal"
            account.workplace_id = "Arbeitsplatz-1"
            account.poll_interval_seconds = options["poll_seconds"]
            account.set_password(password)
            account.save()
        self.stdout.write(self.style.SUCCESS("demo hospital seeded"))
