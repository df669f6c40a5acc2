"""Recording: snapshots instead of foreign keys, no actor for the system or a failed sign-in, details as stored."""

from __future__ import annotations

import pytest
from django.db import connection

from audit.chain import content_hash
from audit.models import AuditEvent
from audit.services import event_record
from mailbox.models import Message
from mailbox.services.audit import audit_record
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db


def test_snapshots_are_taken_even_from_a_message_loaded_with_only_its_ids():
    box = MailboxFactory(address="aufnahme@klinik.kim.telematik")
    message = message_ingest(mailbox=box, uidl="u1", raw=MAIL_WITH_PDF)
    user = UserFactory(username="pflege")
    slim = Message.objects.only("pk", "mailbox_id", "state").get(pk=message.pk)
    event = audit_record(actor=user, action="message.viewed", message=slim)
    assert (event.actor_id, event.actor_username) == (user.pk, "pflege")
    assert (event.mailbox_id, event.mailbox_address) == (box.pk, "aufnahme@klinik.kim.telematik")
    assert (event.message_id, event.message_subject) == (message.pk, "Entlassbrief Müller")


def test_deleting_the_user_keeps_the_event_and_its_name():
    user = UserFactory(username="ehemalig")
    event_record(actor=user, action="message.viewed")
    user.delete()  # itself audited (user.deleted)
    event = AuditEvent.objects.get(action="message.viewed")
    assert (event.actor_id is not None, event.actor_username) == (True, "ehemalig")


def test_no_actor_and_the_name_tried_in_the_details():
    event = audit_record(actor=None, action="signin.failed", username="aerztin", address="10.0.0.7")
    assert (event.actor_id, event.actor_username) == (None, "")
    assert event.details == {"username": "aerztin", "address": "10.0.0.7"}


def test_the_hash_covers_the_details_as_the_database_gives_them_back():
    from datetime import datetime, timedelta

    from django.utils import timezone

    until = timezone.now() + timedelta(minutes=1)
    event = event_record(action="message.claimed", details={"until": until, "ratio": 1e16, "ids": (1, 2)})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    stored = AuditEvent.objects.get(pk=event.pk)
    assert isinstance(stored.at, datetime)
    fields = ("at", "action", "actor_id", "actor_username", "mailbox_id", "mailbox_address", "message_id")
    recomputed = content_hash(
        **{name: getattr(stored, name) for name in fields},
        message_subject=stored.message_subject,
        details=stored.details,
    )
    assert recomputed == stored.content_hash


def test_the_compiled_insert_stores_what_create_would_and_no_signal_is_missed():
    # event_record inserts by a statement compiled once (PostgreSQL), not by save(): that skips save()'s signals,
    # so none may listen to AuditEvent.
    from django.db.models import signals

    for signal in (signals.pre_init, signals.post_init, signals.pre_save, signals.post_save):
        assert not signal.has_listeners(AuditEvent)
    user = UserFactory(username="pflege")
    event = event_record(actor=user, action="message.viewed", mailbox_id=3, message_id=7, details={"a": [1]})
    assert event.pk is not None and not event._state.adding
    stored = AuditEvent.objects.get(pk=event.pk)
    names = ("at", "action", "actor_id", "actor_username", "mailbox_id", "message_id", "details", "content_hash")
    assert {n: getattr(stored, n) for n in names} == {n: getattr(event, n) for n in names}
