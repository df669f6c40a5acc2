"""The events recorded before the trail had its own app move here, none lost, oldest first, chained.

The old rows referenced users, mailboxes and messages by foreign key; they arrive with the ids as plain numbers
and readable snapshots (user name, mailbox address, subject) taken now. mailbox's next migration removes the
old table only after this one ran.
"""

from __future__ import annotations

from django.db import migrations

from audit.chain import GENESIS, content_hash, details_normalized, link_hash

BATCH = 2000


def copy_mailbox_events(apps, schema_editor) -> None:
    Old = apps.get_model("mailbox", "AuditEvent")
    New = apps.get_model("audit", "AuditEvent")
    ChainHead = apps.get_model("audit", "ChainHead")
    db = schema_editor.connection.alias
    rows = (
        Old.objects.using(db)
        .order_by("at", "id")
        .values(
            "at",
            "action",
            "details",
            "actor_id",
            "actor__username",
            "mailbox_id",
            "mailbox__address",
            "message_id",
            "message__subject",
        )
    )
    seq, prev = 0, GENESIS
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        fields = {
            "at": row["at"],
            "action": row["action"],
            "actor_id": row["actor_id"],
            "actor_username": row["actor__username"] or "",
            "mailbox_id": row["mailbox_id"],
            "mailbox_address": row["mailbox__address"] or "",
            "message_id": row["message_id"],
            "message_subject": (row["message__subject"] or "")[:500],
            "details": details_normalized(row["details"] or {}),
        }
        seq += 1
        digest = content_hash(**fields)
        link = link_hash(prev, seq, digest)
        batch.append(New(seq=seq, content_hash=digest, prev_hash=prev, hash=link, **fields))
        prev = link
        if len(batch) >= BATCH:
            New.objects.using(db).bulk_create(batch)
            batch = []
    New.objects.using(db).bulk_create(batch)
    ChainHead.objects.using(db).update_or_create(pk=1, defaults={"seq": seq, "hash": prev})


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        # The last mailbox migration that still has mailbox.AuditEvent.
        ("mailbox", "0014_manage_house_permission"),
    ]

    operations = [migrations.RunPython(copy_mailbox_events, migrations.RunPython.noop)]
