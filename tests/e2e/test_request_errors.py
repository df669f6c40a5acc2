"""A request of the page that fails is never silent: refused (a stale CSRF token after signing in again elsewhere), a
server error, no connection. htmx swaps nothing in for those; the page says what happened and what to do in one
message area, and what compose.js reports itself (a draft's saves) is not said a second time."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, Route, expect

from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import PHONE, assert_in_viewport, assert_no_horizontal_scroll, assert_touch_target
from tests.e2e.pages import LoginPage
from tests.e2e.pages_compose import ComposePage
from tests.mailbox.conftest import HOSPITAL, PRAXIS
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e

OFFLINE = "Keine Verbindung zum Server"
REFUSED = "Die Aktion wurde abgelehnt"
SERVER = "Ein Fehler ist aufgetreten"
UNAVAILABLE = "Der Dienst ist vorübergehend nicht erreichbar"


def _abort_posts(route: Route) -> None:
    if route.request.method == "POST":
        route.abort("connectionfailed")
    else:
        route.continue_()


def _alerts(page: Page, text: str):
    """The page's alerts that say `text` (a message shown twice would be two)."""
    return page.get_by_role("alert").filter(has_text=text)


def test_a_refused_failed_or_unreachable_request_says_so_once_until_it_succeeds(portal_web, page, browser_context):
    station = UserFactory(username="station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    message = message_ingest(mailbox=account.mailbox, uidl="e1", raw=MAIL_WITH_PDF)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/nachricht/{message.pk}/")
    text = page.locator("#request-error-text")
    close = page.get_by_role("button", name="Hinweis schließen")
    reload = page.get_by_role("button", name="Seite neu laden")
    expect(text).to_be_empty()

    # The requests are the note form's: the lock panel's buttons are redrawn by the page's socket (on connect, after
    # each lock change), which may replace a button between Playwright finding it and pressing it.
    note = page.get_by_label("Notiz", exact=True)
    save = page.get_by_role("button", name="Notiz speichern")
    note_url = f"**/nachricht/{message.pk}/notiz/"

    # The network is gone: saving a note says so (not nothing); pressed twice, still one message.
    page.route(note_url, _abort_posts)
    note.fill("Rückruf erbeten")
    save.click()
    expect(text).to_contain_text(OFFLINE)
    save.click()
    expect(_alerts(page, OFFLINE)).to_have_count(1)
    expect(close).to_be_visible()
    expect(reload).to_be_hidden()
    assert_accessible(page, "a request without a connection")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_scroll(page)
    assert_in_viewport(page.locator("#request-error"))
    expect(close).to_be_in_viewport()
    assert_touch_target(close)
    page.set_viewport_size({"width": 1280, "height": 900})

    # The connection is back: the next request that succeeds takes the message away.
    page.unroute(note_url)
    save.click()
    expect(page.locator("#note-list")).to_contain_text("Rückruf erbeten")
    expect(text).to_be_empty()
    expect(close).to_be_hidden()

    # A server error says so; Escape on the message closes it and gives the focus back to where it was.
    page.route(note_url, lambda route: route.fulfill(status=500, content_type="text/html", body="<h1>500</h1>"))
    note.fill("Zweite Notiz")
    save.focus()
    page.keyboard.press("Enter")
    expect(text).to_contain_text(SERVER)
    close.focus()
    page.keyboard.press("Escape")
    expect(text).to_be_empty()
    expect(save).to_be_focused()

    # The database is restarting: the server answers 503 (tests/test_database_unavailable.py), and the page says to
    # try again in a few minutes; a reload would not help, so none is offered.
    page.route(note_url, lambda route: route.fulfill(status=503, content_type="text/html", body="<h1>503</h1>"))
    save.click()
    expect(text).to_contain_text(UNAVAILABLE)
    expect(reload).to_be_hidden()
    close.click()
    expect(text).to_be_empty()
    page.unroute(note_url)

    # Signed in again in another tab: the session has a new CSRF token, this page's is stale. The server refuses the
    # note (a real 403); the page says so and offers the reload that cures it.
    other = browser_context.new_page()
    LoginPage(other, portal_web.url).open().login("station", "pw-secret-123")
    other.close()
    with page.expect_response(lambda r: r.url.endswith(f"/nachricht/{message.pk}/notiz/")) as answer:
        save.click()
    assert answer.value.status == 403
    expect(text).to_contain_text(REFUSED)
    expect(text).to_contain_text("Bitte laden Sie die Seite neu.")
    expect(_alerts(page, REFUSED)).to_have_count(1)
    assert_accessible(page, "a request refused as stale")
    reload.click()
    page.wait_for_load_state("load")
    expect(text).to_be_empty()

    # A draft's own saves report themselves on the status line (compose.js): not a second time here.
    page.goto(f"{portal_web.url}/entwurf/{draft.pk}/")
    compose = ComposePage(page)
    text = page.locator("#request-error-text")
    body = page.get_by_label("Nachricht", exact=True)
    save_url = f"**/entwurf/{draft.pk}/"
    page.route(save_url, _abort_posts)
    body.fill("Erster Absatz")
    page.keyboard.press("Tab")
    expect(compose.status).to_contain_text("Nicht gespeichert: keine Verbindung zum Server.")
    expect(text).to_be_empty()
    page.unroute(save_url)
    page.route(save_url, lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>502</h1>"))
    body.fill("Erster Absatz\nnicht angekommen")
    page.keyboard.press("Tab")
    expect(compose.status).to_contain_text("Von dieser Seite aus kann der Entwurf nicht mehr gespeichert")
    expect(text).to_be_empty()
    expect(_alerts(page, SERVER)).to_have_count(0)
    page.unroute(save_url)


def test_a_failed_recipient_search_in_compose_is_said_by_the_page_not_as_an_unsaved_draft(portal_web, page):
    # The recipient picker sits inside the draft form, but its searches are not the draft's saves: a picker search
    # that cannot reach the server must not say "Nicht gespeichert" (nor make the page think the draft unsaved).
    station = UserFactory(username="station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/entwurf/{draft.pk}/")
    compose = ComposePage(page)
    page.route("**/directory/auswahl/**", lambda route: route.abort("connectionfailed"))
    box = page.locator("#to-picker-q")
    box.click()
    with page.expect_event("requestfailed"):
        box.press_sequentially("Praxis", delay=30)
    expect(_alerts(page, OFFLINE)).to_have_count(1)
    expect(compose.status).not_to_contain_text("Nicht gespeichert")
