"""Absences: locks are released, substitutes receive assignments, one person's absences never overlap."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections, transaction
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.errors import PortalError
from mailbox.models import (
    Absence,
    Message,
)
from mailbox.services import absences, claims
from tests.mailbox.work.support import ingest

pytestmark = pytest.mark.django_db


def test_absence_starting_now_releases_the_users_locks(django_capture_on_commit_callbacks, alice, bob, box):
    mine = [ingest(box, subject=f"Brief {i}") for i in range(2)]
    theirs = ingest(box, subject="Brief von Bernd")
    for m in mine:
        claims.message_claim(user=alice, message=m)
    claims.message_claim(user=bob, message=theirs)

    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        absences.absence_create(
            user=alice, substitute=bob, starts_at=now - timedelta(minutes=5), ends_at=now + timedelta(days=1)
        )

    assert not Message.objects.filter(claimed_by=alice).exists()
    assert Message.objects.get(pk=theirs.pk).claimed_by == bob
    released = AuditEvent.objects.filter(action="message.released", actor_id=alice.pk)
    assert sorted(released.values_list("message_id", flat=True)) == sorted(m.pk for m in mine)
    assert all(e.details == {"reason": "absence"} for e in released)
    assert AuditEvent.objects.filter(action="absence.created", actor_id=alice.pk).exists()


def test_absence_cannot_name_oneself(alice):
    now = timezone.now()
    with pytest.raises(PortalError):
        absences.absence_create(user=alice, substitute=alice, starts_at=now, ends_at=now + timedelta(days=1))
    assert not Absence.objects.exists()


def test_an_absence_overlapping_one_already_entered_is_refused(alice, bob, carol):
    start = timezone.now().replace(microsecond=0) + timedelta(days=1)
    absences.absence_create(user=alice, substitute=bob, starts_at=start, ends_at=start + timedelta(days=5))

    with pytest.raises(PortalError) as refused:
        absences.absence_create(
            user=alice, substitute=carol, starts_at=start + timedelta(days=4), ends_at=start + timedelta(days=9)
        )
    shown = timezone.localtime(start)
    assert refused.value.message == (
        "Für diese Zeit ist bereits eine Abwesenheit eingetragen "
        f"({shown:%d.%m.%Y %H:%M} bis {shown + timedelta(days=5):%d.%m.%Y %H:%M})."
    )
    assert Absence.objects.filter(user=alice).count() == 1
    # Back to back is no overlap, and another person's absence at the same time is theirs alone.
    absences.absence_create(
        user=alice, substitute=carol, starts_at=start + timedelta(days=5), ends_at=start + timedelta(days=9)
    )
    absences.absence_create(user=bob, substitute=carol, starts_at=start, ends_at=start + timedelta(days=5))
    assert Absence.objects.filter(user=alice).count() == 2


def test_an_ended_absence_leaves_its_rest_free(alice, bob, carol):
    now = timezone.now()
    entered = absences.absence_create(
        user=alice, substitute=bob, starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=5)
    )
    absences.absence_end(user=alice, absence_id=entered.pk)
    absences.absence_create(
        user=alice, substitute=carol, starts_at=now + timedelta(minutes=1), ends_at=now + timedelta(days=2)
    )
    assert Absence.objects.filter(user=alice).count() == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent saves are specified for PostgreSQL")
def test_two_overlapping_absences_saved_at_once_leave_one(alice, bob, carol, owner):
    # The person in one tab and a manager (here: the owner) entering it for them: the first save has checked for
    # overlaps and inserted but not yet committed when the second checks. Without a lock the second sees nothing.
    start = timezone.now() + timedelta(days=1)
    first_saved, commit = threading.Event(), threading.Event()
    second_done = threading.Event()
    outcome: dict[str, object] = {}

    def first_tab() -> None:
        try:
            with transaction.atomic():
                absences.absence_create(user=alice, substitute=bob, starts_at=start, ends_at=start + timedelta(days=3))
                first_saved.set()
                commit.wait(30)
        except BaseException as exc:
            outcome["first"] = exc
        finally:
            connections.close_all()

    def second_tab() -> None:
        try:
            absences.absence_create(
                user=alice,
                substitute=carol,
                starts_at=start + timedelta(days=1),
                ends_at=start + timedelta(days=4),
                actor=owner,
            )
        except BaseException as exc:
            outcome["second"] = exc
        finally:
            second_done.set()
            connections.close_all()

    tabs = [threading.Thread(target=first_tab, daemon=True), threading.Thread(target=second_tab, daemon=True)]
    tabs[0].start()
    assert first_saved.wait(30)
    tabs[1].start()
    deadline = time.monotonic() + 30
    with connection.cursor() as cursor:  # until the second save has finished or waits for the first's lock
        while not second_done.is_set():
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                break
            assert time.monotonic() < deadline, "the second save neither finished nor waited"
            time.sleep(0.01)
    commit.set()
    for tab in tabs:
        tab.join(30)
    assert not any(tab.is_alive() for tab in tabs)

    assert "first" not in outcome
    assert isinstance(outcome.get("second"), PortalError)
    assert list(Absence.objects.filter(user=alice).values_list("substitute_id", flat=True)) == [bob.pk]
    assert AuditEvent.objects.filter(action="absence.created").count() == 1


def test_the_absence_page_says_why_an_overlapping_absence_was_not_saved_and_keeps_the_entry(client, alice, bob):
    start = timezone.localtime().replace(second=0, microsecond=0) + timedelta(days=1)
    absences.absence_create(user=alice, substitute=bob, starts_at=start, ends_at=start + timedelta(days=2))
    client.force_login(alice)
    entered = {
        "substitute": bob.pk,
        "starts_at": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M"),
    }
    response = client.post(reverse("mailbox:absences"), entered)
    assert response.status_code == 422
    page = response.content.decode()
    assert "Für diese Zeit ist bereits eine Abwesenheit eingetragen" in page
    assert f'value="{entered["starts_at"]}"' in page and f'value="{entered["ends_at"]}"' in page
    assert Absence.objects.filter(user=alice).count() == 1


def test_ending_an_absence_that_is_already_over_leaves_it_as_it_was(alice, bob, carol):
    # A page opened during the absence still shows "Beenden" after it ran out; pressing it must not stretch the
    # finished absence up to now (over the absence that followed it).
    now = timezone.now().replace(microsecond=0)
    over = Absence.objects.create(
        user=alice, substitute=bob, starts_at=now - timedelta(days=10), ends_at=now - timedelta(days=5)
    )
    later = Absence.objects.create(
        user=alice, substitute=carol, starts_at=now - timedelta(days=3), ends_at=now - timedelta(days=1)
    )

    absences.absence_end(user=alice, absence_id=over.pk)

    assert Absence.objects.get(pk=over.pk).ends_at == now - timedelta(days=5)
    assert Absence.objects.get(pk=later.pk).ends_at == now - timedelta(days=1)
    assert not AuditEvent.objects.filter(action="absence.ended").exists()


def test_an_absence_that_ended_before_it_was_entered_is_refused_with_its_reason(client, alice, bob):
    # A slip of the year (2025 for 2026) used to be "saved" and then appeared nowhere: the page lists only
    # absences still to come, and routing never sees it.
    start = timezone.localtime().replace(second=0, microsecond=0) - timedelta(days=365)
    client.force_login(alice)
    entered = {
        "substitute": bob.pk,
        "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
        "ends_at": (start + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M"),
    }
    response = client.post(reverse("mailbox:absences"), entered)
    assert response.status_code == 422
    assert "Das Ende der Abwesenheit liegt in der Vergangenheit." in response.content.decode()
    assert not Absence.objects.filter(user=alice).exists()
