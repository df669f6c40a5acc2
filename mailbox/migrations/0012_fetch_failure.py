"""Messages the CM lists but the portal could not fetch or store, each with its own retry state."""

from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0010_notification_work_returned"),
    ]

    operations = [
        migrations.CreateModel(
            name="FetchFailure",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("uidl", models.CharField(max_length=100)),
                ("pop3_size", models.PositiveBigIntegerField(blank=True, null=True)),
                ("tries", models.PositiveIntegerField(default=0)),
                ("last_error", models.TextField(blank=True)),
                ("first_failed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_failed_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("next_try_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "account",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="fetch_failures",
                        to="mailbox.kimaccount",
                    ),
                ),
            ],
            options={
                "verbose_name": "Nicht abrufbare Nachricht",
                "verbose_name_plural": "Nicht abrufbare Nachrichten",
                "ordering": ["first_failed_at", "pk"],
                "constraints": [models.UniqueConstraint(fields=("account", "uidl"), name="fetch_failure_unique_uidl")],
            },
        ),
    ]
