"""An internal note with an @mention notifies the colleague live; the note shows on the message."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailbox.services.ingest import message_ingest
from tests.e2e.pages import LoginPage, WorkPanel
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e


def test_mention_in_a_note_reaches_the_colleague_live(portal_web, browser):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Arzt")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    MembershipFactory(mailbox=box, user=aerztin)
    message = message_ingest(mailbox=box, uidl="n1", raw=MAIL_WITH_PDF)

    ctx_a, ctx_b = browser.new_context(), browser.new_context()
    try:
        page_a, page_b = ctx_a.new_page(), ctx_b.new_page()
        inbox_a = LoginPage(page_a, portal_web.url).open().login("station", "pw-secret-123")
        inbox_a.wait_live()
        badge = page_a.locator("#notification-badge")
        expect(badge).not_to_contain_text("1")

        inbox_b = LoginPage(page_b, portal_web.url).open().login("aerztin", "pw-secret-123")
        inbox_b.open_message(message.subject)
        page_b.locator("#note-body").fill("Bitte Rückruf beim Hausarzt, @station.")
        page_b.get_by_role("button", name="Notiz speichern").click()
        work_b = WorkPanel(page_b)
        expect(page_b.locator(".note")).to_contain_text("Bitte Rückruf beim Hausarzt")
        expect(work_b.page.locator("#work")).to_contain_text("Notiz gespeichert")

        # Sabine's page was not reloaded: the badge counts the new notification.
        expect(badge.locator(".count")).to_have_text("1")
        badge.click()
        item = page_a.locator(".notification-list li").first
        expect(item).to_contain_text("Anna Arzt hat Sie in einer Notiz zu „Entlassbrief Müller“ erwähnt.")
        item.get_by_role("link").click()
        expect(page_a.locator(".note")).to_contain_text("@station")
    finally:
        ctx_a.close()
        ctx_b.close()
