"""Dashboards: figures per mailbox from aggregate queries, the SLA clock in working hours, overdue notification,
and the pages (owners and managers only)."""

from __future__ import annotations

import copy
import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mailbox.models import Membership, Message, MessageRead, Notification
from mailbox.selectors.dashboard import (
    WorkingHours,
    daily_counts,
    mailbox_figures,
    overdue_messages,
    sla_cutoff,
    workload,
)
from mailbox.services.audit import AuditEvent  # whichever app holds the table
from mailbox.services.claims import message_claim
from mailbox.services.ingest import message_ingest
from mailbox.services.sla import sla_overdue_notify
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = WorkingHours(frozenset({1, 2, 3, 4, 5}), time(7), time(17))


def _manager(**kwargs):
    user = UserFactory(**kwargs)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def _mail(box, uidl: str, *, received_at: datetime, **fields) -> Message:
    message = message_ingest(mailbox=box, uidl=uidl, raw=simple_mail(f"Befund {uidl}"))
    Message.objects.filter(pk=message.pk).update(received_at=received_at, **fields)
    return Message.objects.get(pk=message.pk)


# --- the SLA clock ---------------------------------------------------------------------------------------------


def test_working_hours_skip_nights_and_weekends():
    monday_9 = datetime(2026, 11, 23, 9, 0, tzinfo=BERLIN)
    # Two hours on Monday morning, the other two from Friday afternoon.
    assert sla_cutoff(4, now=monday_9, calendar=OFFICE) == datetime(2026, 11, 20, 15, 0, tzinfo=BERLIN)
    # Within one working day.
    assert sla_cutoff(2, now=datetime(2026, 11, 24, 12, 30, tzinfo=BERLIN), calendar=OFFICE) == datetime(
        2026, 11, 24, 10, 30, tzinfo=BERLIN
    )
    # Saturday counts nothing: the clock stands at Friday 17:00.
    assert sla_cutoff(1, now=datetime(2026, 11, 28, 11, 0, tzinfo=BERLIN), calendar=OFFICE) == datetime(
        2026, 11, 27, 16, 0, tzinfo=BERLIN
    )
    every_hour = WorkingHours(frozenset(), OFFICE.start, OFFICE.end)
    assert sla_cutoff(4, now=monday_9, calendar=every_hour) == monday_9 - timedelta(hours=4)


def test_working_hours_across_a_change_of_summer_time_count_real_hours():
    # A window that holds 02:00-03:00: on the night summer time starts it is an hour shorter, on the night it
    # ends an hour longer. The SLA counts the hours that really passed.
    nights = WorkingHours(frozenset(range(1, 8)), time(1), time(5))
    utc = ZoneInfo("UTC")
    # 29 March 2026: 01:00 CET-05:00 CEST is three hours. 8 h back from Monday noon: Monday's four, Sunday's
    # three, then the last hour of Saturday's window.
    assert sla_cutoff(8, now=datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN), calendar=nights) == datetime(
        2026, 3, 28, 3, 0, tzinfo=utc
    )
    assert sla_cutoff(7, now=datetime(2026, 3, 30, 12, 0, tzinfo=BERLIN), calendar=nights) == datetime(
        2026, 3, 29, 0, 0, tzinfo=utc
    )
    # 25 October 2026: 01:00 CEST-05:00 CET is five hours; 9 h back end exactly at Sunday's 01:00 CEST.
    assert sla_cutoff(9, now=datetime(2026, 10, 26, 12, 0, tzinfo=BERLIN), calendar=nights) == datetime(
        2026, 10, 24, 23, 0, tzinfo=utc
    )


def test_working_hours_come_from_the_settings(settings):
    settings.KIMPORTAL_SLA_WORKDAYS = []
    now = timezone.now()
    assert sla_cutoff(3, now=now) == now - timedelta(hours=3)


# --- figures ---------------------------------------------------------------------------------------------------


