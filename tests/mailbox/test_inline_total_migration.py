"""Migration 0032: stored mail whose embedded images exceed the total keeps its first ones inline; the rest are
listed as attachments again, and counted."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from mailbox.models import Attachment, Message
from tests.mailbox.factories import MailboxFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("mailbox", "0031_mailbox_display_name_one_line")
MB = 1024 * 1024


def test_images_beyond_the_total_are_listed_again_and_counted():
    box = MailboxFactory()
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps
    OldMessage = old.get_model("mailbox", "Message")
    OldAttachment = old.get_model("mailbox", "Attachment")
    heavy = OldMessage.objects.create(mailbox_id=box.pk, uidl="u1", message_id="<m@x>", subject="Bilder", size=10,
                                      attachment_count=1)  # fmt: skip
    rows = [
        ("a.png", 4 * MB, "<a@x>", True),
        ("a-kopie.png", 4 * MB, "<A@x>", True),  # the same name again: the view shows the first only, listed
        ("b.png", 4 * MB, "<b@x>", True),
        ("c.png", 4 * MB, "<c@x>", True),  # 12 MB: beyond the total
        ("d.png", 1 * MB, "<d@x>", True),  # 9 MB: fits
        ("brief.pdf", 100, "", False),
    ]
    for position, (name, size, cid, inline) in enumerate(rows):
        OldAttachment.objects.create(
            message_id=heavy.pk, position=position, filename=name, content_type="image/png", size=size,
            sha256=f"{position:064x}", content_id=cid, is_inline=inline,
        )  # fmt: skip
    light = OldMessage.objects.create(mailbox_id=box.pk, uidl="u2", message_id="<n@x>", subject="Logo", size=10,
                                      attachment_count=0)  # fmt: skip
    OldAttachment.objects.create(message_id=light.pk, position=0, filename="logo.png", content_type="image/png",
                                 size=9 * MB, sha256="f" * 64, content_id="<logo@x>", is_inline=True)  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    listed = Attachment.objects.filter(message_id=heavy.pk, is_inline=False).values_list("filename", flat=True)
    assert sorted(listed) == ["a-kopie.png", "brief.pdf", "c.png"]
    assert Message.objects.get(pk=heavy.pk).attachment_count == 3
    assert Attachment.objects.get(message_id=light.pk).is_inline
    assert Message.objects.get(pk=light.pk).attachment_count == 0
