"""A colleague's note arriving live is announced to screen readers; the user's own note and the notes the page
loaded with are not.

The socket replaces the note list whole, so the announcement goes into a separate polite region that is in the page,
empty, from the start and is never swapped (a region that arrives filled, or is replaced, is not read)."""

from __future__ import annotations

import pytest
from playwright.sync_api import APIResponse, Page, Route, expect

from mailbox.services.ingest import message_ingest
from mailbox.services.notes import note_add
from tests.e2e.a11y import assert_accessible
from tests.e2e.pages import LoginPage, WorkPanel
from tests.mailbox.factories import ward_with_processors
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e

# Runs before the page's own scripts: the region as the document loaded it, every later change of its text (on that
# same element), and how many times the socket replaced the note list.
RECORD = """
window.noteLog = {atLoad: null, changes: [], listSwaps: 0};
document.addEventListener("DOMContentLoaded", () => {
  const region = document.getElementById("note-announce");
  window.noteRegion = region;
  window.noteLog.atLoad = region && {role: region.getAttribute("role"), text: region.textContent};
  if (region) {
    new MutationObserver(() => window.noteLog.changes.push(region.textContent))
      .observe(region, {childList: true, subtree: true, characterData: true});
  }
});
document.addEventListener("htmx:oobAfterSwap", (ev) => {
  if (ev.target.id === "note-list") window.noteLog.listSwaps += 1;
});
"""
SAME_REGION = "() => document.getElementById('note-announce') === window.noteRegion"


def _log(page: Page) -> dict:
    return page.evaluate("window.noteLog")


def test_a_colleagues_note_is_announced_and_ones_own_is_not(portal_web, browser):
    box, (_anna, bert) = ward_with_processors(("anna", "Anna", "Alt"), ("bert", "Bert", "Bauer"))
    message = message_ingest(mailbox=box, uidl="n1", raw=MAIL_WITH_PDF)
    note_add(user=bert, message=message, body="Befund angefordert.")  # on both pages when they load

    ctx_a, ctx_b = browser.new_context(locale="de-DE"), browser.new_context(locale="de-DE")
    try:
        page_a, page_b = ctx_a.new_page(), ctx_b.new_page()
        for page in (page_a, page_b):
            page.set_default_timeout(10_000)
            page.add_init_script(RECORD)
        # Bert opens the message first (he holds it and may write); Anna follows, and Bert's page showing her present
        # says that both pages' sockets are listening.
        LoginPage(page_b, portal_web.url).open().login("bert", "pw-secret-123").open_message(message.subject)
        expect(WorkPanel(page_b).lock).to_contain_text("Sie bearbeiten diese Nachricht")
        LoginPage(page_a, portal_web.url).open().login("anna", "pw-secret-123").open_message(message.subject)
        expect(WorkPanel(page_b).lock.locator("#detail-presence")).to_contain_text("Anna Alt")

        # At load: the region is there, empty, although the list holds a colleague's note.
        for page in (page_a, page_b):
            expect(page.locator("#note-list")).to_contain_text("Befund angefordert.")
            assert _log(page)["atLoad"] == {"role": "status", "text": ""}
        assert_accessible(page_a, "message page with a note")

        # Bert saves a note; the form's answer is held until his socket has brought the new list first, so that his
        # page meets his own note as a note it has not shown yet.
        held: list[Route] = []
        answers: list[APIResponse] = []

        def hold(route: Route) -> None:
            held.append(route)
            answers.append(route.fetch(max_redirects=0))

        page_b.route(f"**/nachricht/{message.pk}/notiz/", hold, times=1)
        page_b.locator("#note-body").fill("Rückruf beim Hausarzt erledigt.")
        page_b.get_by_role("button", name="Notiz speichern").click()
        for _ in range(1000):  # Playwright calls the route's handler while the test waits in one of its calls
            if answers:
                break
            page_b.wait_for_timeout(10)
        assert len(answers) == 1, "the note was not sent"
        page_b.wait_for_function("() => window.noteLog.listSwaps >= 1")
        expect(page_b.locator("#note-list")).to_contain_text("Rückruf beim Hausarzt erledigt.")
        held[0].fulfill(response=answers[0])
        expect(page_b.locator("#work")).to_contain_text("Notiz gespeichert")

        # Anna's page announces it, once, in the region it loaded with.
        region_a = page_a.locator("#note-announce")
        expect(region_a).to_have_text("Neue Notiz von Bert Bauer")
        expect(page_a.locator("#note-list")).to_contain_text("Rückruf beim Hausarzt erledigt.")
        assert page_a.evaluate(SAME_REGION)
        assert _log(page_a)["changes"] == ["Neue Notiz von Bert Bauer"]
        assert_accessible(page_a, "message page after a colleague's note was announced")

        # Bert's own page announced nothing: neither from his socket's list nor from the form's answer.
        assert page_b.evaluate(SAME_REGION)
        expect(page_b.locator("#note-announce")).to_have_text("")
        log_b = _log(page_b)
        assert log_b["listSwaps"] >= 1
        assert log_b["changes"] == []
        assert_accessible(page_b, "message page after saving one's own note")
    finally:
        ctx_a.close()
        ctx_b.close()
