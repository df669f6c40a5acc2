"""Working the inbox from the keyboard: j/k, Enter, /, ?, filters and search."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from mailbox.services.ingest import message_ingest
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e


def test_keyboard_navigation_search_and_help(portal_web, page):
    user = UserFactory(username="station")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=user)
    for i, subject in enumerate(["Herzkatheter Befund", "Laborwerte Kalium", "Entlassung Frau Schulz"]):
        raw = MAIL_WITH_PDF.replace(b"=?utf-8?q?Entlassbrief_M=C3=BCller?=", subject.encode())
        message_ingest(mailbox=box, uidl=f"k{i}", raw=raw.replace(b"Anbei der Brief.", f"Text {subject}".encode()))

    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    expect(inbox.rows).to_have_count(3)
    body = page.locator("body")
    body.press("j")
    expect(inbox.rows.nth(0)).to_be_focused()
    body.press("j")
    expect(inbox.rows.nth(1)).to_be_focused()
    page.keyboard.press("k")
    expect(inbox.rows.nth(0)).to_be_focused()

    page.keyboard.press("?")
    expect(page.locator("#shortcut-help")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#shortcut-help")).to_be_hidden()

    # "/" jumps to the search box; typing filters the list without a page load.
    page.evaluate("window.__noReload = true")
    body.press("/")
    expect(page.locator("#filter-q")).to_be_focused()
    page.keyboard.type("Kalium")
    expect(inbox.rows).to_have_count(1)
    expect(inbox.rows.first).to_contain_text("Laborwerte Kalium")
    assert page.evaluate("window.__noReload === true")
    expect(page).to_have_url(re.compile(r"[?&]q=Kalium"))  # the filtered view is bookmarkable

    page.locator("#filter-q").fill("")
    page.locator("#filter-q").press("Enter")
    expect(inbox.rows).to_have_count(3)
    page.locator(".view-tabs").get_by_text("Mir zugewiesen").click()
    expect(page.locator(".empty")).to_contain_text("Keine Nachrichten")

    page.goto(f"{portal_web.url}/")
    body.press("j")
    page.keyboard.press("Enter")
    expect(page.locator("#message-subject")).to_have_text("Entlassung Frau Schulz")
