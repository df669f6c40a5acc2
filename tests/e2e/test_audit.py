"""The audit log in the browser: leitung searches it, exports it (and finds the export on the trail), and reads a
message's own trail on its page; the search page is accessible (axe) and fits a phone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from audit.models import AuditEvent
from mailbox.models import Membership
from mailbox.services.ingest import message_ingest
from mailbox.services.reading import message_open
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e


def test_leitung_searches_exports_and_reads_a_messages_trail(portal_web, page):
    leitung = UserFactory(username="leitung", first_name="Lena", last_name="Leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(display_name="Kardiologie", address="kardiologie@klinik.kim.telematik")
    MembershipFactory(mailbox=box, user=leitung, role=Membership.Role.OWNER)
    nurse = UserFactory(username="pflege", first_name="Paul", last_name="Pflege")
    MembershipFactory(mailbox=box, user=nurse, role=Membership.Role.READER)
    message = message_ingest(mailbox=box, uidl="u1", raw=MAIL_WITH_PDF)
    message_open(user=nurse, message=message)
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")

    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto(portal_web.url + "/leitung/audit/")
        expect(page.get_by_role("heading", level=1, name="Audit-Protokoll")).to_be_visible()
        assert_accessible(page, f"audit search at {viewport['width']} px")
        assert_no_horizontal_scroll(page)

    page.set_viewport_size(DESKTOP)
    page.get_by_label("Patientenbezug (Text in Betreff oder Details)").fill("Müller")
    page.get_by_role("button", name="Suchen").click()
    results = page.locator("#audit-results")
    expect(results).to_contain_text("Nachricht geöffnet")
    expect(results).to_contain_text("pflege")
    expect(page).to_have_url(re.compile(r"patient=M"))  # the filter is in the address: bookmarkable

    with page.expect_download() as download:
        page.get_by_role("link", name="Als CSV exportieren").click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "message.viewed" in text and "Entlassbrief Müller" in text
    assert AuditEvent.objects.filter(action="audit.exported", actor=leitung).exists()

    page.goto(portal_web.url + f"/nachricht/{message.pk}/")
    trail = page.get_by_role("region", name="Verlauf (Audit)")
    trail.get_by_text("Einträge anzeigen").click()
    expect(trail).to_contain_text("pflege · Nachricht geöffnet")


def test_a_reversed_time_range_is_named_in_the_results_not_answered_with_no_events(portal_web, page):
    # The search is an htmx request that swaps only the results box; its 422 answer must be swapped and say why.
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")
    page.goto(portal_web.url + "/leitung/audit/")
    page.get_by_label("von", exact=True).fill("2026-02-01T10:00")
    page.get_by_label("bis", exact=True).fill("2026-01-01T10:00")
    page.get_by_role("button", name="Suchen").click()
    results = page.locator("#audit-results")
    expect(results.get_by_role("alert")).to_contain_text("„bis“ muss nach „von“ liegen.")
    expect(results).not_to_contain_text("Keine Ereignisse gefunden.")
    expect(results.get_by_role("link", name="Als CSV exportieren")).to_have_count(0)
    assert_accessible(page, "audit search with a reversed time range")


def test_what_a_search_found_is_said_in_a_status_region_that_stays_in_the_page(portal_web, page):
    # The results box is replaced whole by each htmx search, so a live region inside it would not be read; the count
    # goes into a region that was in the page from the start.
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(display_name="Kardiologie", address="kardiologie@klinik.kim.telematik")
    MembershipFactory(mailbox=box, user=leitung, role=Membership.Role.OWNER)
    message_open(user=leitung, message=message_ingest(mailbox=box, uidl="u1", raw=MAIL_WITH_PDF))
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")
    page.goto(portal_web.url + "/leitung/audit/")
    status = page.locator("#audit-status")
    status.evaluate("element => { element.dataset.first = 'yes'; }")

    page.get_by_label("Patientenbezug (Text in Betreff oder Details)").fill("Müller")
    page.get_by_role("button", name="Suchen").click()
    expect(page.get_by_role("status").filter(has_text="Ereignis angezeigt.")).to_have_text("1 Ereignis angezeigt.")

    page.get_by_label("Patientenbezug (Text in Betreff oder Details)").fill("Niemand")
    page.get_by_role("button", name="Suchen").click()
    expect(status).to_have_text("Keine Ereignisse gefunden.")
    assert status.get_attribute("data-first") == "yes"  # the same element: the region was not replaced
    assert_accessible(page, "audit search after two searches")
