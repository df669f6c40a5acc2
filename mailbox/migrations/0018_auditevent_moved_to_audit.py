"""mailbox.AuditEvent is gone: its rows were copied into the audit app's trail first (audit 0002)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0017_merge_0016_membership_granted_0016_routing_rules"),
        ("audit", "0002_copy_mailbox_events"),
    ]

    operations = [migrations.DeleteModel(name="AuditEvent")]
