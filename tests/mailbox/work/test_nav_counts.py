"""The navigation's counts on every page: open messages per mailbox and, of those, the ones the user has not read."""

from __future__ import annotations

import pytest

from mailbox.models import Message, MessageRead
from mailbox.selectors import mailbox_list_for_user
from tests.mailbox.factories import MailboxFactory, MembershipFactory
from tests.mailbox.work.support import Role, ingest

pytestmark = pytest.mark.django_db


def counts(user) -> dict[str, tuple[int, int]]:
    return {m.display_name: (m.unread_count, m.open_count) for m in mailbox_list_for_user(user)}


def test_unread_counts_only_open_messages_this_user_has_not_read(alice, bob, carol, box):
    new, started, waiting, fresh = (ingest(box) for _ in range(4))
    done_read, done_unread = ingest(box), ingest(box)
    Message.objects.filter(pk=started.pk).update(state=Message.State.IN_PROGRESS)
    Message.objects.filter(pk=waiting.pk).update(state=Message.State.WAITING)
    Message.objects.filter(pk__in=[done_read.pk, done_unread.pk]).update(state=Message.State.DONE)
    for message in (new, waiting, done_read):  # a read of a finished message changes no count
        MessageRead.objects.create(message=message, user=alice)
    for message in (started, waiting, fresh):
        MessageRead.objects.create(message=message, user=bob)
    other = MailboxFactory(display_name="Neurologie")
    MembershipFactory(mailbox=other, user=alice, role=Role.READER)
    MessageRead.objects.create(message=ingest(other), user=bob)  # bob is no member: his read is not alice's
    ingest(other)
    ingest(MailboxFactory(display_name="Fremd"))  # not alice's

    assert counts(alice) == {"Kardiologie": (2, 4), "Neurologie": (2, 2)}
    assert counts(bob) == {"Kardiologie": (1, 4)}
    assert counts(carol) == {"Kardiologie": (4, 4)}

    # Finishing a message the user has read takes it out of both counts; one they had not read, out of unread too.
    Message.objects.filter(pk__in=[new.pk, fresh.pk]).update(state=Message.State.DONE)
    assert counts(alice) == {"Kardiologie": (1, 2), "Neurologie": (2, 2)}
    assert counts(bob) == {"Kardiologie": (0, 2)}


def test_a_mailbox_without_open_messages_counts_zero(alice, box):
    MessageRead.objects.create(message=ingest(box), user=alice)
    Message.objects.filter(mailbox=box).update(state=Message.State.DONE)
    assert counts(alice) == {"Kardiologie": (0, 0)}


def test_the_navigation_reads_the_headers_counters_too(alice, bob, box, django_assert_num_queries):
    from kimportal.requestscope import request_scope
    from mailbox.models import Notification
    from mailbox.selectors import user_counters

    assigned = ingest(box)
    Message.objects.filter(pk=assigned.pk).update(assignee=alice, state=Message.State.IN_PROGRESS)
    Notification.objects.create(user=alice, kind=Notification.Kind.ASSIGNED, message=assigned)
    expected = user_counters(alice)
    assert expected == {"mine": 1, "notifications": 1}
    with request_scope():
        mailbox_list_for_user(alice)
        with django_assert_num_queries(0):
            assert user_counters(alice) == expected
        assert user_counters(bob) == {"mine": 0, "notifications": 0}  # another user's are his own


def test_a_socket_outside_a_request_reads_the_navigation_without_the_counters(alice, box):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ingest(box)
    with CaptureQueriesContext(connection) as captured:
        assert counts(alice) == {"Kardiologie": (1, 1)}
    # The socket asks user_counters() itself: the navigation's query does not count them for nothing.
    assert not any("mailbox_notification" in q["sql"] for q in captured.captured_queries)


@pytest.mark.parametrize("counters", [False, True])
def test_the_navigation_names_done_in_its_text_so_a_generic_plan_can_use_the_open_index(counters):
    from mailbox.selectors.mailboxes import _nav_query

    sql, params = _nav_query(1, [1], counters=counters).query.sql_with_params()
    # The counts of open messages: the partial index's predicate must follow from the statement without its
    # parameters, or PostgreSQL plans the statement anew on every execution.
    assert sql.count("\"state\" = 'done')") == 2
    assert counters or Message.State.DONE not in params  # (the header's counters are indexed otherwise)
