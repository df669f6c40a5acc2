"""A conversation flooded by mails that all name one Message-ID: the page's own message and the real conversation
stay in the conversation panel."""

from __future__ import annotations

import pytest

from mailbox.models import Message
from mailbox.selectors.outbox import thread_for_user
from mailbox.services.ingest import message_ingest
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_flood_naming_a_letter_pushes_neither_the_letter_nor_the_real_answer_out_of_the_conversation():
    box = MailboxFactory()
    reader = UserFactory()
    MembershipFactory(mailbox=box, user=reader)
    letter = message_ingest(mailbox=box, uidl="letter", raw=simple_mail("Entlassbrief"))
    flood = message_ingest(mailbox=box, uidl="flood-0", raw=simple_mail("Spam", In_Reply_To=letter.message_id))
    copies = []
    for n in range(1, 250):
        flood.pk = None
        flood.uidl = f"flood-{n}"
        flood.message_id = f"<flood-{n}@elsewhere.example>"
        copies.append(Message(**{f.attname: getattr(flood, f.attname) for f in Message._meta.concrete_fields}))
    Message.objects.bulk_create(copies)
    answer = message_ingest(
        mailbox=box, uidl="answer", raw=simple_mail("AW: Entlassbrief", In_Reply_To=letter.message_id)
    )

    thread = thread_for_user(reader, answer, max_items=50)
    shown = [item.message.pk for item in thread if item.message is not None]
    assert len(thread) == 50
    assert answer.pk in shown, "the page's own message is part of its conversation"
    assert letter.pk in shown, "the letter the flood copies was there first"
