from django.db import migrations, models
from django.db.models import Count, OuterRef, Subquery


def backfill(apps, schema_editor):
    Message = apps.get_model("mailbox", "Message")
    Attachment = apps.get_model("mailbox", "Attachment")
    counts = (
        Attachment.objects.filter(message=OuterRef("pk"), is_inline=False)
        .order_by()
        .values("message")
        .annotate(c=Count("pk"))
        .values("c")
    )
    Message.objects.filter(attachments__isnull=False).update(attachment_count=Subquery(counts))


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0005_open_index")]
    operations = [
        migrations.AddField(
            model_name="message", name="attachment_count", field=models.PositiveSmallIntegerField(default=0)
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