def test_figures_per_mailbox(settings, django_assert_max_num_queries):
    settings.KIMPORTAL_SLA_WORKDAYS = []  # every hour counts: the test does not depend on the weekday
    now = timezone.now()
    box = MailboxFactory(sla_first_claim_hours=4)
    quiet = MailboxFactory()  # no SLA, no mail
    anna, ben, carl = UserFactory(first_name="Anna"), UserFactory(first_name="Ben"), UserFactory(first_name="Carl")
    # Overdue: unclaimed for 6 hours, unassigned; the oldest unassigned one.
    overdue = _mail(box, "late", received_at=now - timedelta(hours=6))
    # Routed to Anna at once but nobody opened it: still overdue (nobody claimed it).
    assigned_late = _mail(box, "routed", received_at=now - timedelta(hours=5), assignee=anna)
    # Claimed after 1 hour, open, Ben's.
    _mail(
        box,
        "claimed",
        received_at=now - timedelta(hours=8),
        first_claimed_at=now - timedelta(hours=7),
        assignee=ben,
        state=Message.State.IN_PROGRESS,
    )
    # Fresh: within the SLA, unassigned.
    _mail(box, "fresh", received_at=now - timedelta(hours=1))
    # Done by Ben: claimed after 2 hours, done after 10.
    done = _mail(
        box,
        "done",
        received_at=now - timedelta(days=1),
        first_claimed_at=now - timedelta(days=1) + timedelta(hours=2),
        done_at=now - timedelta(days=1) + timedelta(hours=10),
        state=Message.State.DONE,
        assignee=ben,
    )
    # Outside the window (40 days ago): not in the flow figures.
    _mail(box, "old", received_at=now - timedelta(days=40), state=Message.State.DONE, done_at=now - timedelta(days=39))
    # Double reading: Anna and Carl opened `done` before Ben claimed it; `overdue` was only opened by Carl.
    claim_time = done.first_claimed_at
    MessageRead.objects.create(message=done, user=anna, read_at=claim_time - timedelta(minutes=30))
    MessageRead.objects.create(message=done, user=carl, read_at=claim_time - timedelta(minutes=10))
    MessageRead.objects.create(message=done, user=ben, read_at=claim_time)
    MessageRead.objects.create(message=overdue, user=carl, read_at=now - timedelta(hours=2))
    # A read after the claim does not make it double reading.
    claimed_once = _mail(box, "after", received_at=now - timedelta(hours=3), first_claimed_at=now - timedelta(hours=2))
    MessageRead.objects.create(message=claimed_once, user=ben, read_at=now - timedelta(hours=2))
    MessageRead.objects.create(message=claimed_once, user=anna, read_at=now - timedelta(hours=1))

    with django_assert_max_num_queries(3):
        rows = mailbox_figures([box, quiet], now=now, days=30)
    figures, empty = rows
    assert (figures.open, figures.unassigned, figures.overdue) == (5, 3, 2)
    assert figures.oldest_unassigned_at == overdue.received_at
    assert (figures.received, figures.done) == (6, 1)
    # Claimed after 1 h, 2 h and 1 h.
    assert figures.avg_first_claim == timedelta(hours=4, minutes=0) / 3
    assert figures.avg_to_done == timedelta(hours=10)
    assert figures.double_read == 1
    assert (empty.open, empty.overdue, empty.double_read) == (0, None, 0)

    people = workload([box.pk], now=now, days=30)
    assert [(p.name.split()[0], p.open, p.done) for p in people] == [("Ben", 1, 1), ("Anna", 1, 0)]
    days = daily_counts([box.pk], now=now, days=7)
    assert len(days) == 7 and sum(d.received for d in days) == 6 and sum(d.done for d in days) == 1

    listed = overdue_messages(box, now=now, show_subjects=False)
    assert [m.pk for m in listed] == [overdue.pk, assigned_late.pk]
    assert all(m.subject is None for m in listed)


