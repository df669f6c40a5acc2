"""Messages of a page load reach screen readers: the live regions are in the page, empty, when it loads, and the
message text is added to them afterwards (a region that arrives already filled is not announced by all of them)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from mailbox.models import Absence
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import ward_with_processors

pytestmark = pytest.mark.e2e

# Runs before the page's own scripts: what the regions hold when the document has loaded, and every later change
# of their content, each with the region it went into (the same element that was there at load, or not).
RECORD = """
window.flashLog = {atLoad: null, added: []};
document.addEventListener("DOMContentLoaded", () => {
  const regions = ["flash-status", "flash-alert"].map((id) => document.getElementById(id));
  window.flashLog.atLoad = regions.map((r) => r && {id: r.id, role: r.getAttribute("role"), text: r.textContent});
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.addedNodes.length && regions.includes(record.target)) {
        window.flashLog.added.push({id: record.target.id, text: record.target.textContent});
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
});
"""


def _absence_form(page: Page, substitute, start, end) -> None:
    page.get_by_label("Vertretung").select_option(value=str(substitute.pk))
    page.get_by_label("Beginn").fill(start.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_label("Ende").fill(end.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Abwesenheit eintragen").click()


def test_a_message_is_added_to_the_live_region_that_was_empty_at_load(portal_web: PortalStack, page: Page) -> None:
    _ward, (anna, bernd) = ward_with_processors(("anna", "Anna", "Alt"), ("bernd", "Bernd", "Bauer"))
    page.add_init_script(RECORD)
    LoginPage(page, portal_web.url).open().login("anna", "pw-secret-123")
    start = timezone.localtime().replace(second=0, microsecond=0) + timedelta(days=1)

    # Saved: the confirmation goes into the polite status region.
    page.goto(f"{portal_web.url}/abwesenheit/")
    _absence_form(page, bernd, start, start + timedelta(days=2))
    saved = page.locator("#flash-status")
    expect(saved).to_have_text("Abwesenheit gespeichert. Neue Zuweisungen gehen in dieser Zeit an Ihre Vertretung.")
    log = page.evaluate("window.flashLog")
    assert log["atLoad"] == [
        {"id": "flash-status", "role": "status", "text": ""},
        {"id": "flash-alert", "role": "alert", "text": ""},
    ]
    assert [a["id"] for a in log["added"]] == ["flash-status"]
    assert "Abwesenheit gespeichert" in log["added"][0]["text"]
    expect(page.locator("#flash-alert")).to_be_empty()
    assert_accessible(page, "absences page with its confirmation")

    # Refused (it overlaps the one just entered): the error goes into the alert region, the entry stays in the form.
    _absence_form(page, bernd, start + timedelta(days=1), start + timedelta(days=3))
    refused = page.get_by_role("alert").filter(has_text="Für diese Zeit ist bereits eine Abwesenheit eingetragen")
    expect(refused).to_have_id("flash-alert")
    log = page.evaluate("window.flashLog")
    assert [r["text"] for r in log["atLoad"]] == ["", ""]
    assert [a["id"] for a in log["added"]] == ["flash-alert"]
    expect(page.locator("#flash-status")).to_be_empty()
    expect(page.get_by_label("Beginn")).to_have_value((start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"))
    assert Absence.objects.filter(user=anna).count() == 1
    assert_accessible(page, "absences page with its error")
