# Drafts from the KIS (issue 12): client systems, their tokens, the link from a client's document id to the draft,
# and the callbacks announcing state changes.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0020_message_is_delivery_report"),
        ("signing", "0006_received_signatures"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="KisClient",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True, verbose_name="Name")),
                ("callback_url", models.URLField(blank=True, max_length=500, verbose_name="Rückruf-URL")),
                ("callback_secret", models.TextField(blank=True)),
                ("is_active", models.BooleanField(default=True, verbose_name="aktiv")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "mailboxes",
                    models.ManyToManyField(
                        blank=True,
                        related_name="+",
                        to="mailbox.mailbox",
                        verbose_name="Abteilungen (Absender-Postfächer)",
                    ),
                ),
            ],
            options={
                "verbose_name": "KIS-Anbindung",
                "verbose_name_plural": "KIS-Anbindungen",
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="KisDraft",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("document_id", models.CharField(max_length=100)),
                ("submission_digest", models.CharField(max_length=64)),
                ("announced_state", models.CharField(blank=True, max_length=20)),
                ("announced_review", models.CharField(blank=True, max_length=20)),
                ("announced_version", models.PositiveIntegerField(default=0)),
                ("finished", models.BooleanField(default=False)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="drafts", to="signing.kisclient"
                    ),
                ),
                (
                    "draft",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE, related_name="kis", to="signing.draft"
                    ),
                ),
            ],
            options={
                "verbose_name": "Entwurf aus dem KIS",
                "verbose_name_plural": "Entwürfe aus dem KIS",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("finished", False)), fields=["client"], name="signing_kisdraft_open"
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(fields=("client", "document_id"), name="signing_kisdraft_unique_document")
                ],
            },
        ),
        migrations.CreateModel(
            name="KisCallback",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("payload", models.JSONField()),
                (
                    "state",
                    models.CharField(
                        choices=[("pending", "ausstehend"), ("delivered", "zugestellt"), ("failed", "aufgegeben")],
                        default="pending",
                        max_length=10,
                    ),
                ),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("next_attempt_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("last_error", models.CharField(blank=True, max_length=500)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("delivered_at", models.DateTimeField(blank=True, null=True)),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="callbacks", to="signing.kisclient"
                    ),
                ),
                (
                    "link",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="callbacks", to="signing.kisdraft"
                    ),
                ),
            ],
            options={
                "verbose_name": "KIS-Rückruf",
                "verbose_name_plural": "KIS-Rückrufe",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("state", "pending")),
                        fields=["next_attempt_at"],
                        name="signing_kiscallback_due",
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="KisToken",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("token_hash", models.CharField(max_length=64, unique=True)),
                ("prefix", models.CharField(max_length=20, verbose_name="Anfang")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, verbose_name="erzeugt")),
                ("revoked_at", models.DateTimeField(blank=True, null=True, verbose_name="widerrufen")),
                ("last_used_at", models.DateTimeField(blank=True, null=True, verbose_name="zuletzt benutzt")),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="tokens", to="signing.kisclient"
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "revoked_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "KIS-Token",
                "verbose_name_plural": "KIS-Tokens",
                "ordering": ["-created_at", "-id"],
            },
        ),
    ]
