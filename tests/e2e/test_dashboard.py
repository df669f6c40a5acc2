"""Dashboards and retention in the browser: accessible (axe) and usable on a phone, the legal hold and the
confirmed deletion work through the UI."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import expect

from mailbox.models import Membership, Message, MessageRead
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e


def test_dashboards_and_retention_for_leitung(portal_web, page):
    leitung = UserFactory(username="leitung", first_name="Lena", last_name="Leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(display_name="Kardiologie", sla_first_claim_hours=1, retention_days_after_done=30)
    MembershipFactory(mailbox=box, user=leitung, role=Membership.Role.OWNER)
    worker = UserFactory(username="pflege", first_name="Paul", last_name="Pflege")
    now = timezone.now()
    late = message_ingest(mailbox=box, uidl="late", raw=MAIL_WITH_PDF)
    Message.objects.filter(pk=late.pk).update(received_at=now - timedelta(days=4))
    old = message_ingest(mailbox=box, uidl="old", raw=MAIL_WITH_PDF.replace(b"Anbei", b"Hier"))
    Message.objects.filter(pk=old.pk).update(
        received_at=now - timedelta(days=50), state="done", done_at=now - timedelta(days=40), assignee=worker
    )
    MessageRead.objects.create(message=late, user=worker)
    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")

    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        for path in ("/leitung/dashboard/", f"/postfach/{box.pk}/dashboard/", "/leitung/aufbewahrung/"):
            page.goto(portal_web.url + path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            assert_accessible(page, f"{path} at {viewport['width']} px")
            try:
                assert_no_horizontal_scroll(page)
            except AssertionError as exc:
                raise AssertionError(f"{path}: {exc}") from None

    page.set_viewport_size(DESKTOP)
    page.goto(portal_web.url + f"/postfach/{box.pk}/dashboard/")
    expect(page.locator("#overdue-count")).to_contain_text("1")
    expect(page.get_by_role("img", name="Eingegangene und erledigte Nachrichten pro Tag")).to_be_visible()

    # The old message is due; leitung puts it under legal hold from its page, the report counts it as kept.
    page.goto(portal_web.url + f"/nachricht/{old.pk}/")
    page.get_by_label("Grund (z. B. Aktenzeichen)").fill("Az. 4/26")
    page.get_by_role("button", name="Aufbewahrungssperre setzen").click()
    expect(page.locator("#legal-hold-state")).to_contain_text("Gesetzt")
    page.goto(portal_web.url + "/leitung/aufbewahrung/")
    row = page.locator(f"#retention-{box.pk}")
    expect(row).to_contain_text("nichts fällig")

    # Released again: the report offers the deletion, and confirming it deletes the content.
    page.goto(portal_web.url + f"/nachricht/{old.pk}/")
    page.get_by_role("button", name="Aufbewahrungssperre aufheben").click()
    # Released once the page says so: a report loaded before the release was saved would offer nothing to delete.
    expect(page.locator("#legal-hold-state")).to_contain_text("Nicht gesetzt")
    page.goto(portal_web.url + "/leitung/aufbewahrung/")
    row.get_by_role("button", name="Inhalt von 1 Nachricht jetzt löschen").click()
    expect(page.locator(".flash")).to_contain_text("Inhalt von 1 Nachricht gelöscht")
    page.goto(portal_web.url + f"/nachricht/{old.pk}/")
    expect(page.locator("#content-deleted")).to_be_visible()
    assert Message.objects.get(pk=old.pk).content_deleted_at is not None
