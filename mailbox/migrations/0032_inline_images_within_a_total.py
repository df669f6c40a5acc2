"""A message's embedded images together stay within 10 MB (mailbox.parsing.MAX_INLINE_TOTAL_BYTES): the message
view reads them and sends them in one document on every view. Stored mail with more keeps its first images inline,
in their order, as ingest now does; the rest, and further parts under a name already shown, are listed as
attachments again (and counted), not hidden. The limit as of this migration."""

from __future__ import annotations

from django.db import migrations
from django.db.models import Count, Q, Sum

TOTAL_BYTES = 10 * 1024 * 1024


def list_beyond_the_total(apps, schema_editor):
    Attachment = apps.get_model("mailbox", "Attachment")
    Message = apps.get_model("mailbox", "Message")
    heavy = (
        Attachment.objects.filter(is_inline=True)
        .values("message_id")
        .annotate(total=Sum("size"))
        .filter(total__gt=TOTAL_BYTES)
        .values_list("message_id", flat=True)
    )
    for message_id in sorted(set(heavy)):
        embedded: set[str] = set()
        used = 0
        listed: list[int] = []
        rows = Attachment.objects.filter(message_id=message_id, is_inline=True).order_by("position")
        for pk, content_id, size in rows.values_list("pk", "content_id", "size"):
            key = content_id.strip().strip("<>").lower()
            if key in embedded:
                listed.append(pk)  # a name given to several parts: the view shows the first only
            elif used + size <= TOTAL_BYTES:
                embedded.add(key)
                used += size
            else:
                listed.append(pk)
        if listed:
            Attachment.objects.filter(pk__in=listed).update(is_inline=False)
            count = Attachment.objects.filter(message_id=message_id).aggregate(n=Count("pk", filter=Q(is_inline=False)))
            Message.objects.filter(pk=message_id).update(attachment_count=min(count["n"], 32767))


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0031_mailbox_display_name_one_line")]

    # Backwards: nothing to undo (listing them stays right).
    operations = [migrations.RunPython(list_beyond_the_total, migrations.RunPython.noop)]
