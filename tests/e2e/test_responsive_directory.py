"""The directory (VZD) search on a tablet, a phone and a desktop: results use the width, addresses stay readable,
the page never scrolls sideways, the folded navigation works, and axe finds no WCAG 2.0/2.1 A/AA violations."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.directory.conftest import vzd, vzd_admin, vzd_server  # noqa: F401  (fixtures: the real slapd)
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, TABLET, assert_no_horizontal_scroll, box, line_height, screenshot
from tests.e2e.pages import SiteNav

from .pages_directory import DirectorySearchPage

PASSWORD = "kim-portal-e2e-pw"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd")
@pytest.mark.parametrize("viewport", [TABLET, PHONE, DESKTOP], ids=["tablet-820", "phone-390", "desktop-1280"])
def test_directory_search_fits_the_window(browser, live_server, transactional_db, django_user_model, viewport):
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    width = viewport["width"]
    context = browser.new_context(locale="de-DE", viewport=viewport)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        csp_violations: list[str] = []
        page.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)

        search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
        search.type_query("müller")
        praxis = search.hit("Praxis Dr. Müller")
        expect(praxis).to_have_count(1)
        hit = box(praxis)
        assert hit.x >= 0 and hit.right <= width
        assert hit.width >= 0.9 * (min(width, 1080) - 2 * 15), f"a result is {hit.width} px wide in {width} px"
        address = praxis.locator(".vzd-mail", has_text=PRAXIS)
        assert box(address).height <= 2.5 * line_height(address), "the KIM address breaks letter by letter"
        assert_no_horizontal_scroll(page)

        nav = SiteNav(page)
        if width < 1100:
            expect(nav.link("Posteingang")).to_be_hidden()
            nav.open()
            expect(nav.link("Posteingang")).to_be_visible()
            assert_no_horizontal_scroll(page)
            nav.close()
            expect(nav.link("Posteingang")).to_be_hidden()
        else:
            expect(nav.toggle).to_be_hidden()
            expect(nav.link("Posteingang")).to_be_visible()

        praxis.locator("summary").click()
        expect(praxis).to_contain_text("1-200000000000004711")
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"directory search at {width} px")
        screenshot(page, f"directory-{width}", full_page=False)
        assert csp_violations == []
    finally:
        context.close()


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd")
def test_long_unbroken_words_stay_inside_a_phone(browser, live_server, transactional_db, django_user_model, request):
    """What the directory publishes and what a user pastes may hold words longer than a phone is wide."""
    admin = request.getfixturevalue("vzd_admin")
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    word = "Universitätsklinikumsverwaltungszentralaufnahmekoordinationsstelle"
    ascii_word = word.replace("ä", "ae")
    uid = str(uuid.uuid4())
    dn = f"uid={uid},dc=data,dc=vzd"
    address = f"{'z' * 40}@tisim.kim.telematik-test"
    assert admin.add(
        dn,
        ["top", "vzd-komleview"],
        {
            "uid": uid,
            "telematikID": "1-200000000097",
            "displayName": f"{word}Breitweg",
            "organization": f"{word}Träger",
            "l": "Breitwegstadt",
            "mail": [address, f"{ascii_word}@breitweg.example.org"],
            "specialization": "urn:psc:1.3.6.1.4.1.19376.3.276.1.5.4:ALLG",
        },
    ), admin.result
    context = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
        search.type_query("Breitwegstadt")
        hit = search.hit("Breitweg")
        expect(hit).to_have_count(1)
        hit.locator("summary").click()
        expect(hit).to_contain_text("breitweg.example.org")
        assert_no_horizontal_scroll(page)
        # Words beyond the eighth are named in a notice, as typed.
        page.goto(f"{live_server.url}/directory/?q=" + "eins zwei drei vier fünf sechs sieben acht " + word * 2)
        expect(search.results.locator("[data-vzd-notice]")).to_contain_text(word)
        assert_no_horizontal_scroll(page)
    finally:
        context.close()
        admin.delete(dn)
