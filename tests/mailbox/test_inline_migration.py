"""Migration 0028: attachments marked inline although the message view shows them nowhere are listed again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from mailbox.models import Attachment, Message
from tests.mailbox.factories import MailboxFactory

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("mailbox", "0027_assignment_note_translated_when_shown")


def test_parts_the_html_could_not_show_are_listed_again_and_counted():
    box = MailboxFactory()
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps
    message = old.get_model("mailbox", "Message").objects.create(
        mailbox_id=box.pk, uidl="u1", message_id="<m@x>", subject="Befund", size=10, attachment_count=1
    )
    OldAttachment = old.get_model("mailbox", "Attachment")
    rows = [
        ("logo.png", "image/png", 100, True),  # shown in the HTML: stays inline
        ("befund.pdf", "application/pdf", 100, True),  # named by cid:, shown nowhere
        ("riesig.png", "image/png", 6 * 1024 * 1024, True),  # over the embedding limit
        ("brief.pdf", "application/pdf", 100, False),
    ]
    for position, (name, ctype, size, inline) in enumerate(rows):
        OldAttachment.objects.create(
            message_id=message.pk, position=position, filename=name, content_type=ctype, size=size,
            sha256=f"{position:064x}", content_id=f"<{position}@x>" if inline else "", is_inline=inline,
        )  # fmt: skip
    untouched = old.get_model("mailbox", "Message").objects.create(
        mailbox_id=box.pk, uidl="u2", message_id="<n@x>", subject="Ohne", size=10, attachment_count=3
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

    listed = Attachment.objects.filter(message_id=message.pk, is_inline=False).values_list("filename", flat=True)
    assert sorted(listed) == ["befund.pdf", "brief.pdf", "riesig.png"]
    assert Message.objects.get(pk=message.pk).attachment_count == 3
    assert Message.objects.get(pk=untouched.pk).attachment_count == 3  # no hidden parts: not recounted
