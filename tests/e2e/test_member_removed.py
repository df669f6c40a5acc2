"""An owner removes a member on a phone while the member works on a message: the member's lock and responsibility
go back to the mailbox at once, and the member's open tab says why its next action did nothing, instead of a click
that silently fails."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from mailbox.models import Membership, Message
from mailbox.services.audit import AuditEvent
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import PHONE, assert_in_viewport, assert_no_horizontal_scroll, assert_touch_target
from tests.e2e.pages import LoginPage, WorkPanel
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e

OUT_OF_REACH = "Sie haben keinen Zugriff mehr auf diese Nachricht"


def test_removing_a_member_on_a_phone_frees_their_work_and_their_open_tab_says_why(portal_web, browser):
    chefin = UserFactory(username="chefin", first_name="Clara", last_name="Chefin")
    pfleger = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=chefin, role=Membership.Role.OWNER)
    membership = MembershipFactory(mailbox=box, user=pfleger, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="m1", raw=MAIL_WITH_PDF)

    member_ctx = browser.new_context(locale="de-DE")
    owner_ctx = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        member, owner = member_ctx.new_page(), owner_ctx.new_page()
        for tab in (member, owner):
            tab.set_default_timeout(10_000)

        # The member opens the message (that takes the lock) and takes responsibility for it.
        inbox = LoginPage(member, portal_web.url).open().login("pfleger", "pw-secret-123")
        inbox.open_message(message.subject)
        work = WorkPanel(member)
        expect(work.lock).to_contain_text("Sie bearbeiten diese Nachricht")
        work.button("Übernehmen").click()
        expect(member.locator("#work-assignee")).to_have_text("Paul Pfleger")
        held = Message.objects.get(pk=message.pk)
        assert (held.claimed_by_id, held.assignee_id) == (pfleger.pk, pfleger.pk)

        # The owner, on a phone, removes the member from the mailbox's members page.
        LoginPage(owner, portal_web.url).open().login("chefin", "pw-secret-123")
        owner.goto(f"{portal_web.url}/postfach/{box.pk}/mitglieder/")
        expect(owner.get_by_role("heading", level=1)).to_have_text("Mitglieder von Station Kardiologie")
        assert_no_horizontal_scroll(owner)
        assert_accessible(owner, "the members page on a phone")
        row = owner.locator("table.members tbody tr", has_text="Paul Pfleger")
        remove = row.get_by_role("button", name="entfernen")
        remove.scroll_into_view_if_needed()
        assert_in_viewport(remove)
        assert_touch_target(remove)
        remove.click()
        expect(owner.locator("#flash-status")).to_have_text("Mitglied entfernt.")
        expect(owner.locator("table.members tbody tr", has_text="Paul Pfleger")).to_have_count(0)
        assert_no_horizontal_scroll(owner)
        assert_accessible(owner, "the members page after the removal")

        # The work is free: no lock, nobody responsible, the message back in the queue (and the return audited).
        freed = Message.objects.get(pk=message.pk)
        assert (freed.claimed_by_id, freed.assignee_id, freed.state) == (None, None, Message.State.NEW)
        assert not Membership.objects.filter(pk=membership.pk).exists()
        assert AuditEvent.objects.filter(action="message.unassigned", message_id=message.pk).exists()
        # The owner, opening it on the phone, finds it free to work on (the lock becomes hers).
        owner.goto(f"{portal_web.url}/nachricht/{message.pk}/")
        expect(WorkPanel(owner).lock).to_contain_text("Sie bearbeiten diese Nachricht")
        expect(owner.locator("#work-assignee")).to_have_text("niemand")
        assert_no_horizontal_scroll(owner)

        # The member's tab, still open: its next action is refused with the reason where the work panel shows
        # errors, and nothing changes.
        work.button("Erledigt").click()
        expect(work.error).to_contain_text(OUT_OF_REACH)
        expect(member.locator("#work-actions")).to_have_count(0)
        assert_accessible(member, "the removed member's tab after its next action")
        after = Message.objects.get(pk=message.pk)
        assert (after.state, after.assignee_id, after.claimed_by_id) == (Message.State.NEW, None, chefin.pk)
    finally:
        member_ctx.close()
        owner_ctx.close()
