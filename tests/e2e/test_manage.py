"""Managers (Leitung) administer access through the portal: no Django admin, no membership of their own."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from playwright.sync_api import expect

from mailbox.models import Membership, RoutingRule
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage, SiteNav
from tests.e2e.pages_manage import ManageHomePage
from tests.mailbox.factories import KimAccountFactory, MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.e2e


def test_leitung_makes_aerztin_owner_of_a_mailbox(portal_web, page):
    leitung = UserFactory(username="leitung", first_name="Lena", last_name="Leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    UserFactory(username="aerztin", first_name="Anna", last_name="Ärztin")
    box = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=box, role=Membership.Role.OWNER, user=UserFactory(username="chef"))

    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")
    SiteNav(page).link("Leitung").click()
    mailbox_page = ManageHomePage(page).open_mailbox("Kardiologie")
    assert_accessible(page, "the manager's mailbox page")

    mailbox_page.grant("Anna Ärztin (aerztin)", "Eigentümer")

    row = mailbox_page.member_row("Anna Ärztin")
    expect(row).to_contain_text("Eigentümer")
    expect(row).to_contain_text("Lena Leitung")  # granted by
    membership = Membership.objects.get(mailbox=box, user__username="aerztin")
    assert (membership.role, membership.granted_by_id) == (Membership.Role.OWNER, leitung.pk)
    assert not Membership.objects.filter(mailbox=box, user=leitung).exists()


def test_the_managers_pages_are_accessible_and_fit_a_phone(portal_web, page):
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(display_name="Kardiologie")
    KimAccountFactory(mailbox=box)
    MembershipFactory(mailbox=box, role=Membership.Role.OWNER, user=UserFactory(username="chef"))
    ward = Group.objects.create(name="Station 3")
    MembershipFactory(mailbox=box, user=None, group=ward, role=Membership.Role.READER)
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")

    paths = [
        "/leitung/",
        "/leitung/postfaecher/",
        "/leitung/postfaecher/neu/",
        f"/leitung/postfaecher/{box.pk}/",
        f"/leitung/postfaecher/{box.pk}/konto/",
        "/leitung/gruppen/",
        f"/leitung/gruppen/{ward.pk}/",
        "/leitung/vertretungen/",
        "/leitung/sammelaenderungen/",
        f"/leitung/zugriffe/?postfach={box.pk}",
    ]
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        for path in paths:
            page.goto(portal_web.url + path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            assert_accessible(page, f"{path} at {viewport['width']} px")
            try:
                assert_no_horizontal_scroll(page)
            except AssertionError as exc:
                raise AssertionError(f"{path}: {exc}") from None


def test_the_routing_rules_pages_fit_a_phone(portal_web, page):
    # The rules table and the form's long choices ("wenigste offene Arbeit …") once widened the page to 580 px.
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(display_name="Kardiologie")
    chef = UserFactory(username="chef")
    MembershipFactory(mailbox=box, role=Membership.Role.OWNER, user=chef)
    rule = RoutingRule.objects.create(
        mailbox=box,
        position=1,
        name="eAU der Aufnahme an die Chefärztin",
        dienstkennung="eAU",
        assign=RoutingRule.Assign.USER,
        assign_user=chef,
    )
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")

    page.set_viewport_size(PHONE)
    for path in (
        f"/postfach/{box.pk}/regeln/",
        f"/postfach/{box.pk}/regeln/{rule.pk}/",
        f"/postfach/{box.pk}/regeln/{rule.pk}/?testen=1",
    ):
        page.goto(portal_web.url + path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        assert_accessible(page, f"{path} at {PHONE['width']} px")
        try:
            assert_no_horizontal_scroll(page)
        except AssertionError as exc:
            raise AssertionError(f"{path}: {exc}") from None


def test_a_rule_named_in_one_long_word_keeps_its_edit_page_inside_a_desktop(portal_web, page):
    # The page heading names the rule; an unbroken name of 100 characters widened the desktop page to 1,743 px, as
    # the heading broke long words only below the phone breakpoint.
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=box, role=Membership.Role.OWNER, user=UserFactory(username="chef"))
    rule = RoutingRule.objects.create(
        mailbox=box, position=1, name="Arztbrief" * 11, dienstkennung="eAU", assign=RoutingRule.Assign.NOBODY
    )
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")

    page.set_viewport_size(DESKTOP)
    page.goto(portal_web.url + f"/postfach/{box.pk}/regeln/{rule.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Arztbrief")
    assert_no_horizontal_scroll(page)
