"""Attachments named by cid: in a message's HTML that the message view does not embed there (a PDF, a TIFF, an
image over 5 MB) were marked inline and left out of the attachment list: shown nowhere. They are listed again,
and their messages count them. The types and the limit as of this migration (mailbox.parsing.inline_shown)."""

from __future__ import annotations

from django.db import migrations
from django.db.models import Count, Q

SHOWN_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp")
MAX_BYTES = 5 * 1024 * 1024


def list_them(apps, schema_editor):
    Attachment = apps.get_model("mailbox", "Attachment")
    Message = apps.get_model("mailbox", "Message")
    hidden = Attachment.objects.filter(is_inline=True).filter(~Q(content_type__in=SHOWN_TYPES) | Q(size__gt=MAX_BYTES))
    message_ids = sorted(set(hidden.values_list("message_id", flat=True)))
    if not message_ids:
        return
    hidden.update(is_inline=False)
    for start in range(0, len(message_ids), 1000):
        chunk = message_ids[start : start + 1000]
        counts = (
            Message.objects.filter(pk__in=chunk)
            .annotate(listed=Count("attachments", filter=Q(attachments__is_inline=False)))
            .values_list("pk", "listed")
        )
        for pk, listed in counts:
            Message.objects.filter(pk=pk).update(attachment_count=min(listed, 32767))


class Migration(migrations.Migration):
    dependencies = [("mailbox", "0027_assignment_note_translated_when_shown")]

    # Backwards: nothing to undo (they were shown nowhere; listing them stays right).
    operations = [migrations.RunPython(list_them, migrations.RunPython.noop)]
