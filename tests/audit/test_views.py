"""Managers search and export the trail; everyone else finds nothing there; the export is itself on the trail;
a message's page shows its own trail to the mailbox's owners and to managers."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from audit import selectors, views
from audit.models import AuditEvent
from mailbox.models import Membership
from mailbox.permissions import MANAGER_PERMISSION
from mailbox.services.audit import audit_record
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sealed():
    """Rows are sealed when their transaction commits; a test's transaction never does, so seal at once."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _manager(username: str = "leitung"):
    user = UserFactory(username=username)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


@pytest.fixture
def box():
    return MailboxFactory(address="kardiologie@klinik.kim.telematik")


@pytest.fixture
def message(box):
    return message_ingest(mailbox=box, uidl="u1", raw=MAIL_WITH_PDF)


def _csv(response) -> list[list[str]]:
    # The stream is asynchronous (for the ASGI server); the test client collects it as a WSGI server would.
    with pytest.warns(Warning, match="consume asynchronous iterators"):
        body = b"".join(response).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_audit_pages_know_the_manager_permission_mailbox_defines():
    assert views.MANAGER_PERMISSION == MANAGER_PERMISSION


@pytest.mark.parametrize("name", ["audit:search", "audit:export"])
def test_non_managers_get_404_owners_included(name, client, box):
    owner = UserFactory(username="chefin")
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    client.force_login(owner)
    assert client.get(reverse(name)).status_code == 404
    assert client.post(reverse(name)).status_code == 404
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


