"""An owner removes a member on a phone while the member works on a message: the member's lock and responsibility
go back to the mailbox at once, and the member's open tab says why its next action did nothing, instead of a click
that silently fails."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import Locator, Page, expect

from mailbox.models import Membership, Message
from mailbox.services.audit import AuditEvent
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, assert_in_viewport, assert_no_horizontal_scroll, assert_touch_target
from tests.e2e.pages import LoginPage, WorkPanel
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e

OUT_OF_REACH = "Sie haben keinen Zugriff mehr auf diese Nachricht"


def _works_on(member: Page, portal: PortalStack, message: Message, user) -> WorkPanel:
    """The member opens the message (that takes the lock) and takes responsibility for it."""
    inbox = LoginPage(member, portal.url).open().login(user.username, "pw-secret-123")
    inbox.open_message(message.subject)
    work = WorkPanel(member)
    expect(work.lock).to_contain_text("Sie bearbeiten diese Nachricht")
    work.button("Übernehmen").click()
    expect(member.locator("#work-assignee")).to_have_text(user.get_full_name())
    held = Message.objects.get(pk=message.pk)
    assert (held.claimed_by_id, held.assignee_id) == (user.pk, user.pk)
    return work


def _tap(button: Locator) -> None:
    """On the phone: the button is on the screen whole and big enough for a finger, then tapped."""
    button.scroll_into_view_if_needed()
    assert_in_viewport(button)
    assert_touch_target(button)
    button.click()


def _work_is_free(message: Message) -> None:
    """No lock, nobody responsible, back in the queue, and the return audited."""
    freed = Message.objects.get(pk=message.pk)
    assert (freed.claimed_by_id, freed.assignee_id, freed.state) == (None, None, Message.State.NEW)
    assert AuditEvent.objects.filter(action="message.unassigned", message_id=message.pk).exists()


def _next_action_is_refused(member: Page, work: WorkPanel, message: Message) -> None:
    """The member's tab, still open: its next click is refused with the reason where the work panel shows errors,
    and changes nothing."""
    before = Message.objects.values("state", "assignee_id", "claimed_by_id", "version").get(pk=message.pk)
    work.button("Erledigt").click()
    expect(work.error).to_contain_text(OUT_OF_REACH)
    expect(member.locator("#work-actions")).to_have_count(0)
    expect(work.lock).to_contain_text("Sie bearbeiten diese Nachricht nicht mehr.")
    assert_accessible(member, "the removed member's tab after its next action")
    assert Message.objects.values("state", "assignee_id", "claimed_by_id", "version").get(pk=message.pk) == before


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

        work = _works_on(member, portal_web, message, pfleger)

        # The owner, on a phone, removes the member from the mailbox's members page.
        LoginPage(owner, portal_web.url).open().login("chefin", "pw-secret-123")
        owner.goto(f"{portal_web.url}/postfach/{box.pk}/mitglieder/")
        expect(owner.get_by_role("heading", level=1)).to_have_text("Mitglieder von Station Kardiologie")
        assert_no_horizontal_scroll(owner)
        assert_accessible(owner, "the members page on a phone")
        _tap(owner.locator("table.members tbody tr", has_text="Paul Pfleger").get_by_role("button", name="entfernen"))
        expect(owner.locator("#flash-status")).to_have_text("Mitglied entfernt.")
        expect(owner.locator("table.members tbody tr", has_text="Paul Pfleger")).to_have_count(0)
        assert_no_horizontal_scroll(owner)
        assert_accessible(owner, "the members page after the removal")

        _work_is_free(message)
        assert not Membership.objects.filter(pk=membership.pk).exists()
        # The owner, opening it on the phone, finds it free to work on (the lock becomes hers).
        owner.goto(f"{portal_web.url}/nachricht/{message.pk}/")
        expect(WorkPanel(owner).lock).to_contain_text("Sie bearbeiten diese Nachricht")
        expect(owner.locator("#work-assignee")).to_have_text("niemand")
        assert_no_horizontal_scroll(owner)

        _next_action_is_refused(member, work, message)
    finally:
        member_ctx.close()
        owner_ctx.close()


def test_taking_a_member_off_a_ward_on_a_phone_frees_their_work_and_their_open_tab_says_why(portal_web, browser):
    """The ward (a group) is the mailbox's member; the manager takes the person off the ward on the ward's page."""
    leitung = UserFactory(username="leitung", first_name="Lena", last_name="Leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    pfleger = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=UserFactory(username="chefin"), role=Membership.Role.OWNER)
    ward = Group.objects.create(name="Station 3")
    ward.user_set.add(pfleger)
    MembershipFactory(mailbox=box, user=None, group=ward, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="m1", raw=MAIL_WITH_PDF)

    member_ctx = browser.new_context(locale="de-DE")
    manager_ctx = browser.new_context(locale="de-DE", viewport=PHONE)
    try:
        member, manager = member_ctx.new_page(), manager_ctx.new_page()
        for tab in (member, manager):
            tab.set_default_timeout(10_000)
        work = _works_on(member, portal_web, message, pfleger)

        LoginPage(manager, portal_web.url).open().login("leitung", "pw-secret-123")
        manager.goto(f"{portal_web.url}/leitung/gruppen/{ward.pk}/")
        expect(manager.get_by_role("heading", level=1)).to_have_text("Gruppe Station 3")
        assert_no_horizontal_scroll(manager)
        assert_accessible(manager, "the ward's page on a phone")
        _tap(manager.locator("#group-members").get_by_role("button", name="entfernen pfleger"))
        expect(manager.locator("#flash-status")).to_have_text("Aus der Gruppe entfernt.")
        expect(manager.locator("#group-members")).not_to_contain_text("Paul Pfleger")
        assert_no_horizontal_scroll(manager)
        assert_accessible(manager, "the ward's page after the removal")

        _work_is_free(message)
        assert not ward.user_set.filter(pk=pfleger.pk).exists()
        _next_action_is_refused(member, work, message)
    finally:
        member_ctx.close()
        manager_ctx.close()
