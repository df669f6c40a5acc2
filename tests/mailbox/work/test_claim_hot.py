"""The read-lock's updates are PostgreSQL HOT updates, and the full-text column follows only the text
(migration 0023): taking, renewing and releasing a lock on every message page must not write an entry into every
index of the wide message table, nor compute the search column from the whole body again."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from mailbox.models import Message
from mailbox.selectors import MessageFilter, message_list_for_user
from mailbox.services import claims
from tests.mailbox.work.support import ingest

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="HOT updates and the tsvector are PostgreSQL's"),
]


def _updates() -> tuple[int, int]:
    """Row updates of mailbox_message in this transaction (the test's): all, and those that were HOT."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            ["mailbox_message", "mailbox_message"],
        )
        updated, hot = cursor.fetchone()
    return updated, hot


def _search_column(message: Message) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT search_tsv::text FROM mailbox_message WHERE id = %s", [message.pk])
        return cursor.fetchone()[0]


def _found(user, query: str) -> list[int]:
    return [m.pk for m in message_list_for_user(user, filters=MessageFilter(q=query)).object_list]


def _in_own_transaction(step):
    """Run a step in a transaction of its own, as a request does, with the row updates it made (all, HOT). One
    transaction for all steps would keep every version of the row on its page (none is dead before the commit), and
    whether four fit depended on what earlier tests had left on that page."""
    with transaction.atomic():
        before = _updates()
        result = step()
        updated, hot = (now - then for now, then in zip(_updates(), before, strict=True))
    return result, updated, hot


@pytest.mark.django_db(transaction=True)
def test_taking_renewing_and_releasing_the_lock_touch_no_index(alice, bob, box):
    message = ingest(box, subject="Laborbericht", body="Anbei die Befunde vom Montag.")
    words = _search_column(message)
    steps = [
        (lambda: claims.message_claim(user=alice, message=message).won),
        (lambda: claims.message_claim(user=alice, message=message).renewed),  # the same person again
        (lambda: claims.message_release(user=alice, message=message)),
        (lambda: claims.message_claim(user=bob, message=message).won),
    ]
    for step in steps:
        done, updated, hot = _in_own_transaction(step)
        assert done
        assert updated >= 1
        assert hot == updated
    assert _search_column(message) == words


def test_the_search_column_follows_subject_sender_and_body(alice, box):
    message = ingest(box, subject="Laborbericht", body="Anbei die Befunde vom Montag.", sender="Labor <l@l.de>")
    assert _found(alice, "Befunde") == [message.pk]
    # As retention empties a message's content: the words of the old body are no longer found.
    Message.objects.filter(pk=message.pk).update(subject="Gelöscht", text_body="")
    assert _found(alice, "Befunde") == []
    assert _found(alice, "Laborbericht") == []
    assert _found(alice, "Gelöscht") == [message.pk]
    Message.objects.filter(pk=message.pk).update(from_name="Praxis Sommer")
    assert _found(alice, "Sommer") == [message.pk]