@pytest.mark.parametrize("name", ["audit:search", "audit:export"])
def test_anonymous_is_sent_to_login(name, client):
    # A download link in a tab whose session has expired: to the login, and no export is recorded.
    response = client.get(reverse(name), {"user": "pflege"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_search_filters_by_user_mailbox_message_patient_action_and_time(client, box, message):
    nurse, doctor = UserFactory(username="pflege"), UserFactory(username="aerztin")
    audit_record(actor=nurse, action="message.viewed", message=message)
    audit_record(actor=doctor, action="attachment.downloaded", message=message, attachment="befund.pdf")
    audit_record(actor=None, action="signin.failed", username="aerztin")
    other = MailboxFactory(address="radiologie@klinik.kim.telematik")
    audit_record(actor=nurse, action="mailbox.fetch_requested", mailbox=other)
    client.force_login(_manager())

    def found(**query) -> list[str]:
        response = client.get(reverse("audit:search"), query)
        assert response.status_code == 200
        # The manager being given the right and signing in are on the trail too; this test is about the events it
        # records itself.
        setup = ("signin.succeeded", "user.permissions_changed")
        events = [e for e, _ in response.context["events"] if e.action not in setup]
        return [f"{e.actor_display}/{e.action}" for e in events]

    assert found(user="aerztin") == ["aerztin/signin.failed", "aerztin/attachment.downloaded"]
    assert found(mailbox="radiologie") == ["pflege/mailbox.fetch_requested"]
    assert found(mailbox=str(box.pk)) == ["aerztin/attachment.downloaded", "pflege/message.viewed"]
    assert found(message=message.pk) == ["aerztin/attachment.downloaded", "pflege/message.viewed"]
    # The patient reference: the subject snapshot ("Entlassbrief Müller") or a detail.
    assert found(patient="müller") == ["aerztin/attachment.downloaded", "pflege/message.viewed"]
    assert found(patient="befund.pdf") == ["aerztin/attachment.downloaded"]
    assert found(action="message.viewed") == ["pflege/message.viewed"]
    later = timezone.localtime() + timedelta(minutes=5)
    assert found(since=later.strftime("%Y-%m-%dT%H:%M")) == []
    assert len(found(until=later.strftime("%Y-%m-%dT%H:%M"))) == 4


def _plans_filter_out(queries: list[dict]) -> int:
    """How many rows PostgreSQL read and threw away answering these queries (EXPLAIN ANALYZE)."""
    removed = 0

    def walk(node: dict) -> None:
        nonlocal removed
        removed += node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
        for child in node.get("Plans", []):
            walk(child)

    with connection.cursor() as cursor:
        for query in queries:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + query["sql"])
            walk(cursor.fetchone()[0][0]["Plan"])
    return removed


def _busy_trail(rows: int) -> None:
    """`rows` events of forty people in thirty mailboxes, each of another letter; then fresh statistics."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO audit_auditevent (at, action, actor_id, actor_username, mailbox_address, message_subject,"
            " details, content_hash, prev_hash, hash)"
            " SELECT now(), 'message.viewed', g %% 40 + 1, 'pflege' || (g %% 40),"
            " 'station' || (g %% 30) || '@klinik.kim',"
            " 'Befund ' || g, jsonb_build_object('attachment', 'befund' || g || '.pdf'), md5(g::text), '', ''"
            " FROM generate_series(1, %s) g",
            [rows],
        )
        cursor.execute("ANALYZE audit_auditevent")


def test_a_name_on_a_long_trail_is_found_without_reading_the_whole_trail():
    # A busy house's trail with a rare name's two events in the middle: one acted, one was tried at sign-in.
    _busy_trail(5000)
    rare = UserFactory(username="selten")
    audit_record(actor=rare, action="message.viewed")
    audit_record(actor=None, action="signin.failed", username="Selten")
    _busy_trail(3000)

    with CaptureQueriesContext(connection) as page:
        events, more = selectors.event_search(selectors.AuditFilter(user="SELTEN"))
    with CaptureQueriesContext(connection) as batch:
        exported = selectors.event_export_batch(selectors.AuditFilter(user="selten"))

    assert [e.action for e in events] == ["signin.failed", "message.viewed"] and more is None
    assert [e.action for e in exported] == ["message.viewed", "signin.failed"]
    # The page and the batch come from the name's own rows, not from a walk over the other 8,000.
    assert _plans_filter_out(page.captured_queries + batch.captured_queries) < 50


@pytest.mark.parametrize(
    ("query", "expected"),
    [({"patient": "meierhofer"}, 2), ({"mailbox": "hno-ambulanz"}, 1)],
)
def test_a_rare_text_on_a_long_trail_is_found_without_reading_the_whole_trail(box, query, expected):
    # Who opened Frau Meierhofer's letters, and what happened in the small HNO mailbox, on a busy trail.
    _busy_trail(5000)
    rare = MailboxFactory(address="hno-ambulanz@klinik.kim.telematik")
    audit_record(actor=None, action="mailbox.fetch_requested", mailbox=rare)
    message = message_ingest(mailbox=box, uidl="u9", raw=MAIL_WITH_PDF.replace(b"Subject: ", b"Subject: Meierhofer "))
    audit_record(actor=None, action="message.viewed", message=message)  # the subject snapshot names her
    audit_record(actor=None, action="note.added", note="Rückruf Frau Meierhofer")  # a detail does
    _busy_trail(3000)
    audit_filter = selectors.AuditFilter(**query)

    with CaptureQueriesContext(connection) as reads:
        events, more = selectors.event_search(audit_filter)
        exported = selectors.event_export_batch(audit_filter)

    assert len(events) == len(exported) == expected and more is None
    assert _plans_filter_out(reads.captured_queries) < 50


def test_a_bad_filter_gets_a_german_error_and_no_results(client):
    client.force_login(_manager())
    response = client.get(reverse("audit:search"), {"since": "2026-02-01T10:00", "until": "2026-01-01T10:00"})
    assert "„bis“ muss nach „von“ liegen." in response.content.decode()
    assert response.context["events"] == []


def test_a_bad_filter_searched_by_htmx_names_its_error_instead_of_finding_nothing(client):
    # htmx swaps only the results box: the form with its field errors is not part of the answer.
    audit_record(actor=None, action="mailbox.fetch_requested")
    client.force_login(_manager())
    response = client.get(
        reverse("audit:search"),
        {"since": "2026-02-01T10:00", "until": "2026-01-01T10:00"},
        headers={"HX-Request": "true"},
    )
    html = response.content.decode()
    assert response.status_code == 422  # swapped, as base.html's htmx responseHandling says
    assert 'id="audit-results"' in html and "<form" not in html
    assert "„bis“ muss nach „von“ liegen." in html
    assert "Keine Ereignisse gefunden." not in html and reverse("audit:export") not in html


def test_pages_go_back_in_time_by_keyset_without_gaps_or_repeats(client, monkeypatch):
    monkeypatch.setattr(selectors, "PAGE_SIZE", 3)
    for i in range(8):
        audit_record(actor=None, action="mailbox.fetch_requested", run=i)
    client.force_login(_manager())
    seen, query = [], {"action": "mailbox.fetch_requested"}
    while True:
        response = client.get(reverse("audit:search"), query)
        seen += [e.details["run"] for e, _ in response.context["events"]]
        if response.context["next_before"] is None:
            break
        query["vor"] = response.context["next_before"]
    assert seen == [7, 6, 5, 4, 3, 2, 1, 0]


LARGEST = 2**63 - 1  # PostgreSQL's bigint: what seq and message ids are


@pytest.mark.parametrize("before", ["²", "9" * 5000, str(LARGEST + 1), "9" * 23, "0", "-5", "1.5", "x"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_a_hand_edited_page_cursor_is_refused_instead_of_answered_with_other_events(client, before, htmx):
    # "²" passes str.isdigit() but not int(); 5,000 digits are more than int() reads; beyond bigint, 0 and below
    # name no position. Answered with the newest events (or none) the page would look like the one asked for.
    audit_record(actor=None, action="mailbox.fetch_requested", run=1)
    client.force_login(_manager())
    response = client.get(
        reverse("audit:search"),
        {"action": "mailbox.fetch_requested", "vor": before},
        headers={"HX-Request": "true"} if htmx else {},
    )
    html = response.content.decode()
    assert response.status_code == 422
    assert response.context["events"] == []
    assert "Die Seitenangabe im Link ist ungültig. Bitte neu suchen." in html
    assert "Nicht gesucht: bitte die Eingaben prüfen." in html and "Keine Ereignisse gefunden." not in html
    assert 'name="vor"' not in html  # a new search from the form starts at the newest events again


def test_the_largest_position_is_still_a_page_cursor(client):
    audit_record(actor=None, action="mailbox.fetch_requested", run=1)
    client.force_login(_manager())
    response = client.get(reverse("audit:search"), {"action": "mailbox.fetch_requested", "vor": str(LARGEST)})
    assert response.status_code == 200
    assert [e.details["run"] for e, _ in response.context["events"]] == [1]


@pytest.mark.parametrize("number", [str(LARGEST + 1), "9" * 23, "9" * 5000])
def test_a_message_number_no_message_can_have_is_refused_instead_of_finding_nothing(client, message, number):
    audit_record(actor=None, action="message.viewed", message=message)
    client.force_login(_manager())
    response = client.get(reverse("audit:search"), {"message": number}, headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 422 and "message" in response.context["form"].errors
    assert "Nachricht (Nummer):" in html and "Keine Ereignisse gefunden." not in html
    exported = client.get(reverse("audit:export"), {"message": number})
    assert exported.status_code == 422 and "message" in exported.context["form"].errors
    assert not AuditEvent.objects.filter(action="audit.exported").exists()


def test_the_largest_message_number_is_still_searched(client, message):
    audit_record(actor=None, action="message.viewed", message=message)
    client.force_login(_manager())
    response = client.get(reverse("audit:search"), {"message": str(LARGEST)})
    assert response.status_code == 200 and response.context["events"] == []


@pytest.mark.parametrize("mailbox", ["²", "١٢", "9" * 254])
def test_a_mailbox_filter_of_odd_digits_searches_the_address_instead_of_failing(client, box, mailbox):
    audit_record(actor=None, action="mailbox.fetch_requested", mailbox=box)
    client.force_login(_manager())
    response = client.get(reverse("audit:search"), {"mailbox": mailbox})
    assert response.status_code == 200 and response.context["events"] == []
    exported = client.get(reverse("audit:export"), {"mailbox": mailbox})
    assert [row[2] for row in _csv(exported)[1:]] == []


def test_htmx_gets_only_the_results(client):
    audit_record(actor=None, action="mailbox.fetch_requested")
    client.force_login(_manager())
    html = client.get(reverse("audit:search"), headers={"HX-Request": "true"}).content.decode()
    assert 'id="audit-results"' in html and "<form" not in html


def test_export_streams_csv_of_the_filter_and_is_itself_audited(client, box, message):
    nurse = UserFactory(username="pflege")
    audit_record(actor=nurse, action="message.viewed", message=message)
    audit_record(actor=nurse, action="note.added", message=message, note='=HYPERLINK("http://x")')
    audit_record(actor=nurse, action="mailbox.fetch_requested", mailbox=box)
    manager = _manager()
    client.force_login(manager)
    response = client.get(reverse("audit:export"), {"message": message.pk})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response.streaming
    rows = _csv(response)
    assert rows[0][:4] == ["seq", "zeit", "aktion", "benutzer"]
    assert [r[2] for r in rows[1:]] == ["message.viewed", "note.added"]
    assert rows[1][8] == "Entlassbrief Müller"
    # A cell a spreadsheet would run as a formula arrives as text.
    assert all(not cell.startswith("=") for row in rows for cell in row)
    exported = AuditEvent.objects.get(action="audit.exported")
    assert exported.actor_id == manager.pk and exported.details == {"filter": {"message": str(message.pk)}}


def test_message_page_shows_its_trail_to_owners_and_managers_only(client, box, message):
    reader, owner = UserFactory(username="leser"), UserFactory(username="chefin")
    MembershipFactory(mailbox=box, user=reader, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    manager = _manager()
    MembershipFactory(mailbox=box, user=manager, role=Membership.Role.READER)
    url = reverse("mailbox:message-detail", kwargs={"pk": message.pk})

    client.force_login(reader)
    html = client.get(url).content.decode()
    assert "Verlauf (Audit)" not in html
    client.force_login(owner)
    html = client.get(url).content.decode()
    assert "Verlauf (Audit)" in html and "leser" in html and "Nachricht geöffnet" in html
    client.force_login(manager)
    assert "Verlauf (Audit)" in client.get(url).content.decode()


def test_the_managers_home_links_the_audit(client):
    client.force_login(_manager())
    assert reverse("audit:search") in client.get(reverse("manage:home")).content.decode()
