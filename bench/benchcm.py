"""What the ingest benches share: their database made and migrated, and a KIM account at the simulated CM.

Imported after django.setup() (the benches set their environment first)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailbox.models import KimAccount
    from tisim.cm import CMSimulator


def database_ensure() -> None:
    """The database named by DATABASE_URL exists and is migrated."""
    import psycopg
    from django.core.management import call_command
    from psycopg import sql

    base, name = os.environ["DATABASE_URL"].rsplit("/", 1)
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    call_command("migrate", verbosity=0)


def account_prepare(cm: CMSimulator, *, address: str, display_name: str, password: str) -> KimAccount:
    """A fresh mailbox (no messages) with its KIM account at the simulator: implicit TLS, pinned certificate."""
    from mailbox.models import KimAccount, Mailbox, Message

    mailbox, _ = Mailbox.objects.update_or_create(address=address, defaults={"display_name": display_name})
    Message.objects.filter(mailbox=mailbox).delete()
    KimAccount.objects.filter(mailbox=mailbox).delete()
    account = KimAccount(
        mailbox=mailbox,
        cm_host="127.0.0.1",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        fachdienst="klinikum-bench.kim.telematik-test:465",
        mandant_id="Mandant1",
        client_system_id="KIM-Portal",
        workplace_id="AP1",
        timeout_seconds=30.0,
    )
    account.set_password(password)
    account.save()
    return account
