"""Browser test on a phone (390 px): "Weitere Treffer anzeigen" adds the next hits by keyboard, moves the focus to
the first new one and says in a polite status how many are shown; without JavaScript the same control is a link to
the longer page. axe finds no WCAG 2.0/2.1 A/AA violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.directory.conftest import PAGED_PLACE, paged_entries, vzd, vzd_admin, vzd_server  # noqa: F401  (fixtures)
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import PHONE, assert_no_horizontal_scroll

from .pages_directory import DirectorySearchPage

PASSWORD = "kim-portal-e2e-pw"


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd", "paged_entries")
def test_more_hits_by_keyboard_on_a_phone(browser, live_server, transactional_db, django_user_model):
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    context = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        csp_violations: list[str] = []
        page.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)
        search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
        search.type_query(PAGED_PLACE)
        expect(search.hits).to_have_count(20)
        status = page.get_by_role("status").filter(has_text="Treffer angezeigt")
        expect(status).to_have_text("20 Treffer angezeigt (von 45)")
        more = page.get_by_role("link", name="Weitere Treffer anzeigen")
        assert_accessible(page, "directory search with more hits at 390 px")

        # From the last hit's last control ("Details"), Tab reaches it; Enter adds hits 21–40 and continues at 21.
        search.hits.nth(19).locator("summary").focus()
        search.press("Tab")
        expect(more).to_be_focused()
        search.press("Enter")
        expect(search.hits).to_have_count(40)
        expect(status).to_have_text("40 Treffer angezeigt (von 45)")
        expect(page.locator("#treffer-21")).to_be_focused()
        assert search.focused_hit_name() == "Praxis Seitenweise 21"
        expect(page).to_have_url(re.compile(r"anzahl=40"))
        # The arrow keys walk on through the added hits.
        search.press("ArrowDown")
        assert search.focused_hit_name() == "Praxis Seitenweise 22"
        assert_no_horizontal_scroll(page)
        assert_accessible(page, "directory search after more hits at 390 px")

        more.focus()
        search.press("Enter")
        expect(search.hits).to_have_count(45)
        expect(status).to_have_text("45 Treffer angezeigt")
        expect(page.locator("#treffer-41")).to_be_focused()
        expect(more).to_have_count(0)
        names = search.hits.locator(".vzd-name").all_text_contents()
        assert names == [f"Praxis Seitenweise {n:02d}" for n in range(1, 46)]

        # A reload keeps the longer list (the URL says how many).
        page.reload()
        expect(search.hits).to_have_count(45)
        assert csp_violations == []
    finally:
        context.close()


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd", "paged_entries")
def test_more_hits_without_javascript_is_a_link(browser, live_server, transactional_db, django_user_model):
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    context = browser.new_context(locale="de-DE", viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
        search.box.fill(PAGED_PLACE)
        search.press("Enter")
        expect(search.hits).to_have_count(20)
        page.get_by_role("link", name="Weitere Treffer anzeigen").click()
        expect(search.hits).to_have_count(40)
        expect(page).to_have_url(re.compile(r"anzahl=40#treffer-21$"))
        assert page.evaluate("() => document.querySelector(':target').id") == "treffer-21"
        expect(page.get_by_text("40 Treffer angezeigt (von 45)")).to_be_visible()
        assert_no_horizontal_scroll(page)
    finally:
        context.close()
