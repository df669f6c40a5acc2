"""Browser test: "Weitere Treffer anzeigen" that fails keeps the keyboard where it was. The directory gone meanwhile
is answered with a German message in place of the control and the same control again, to try once more: the focus
lands on that new control (described by the message), not on the page's body. A server error (a proxy's 502) swaps
nothing in: the page-wide notice says so and the focus stays on the control. Once the directory is back, the same
key press adds the hits. The same for the recipient picker's button in the compose form."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from mailbox.services.compose import OutgoingData, outgoing_draft_save
from tests.directory.conftest import PAGED_PLACE, paged_entries, vzd, vzd_admin, vzd_server  # noqa: F401  (fixtures)
from tests.e2e.layout import PHONE
from tests.mailbox.conftest import HOSPITAL
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tisim.vzd.slapd import free_port

from .pages_compose import ComposePage
from .pages_directory import DirectorySearchPage

PASSWORD = "kim-portal-e2e-pw"
GONE = "Das Verzeichnis (VZD) ist nicht erreichbar. Bitte versuchen Sie es später noch einmal."


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd", "paged_entries")
def test_failed_more_hits_keep_the_focus_on_the_control(
    browser, live_server, transactional_db, django_user_model, settings
):
    django_user_model.objects.create_user(username="station", password=PASSWORD)
    context = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        search = DirectorySearchPage(page, live_server.url).login_and_open("station", PASSWORD)
        search.type_query(PAGED_PLACE)
        expect(search.hits).to_have_count(20)
        status = page.get_by_role("status").filter(has_text="Treffer angezeigt")
        more = page.get_by_role("link", name="Weitere Treffer anzeigen")
        shown_url = page.url

        # The directory goes away: the message takes the control's place, the focus stays on the control.
        directory = settings.KIMPORTAL_VZD_URL
        settings.KIMPORTAL_VZD_URL = f"ldap://127.0.0.1:{free_port()}"
        more.focus()
        with page.expect_response(lambda r: "anzahl=40" in r.url):
            search.press("Enter")
        expect(page.locator("#vzd-more").get_by_role("alert")).to_have_text(GONE)
        expect(more).to_be_focused()
        expect(more).to_have_accessible_description(GONE)
        expect(search.hits).to_have_count(20)
        expect(status).to_have_text("20 Treffer angezeigt (von 45)")
        assert page.url == shown_url  # a reload shows the 20 hits on the page, not 40

        # A proxy's server error: nothing is swapped in, the page says so, the focus stays.
        settings.KIMPORTAL_VZD_URL = directory
        failing = re.compile(r"/directory/\?.*anzahl=40")
        page.route(failing, lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>502</h1>"))
        with page.expect_response(lambda r: "anzahl=40" in r.url):
            search.press("Enter")
        expect(page.get_by_role("alert").filter(has_text="Ein Fehler ist aufgetreten")).to_have_count(1)
        expect(more).to_be_focused()
        page.unroute(failing)

        # Once it answers again, the same key adds the hits and goes on at the first new one.
        search.press("Enter")
        expect(search.hits).to_have_count(40)
        expect(page.locator("#treffer-21")).to_be_focused()
        expect(status).to_have_text("40 Treffer angezeigt (von 45)")
        expect(page.locator("#vzd-more [data-vzd-error]")).to_have_count(0)
        expect(page.get_by_role("alert").filter(has_text="Ein Fehler ist aufgetreten")).to_have_count(0)
        expect(page).to_have_url(re.compile(r"anzahl=40"))
    finally:
        context.close()


@pytest.mark.e2e
@pytest.mark.slapd
@pytest.mark.usefixtures("vzd", "paged_entries")
def test_failed_more_hits_in_the_picker_keep_the_focus_on_the_button(browser, live_server, transactional_db, settings):
    station = UserFactory(username="station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    draft = outgoing_draft_save(user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage"))
    context = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/login/?next=/entwurf/{draft.pk}/")
        page.get_by_label("Benutzername").fill("station")
        page.get_by_label("Passwort").fill("pw-secret-123")
        page.get_by_role("button", name="Anmelden").click()
        page.wait_for_url(re.compile(rf"/entwurf/{draft.pk}/$"))
        compose = ComposePage(page)
        hits = compose.search_recipient(PAGED_PLACE)
        expect(hits).to_have_count(20)
        more = page.locator("#to-picker-results").get_by_role("button", name="Weitere Treffer anzeigen")

        directory = settings.KIMPORTAL_VZD_URL
        settings.KIMPORTAL_VZD_URL = f"ldap://127.0.0.1:{free_port()}"
        more.focus()
        with page.expect_response(lambda r: "anzahl=40" in r.url):
            page.keyboard.press("Enter")
        expect(page.locator("#to-picker-more").get_by_role("alert")).to_have_text(GONE)
        expect(more).to_be_focused()
        expect(more).to_have_accessible_description(GONE)
        expect(hits).to_have_count(20)

        settings.KIMPORTAL_VZD_URL = directory
        page.keyboard.press("Enter")
        expect(hits).to_have_count(40)
        expect(hits.nth(20)).to_be_focused()
        expect(page.locator("#to-picker-more [data-vzd-error]")).to_have_count(0)
    finally:
        context.close()
