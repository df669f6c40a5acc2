"""Two users, two browsers: A claims, B sees the lock live and cannot act; A leaves, the lock goes;
B claims; a stale action by A is refused by the conflict guard."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailbox.models import Message
from mailbox.services.ingest import message_ingest
from tests.e2e.pages import InboxPage, LoginPage, WorkPanel
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e


def test_claim_lock_presence_and_conflict_guard(portal_web, browser):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Arzt")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    MembershipFactory(mailbox=box, user=aerztin)
    message = message_ingest(mailbox=box, uidl="m1", raw=MAIL_WITH_PDF)
    subject = message.subject

    ctx_a, ctx_b = browser.new_context(locale="de-DE"), browser.new_context(locale="de-DE")
    try:
        page_a, page_b = ctx_a.new_page(), ctx_b.new_page()
        for p in (page_a, page_b):
            p.set_default_timeout(10_000)
        inbox_a = LoginPage(page_a, portal_web.url).open().login("station", "pw-secret-123")
        inbox_b = LoginPage(page_b, portal_web.url).open().login("aerztin", "pw-secret-123")
        inbox_b.wait_live()

        # A opens the message: that takes the read-lock.
        inbox_a.open_message(subject)
        work_a = WorkPanel(page_a)
        expect(work_a.lock).to_contain_text("Sie bearbeiten diese Nachricht")

        # B, on the list, sees who holds it within one second, without reloading.
        expect(inbox_b.row(subject).locator(".lock")).to_contain_text("Sabine Station", timeout=1_000)

        # B opens it: read-only, actions disabled, and A is shown as present.
        inbox_b.open_message(subject)
        work_b = WorkPanel(page_b)
        expect(work_b.lock).to_contain_text("In Bearbeitung durch Sabine Station seit")
        expect(work_b.button("Erledigt")).to_be_disabled()
        expect(work_b.button("Übernehmen")).to_be_disabled()
        expect(work_b.lock.locator("#detail-presence")).to_contain_text("Sabine Station")

        # A leaves: the lock goes, B's page follows live.
        page_a.goto(f"{portal_web.url}/")
        expect(work_b.lock).to_contain_text("Niemand bearbeitet diese Nachricht", timeout=2_000)
        expect(work_b.button("Erledigt")).to_be_enabled()

        # B claims with the keyboard shortcut.
        page_b.locator("body").press("c")
        expect(work_b.lock).to_contain_text("Sie bearbeiten diese Nachricht")

        # A comes back: read-only now; A's forms carry the version A loaded.
        InboxPage(page_a).open_message(subject)
        work_a = WorkPanel(page_a)
        expect(work_a.lock).to_contain_text("In Bearbeitung durch Anna Arzt")
        expect(work_a.button("Übernehmen")).to_be_disabled()

        # B marks it done (which frees the lock); A's page sees the lock go and the change announced.
        work_b.button("Erledigt").click()
        expect(work_b.state).to_have_text("erledigt")
        expect(work_a.button("Übernehmen")).to_be_enabled(timeout=2_000)
        expect(work_a.stale_banner).to_be_visible()

        # A's stale action is refused with an explanation and the fresh state, nothing overwritten.
        work_a.button("Übernehmen").click()
        expect(work_a.error).to_contain_text("inzwischen geändert")
        expect(work_a.state).to_have_text("erledigt")
        message.refresh_from_db()
        assert message.state == Message.State.DONE
        assert message.assignee_id == aerztin.pk
    finally:
        ctx_a.close()
        ctx_b.close()
