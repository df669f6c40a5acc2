from django.db import migrations, models


def done_messages_start_their_clock(apps, schema_editor):
    # When a message became done before done_at existed is unknown: its retention clock starts at this
    # upgrade, so nothing is deleted earlier than the mailbox's period allows.
    Message = apps.get_model("mailbox", "Message")
    Message.objects.filter(state="done", done_at__isnull=True).update(done_at=models.functions.Now())


class Migration(migrations.Migration):
    dependencies = [
        ("mailbox", "0014_manage_house_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="mailbox",
            name="sla_first_claim_hours",
            field=models.PositiveSmallIntegerField(
                blank=True, null=True, verbose_name="Erste Bearbeitung binnen (Arbeitsstunden)"
            ),
        ),
        migrations.AddField(
            model_name="mailbox",
            name="retention_days_after_done",
            field=models.PositiveIntegerField(
                blank=True, null=True, verbose_name="Inhalte löschen nach (Tagen ab erledigt)"
            ),
        ),
        migrations.AddField(
            model_name="message",
            name="first_claimed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="done_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="sla_notified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="legal_hold",
            field=models.BooleanField(default=False, verbose_name="Aufbewahrungssperre"),
        ),
        migrations.AddField(
            model_name="message",
            name="content_deleted_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("content_deleted_at__isnull", True), ("state", "done")),
                fields=["mailbox", "done_at"],
                name="message_retention_due",
            ),
        ),
        migrations.AlterField(
            model_name="notification",
            name="kind",
            field=models.CharField(
                choices=[
                    ("mention", "Erwähnung"),
                    ("assigned", "Zuweisung"),
                    ("lock_broken", "Sperre aufgehoben"),
                    ("work_returned", "Arbeit zurückgegeben"),
                    ("sla_overdue", "Frist überschritten"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(done_messages_start_their_clock, migrations.RunPython.noop),
    ]
