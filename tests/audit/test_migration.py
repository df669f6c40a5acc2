"""The events recorded before the audit app existed move into it, none lost, chained in their order."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from audit.models import AuditEvent, ChainHead
from audit.verify import chain_verify

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("mailbox", "0017_merge_0016_membership_granted_0016_routing_rules"), ("audit", "0001_initial")]


def test_old_events_are_copied_with_snapshots_and_chained():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    User = old.get_model("auth", "User")
    Mailbox = old.get_model("mailbox", "Mailbox")
    Message = old.get_model("mailbox", "Message")
    OldEvent = old.get_model("mailbox", "AuditEvent")
    nurse = User.objects.create(username="pflege")
    box = Mailbox.objects.create(address="aufnahme@klinik.kim.telematik", display_name="Aufnahme")
    message = Message.objects.create(mailbox=box, uidl="u1", subject="eAU Meier", raw_sha256="0" * 64, size=1)
    now = timezone.now()
    # Written out of order: the copy follows time, not the old ids.
    OldEvent.objects.create(at=now, actor=nurse, action="message.claimed", message=message, mailbox=box,
                            details={"until": "2026-01-01T10:00:00+00:00"})  # fmt: skip
    OldEvent.objects.create(at=now - timedelta(minutes=1), actor=nurse, action="message.viewed", message=message,
                            mailbox=box)  # fmt: skip
    OldEvent.objects.create(at=now + timedelta(minutes=1), actor=None, action="mailbox.fetch_requested", mailbox=box)

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    copied = list(AuditEvent.objects.order_by("seq"))
    assert [(e.seq, e.action, e.actor_id, e.actor_username) for e in copied] == [
        (1, "message.viewed", nurse.pk, "pflege"),
        (2, "message.claimed", nurse.pk, "pflege"),
        (3, "mailbox.fetch_requested", None, ""),
    ]
    assert {(e.mailbox_id, e.mailbox_address) for e in copied} == {(box.pk, "aufnahme@klinik.kim.telematik")}
    assert [(e.message_id, e.message_subject) for e in copied[:2]] == [(message.pk, "eAU Meier")] * 2
    assert copied[1].details == {"until": "2026-01-01T10:00:00+00:00"}
    assert ChainHead.objects.values_list("seq", flat=True).get() == 3
    assert chain_verify().ok
    # The old table is gone; new events continue the copied chain.
    assert "mailbox_auditevent" not in connection.introspection.table_names()
    out = StringIO()
    call_command("audit_verify", stdout=out)
    assert "3 Ereignisse" in out.getvalue()


def test_the_name_indexes_are_built_without_holding_off_the_trails_writes():
    # At a million events a plain CREATE INDEX keeps every audited action (a letter opened, a sign-in) waiting.
    out = StringIO()
    call_command("sqlmigrate", "audit", "0005", stdout=out)
    statements = [line for line in out.getvalue().splitlines() if line.startswith("CREATE INDEX")]
    assert len(statements) == 2
    assert all(line.startswith("CREATE INDEX CONCURRENTLY") for line in statements)