def test_the_figures_take_the_same_queries_for_many_messages(settings, django_assert_max_num_queries):
    settings.KIMPORTAL_SLA_WORKDAYS = []
    now = timezone.now()
    boxes = [MailboxFactory(sla_first_claim_hours=h) for h in (2, 8, None)]
    for box in boxes:
        for i in range(20):
            _mail(box, f"m{i}", received_at=now - timedelta(hours=i))
    with django_assert_max_num_queries(2 + 2 + 1 + 1):  # figures, double reading, daily (2), workload (+users)
        mailbox_figures(boxes, now=now, days=30)
        daily_counts([b.pk for b in boxes], now=now, days=30)
        workload([b.pk for b in boxes], now=now, days=30)
    assert [r.overdue for r in mailbox_figures(boxes, now=now, days=30)] == [18, 12, None]


def test_claiming_stamps_the_first_claim_once():
    box = MailboxFactory()
    user, other = UserFactory(), UserFactory()
    MembershipFactory(mailbox=box, user=user)
    MembershipFactory(mailbox=box, user=other)
    message = message_ingest(mailbox=box, uidl="a", raw=simple_mail())
    first = timezone.now()
    message_claim(user=user, message=message, now=first)
    Message.objects.filter(pk=message.pk).update(claimed_by=None, claim_expires_at=None)
    message_claim(user=other, message=message, now=first + timedelta(minutes=5))
    assert Message.objects.get(pk=message.pk).first_claimed_at == first


# --- notification ----------------------------------------------------------------------------------------------


def test_overdue_messages_are_notified_to_the_owners_once(settings):
    settings.KIMPORTAL_SLA_WORKDAYS = []
    now = timezone.now()
    box = MailboxFactory(sla_first_claim_hours=4, display_name="Aufnahme")
    owner, processor = UserFactory(), UserFactory()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=box, user=processor, role=Membership.Role.PROCESSOR)
    _mail(box, "late1", received_at=now - timedelta(hours=5))
    _mail(box, "late2", received_at=now - timedelta(hours=9))
    _mail(box, "claimed", received_at=now - timedelta(hours=9), first_claimed_at=now - timedelta(hours=1))
    _mail(box, "fresh", received_at=now - timedelta(hours=1))

    assert sla_overdue_notify(now=now) == 2
    notes = list(Notification.objects.all())
    assert [(n.user_id, n.kind, n.params["count"]) for n in notes] == [(owner.pk, "sla_overdue", 2)]
    assert "Aufnahme" in notes[0].display_text and "4" in notes[0].display_text
    # Once: the next run finds nothing new; a message that turns overdue later is told on its own.
    assert sla_overdue_notify(now=now) == 0
    assert sla_overdue_notify(now=now + timedelta(hours=3, minutes=1)) == 1
    assert Notification.objects.count() == 2


# --- pages -----------------------------------------------------------------------------------------------------


def test_mailbox_dashboard_for_owners_and_managers_only(client):
    box = MailboxFactory(sla_first_claim_hours=4)
    owner, processor, stranger, manager = UserFactory(), UserFactory(), UserFactory(), _manager()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=box, user=processor, role=Membership.Role.PROCESSOR)
    _mail(box, "late", received_at=timezone.now() - timedelta(days=3))
    url = reverse("mailbox:mailbox-dashboard", args=[box.pk])

    client.force_login(owner)
    page = client.get(url).content.decode()
    assert "<svg" in page and '<title id="daily-title">' in page and '<desc id="daily-desc">' in page
    assert 'id="overdue-count"' in page and "badge-danger" in page
    assert "Befund late" in page  # owners read the mailbox: the overdue list names the message

    client.force_login(manager)
    page = client.get(url + "?tage=7").content.decode()
    assert client.get(url).status_code == 200
    assert "Befund late" not in page  # a manager without membership sees that it waits, not what it is
    assert "Servicezeit speichern" in page

    client.force_login(processor)
    assert client.get(url).status_code == 403
    client.force_login(stranger)
    assert client.get(url).status_code == 404


