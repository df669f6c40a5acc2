"""Trigram indexes for the search's contains-filters (PostgreSQL only): the patient reference (subject snapshot
or details) and the mailbox address.

Without them a term that is rare on the trail — the usual question: "who opened Frau Meierhofer's letters?" —
made PostgreSQL read every event for one page (2–4 s at a million events, and more each year). The indexes
are over the very expressions the ORM's icontains writes (UPPER(column::text) LIKE UPPER(…)), so the planner
can answer from them. pg_trgm ships with PostgreSQL and is a trusted extension: the portal's role, owner of
its database (docs/deploy.md), may create it. If it still cannot, the search works as before, only slower.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, migrations, transaction

log = logging.getLogger(__name__)

INDEXES = {
    "audit_subject_trgm": "UPPER(message_subject::text)",
    "audit_details_trgm": "UPPER(details::text)",
    "audit_mailbox_address_trgm": "UPPER(mailbox_address::text)",
}


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DatabaseError:
        log.warning("pg_trgm is not available: the audit search's text filters stay without an index")
        return
    for name, expression in INDEXES.items():
        # CONCURRENTLY: on a long trail the build takes a while (about 45 s at a million events), and the
        # portal's audited writes must not wait for it. A build that broke off leaves an invalid index: gone first.
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY {name} ON audit_auditevent USING gin ({expression} gin_trgm_ops)"
        )


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("audit", "0005_name_indexes")]

    operations = [migrations.RunPython(create, drop)]