def test_house_dashboard_and_sla_form(client):
    box = MailboxFactory(display_name="Kardiologie")
    _mail(box, "a", received_at=timezone.now())
    manager, owner = _manager(), UserFactory()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)

    client.force_login(owner)
    assert client.get(reverse("manage:dashboard")).status_code == 404
    assert client.post(reverse("manage:dashboard-sla", args=[box.pk]), {"hours": "2"}).status_code == 404

    client.force_login(manager)
    page = client.get(reverse("manage:dashboard")).content.decode()
    assert "Kardiologie" in page and reverse("mailbox:mailbox-dashboard", args=[box.pk]) in page
    assert '<th scope="col">' in page
    response = client.post(reverse("manage:dashboard-sla", args=[box.pk]), {"hours": "6"})
    assert response.status_code == 302
    box.refresh_from_db()
    assert box.sla_first_claim_hours == 6
    assert AuditEvent.objects.filter(action="mailbox.sla_changed", mailbox=box).exists()
    client.post(reverse("manage:dashboard-sla", args=[box.pk]), {"hours": ""})
    box.refresh_from_db()
    assert box.sla_first_claim_hours is None
    # Bad input: a German error, nothing changed.
    client.post(reverse("manage:dashboard-sla", args=[box.pk]), {"hours": "0"})
    box.refresh_from_db()
    assert box.sla_first_claim_hours is None


def _rows_read(sql: str) -> int:
    """Rows PostgreSQL reads from the message table to answer `sql` (index hits and rows filtered out alike)."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    read, nodes = 0, [plan[0]["Plan"]]
    while nodes:
        node = nodes.pop()
        nodes.extend(node.get("Plans", []))
        if node.get("Relation Name") == "mailbox_message":
            seen = (
                node["Actual Rows"]
                + node.get("Rows Removed by Filter", 0)
                + node.get("Rows Removed by Index Recheck", 0)
            )
            read += seen * node["Actual Loops"]
    return read


@pytest.mark.skipif(connection.vendor != "postgresql", reason="reads PostgreSQL's plans")
def test_the_figures_read_the_open_and_recent_messages_not_the_whole_history(settings):
    # Years of done mail must not make every dashboard view read all of it (measured: 200,000 messages, three
    # full scans of ~200 ms each). Sequential scans are off so that the plan shows what the indexes allow.
    settings.KIMPORTAL_SLA_WORKDAYS = []
    now = timezone.now()
    box, nurse = MailboxFactory(sla_first_claim_hours=4), UserFactory()
    old = _mail(box, "old", received_at=now - timedelta(days=400), state=Message.State.DONE, assignee_id=nurse.pk)
    history = []
    for i in range(3000):
        old.pk, old.uidl, old.done_at = None, f"old-{i}", now - timedelta(days=400 - i % 300)
        history.append(copy.copy(old))
    Message.objects.bulk_create(history)
    _mail(box, "open", received_at=now - timedelta(days=40), assignee_id=nurse.pk)
    _mail(box, "new", received_at=now - timedelta(hours=1))
    _mail(box, "done", received_at=now - timedelta(days=2), state=Message.State.DONE, done_at=now - timedelta(days=1))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE mailbox_message")
        cursor.execute("SET LOCAL enable_seqscan = off")

    with CaptureQueriesContext(connection) as queries:
        rows = mailbox_figures([box], now=now, days=30)
        days = daily_counts([box.pk], now=now, days=30)
        people = workload([box.pk], now=now, days=30)

    assert (rows[0].open, rows[0].received, rows[0].done, rows[0].overdue) == (2, 2, 1, 1)
    assert sum(d.received for d in days) == 2 and sum(d.done for d in days) == 1
    assert [(p.open, p.done) for p in people] == [(1, 0)]
    read = [(_rows_read(q["sql"]), q["sql"][:80]) for q in queries.captured_queries if "mailbox_message" in q["sql"]]
    assert len(read) == 5 and max(read)[0] < 100, read
