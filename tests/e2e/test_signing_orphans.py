"""Orphaned drafts in the browser: author and signer have left the department; its owner finds the letter under
"Verwaiste Entwürfe" (only owners see the link), takes it over by keyboard and lands on the draft as its author.
axe-clean at phone (390 px) and tablet (820 px) width."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from mailbox.models import Membership
from signing.models import Draft
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, TABLET, assert_no_horizontal_scroll, screenshot
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory

pytestmark = pytest.mark.e2e


@pytest.fixture
def orphan(transactional_db):
    cardio = MailboxFactory(display_name="Station Kardiologie", address="kardiologie@klinikum-demo.kim.telematik-test")
    owner = UserFactory(username="stationsleitung", first_name="Olga", last_name="Ober")
    MembershipFactory(mailbox=cardio, user=owner, role=Membership.Role.OWNER)
    colleague = UserFactory(username="pflege")
    MembershipFactory(mailbox=cardio, user=colleague, role=Membership.Role.PROCESSOR)
    author = UserFactory(username="assistenz", first_name="Jonas", last_name="Neumann")
    signer = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    for user in (author, signer):
        MembershipFactory(mailbox=cardio, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=signer)
    draft = draft_create(
        author=author,
        data=DraftData(
            document_type="earztbrief",
            patient_reference="Müller, Jürgen",
            signer=signer,
            mailbox=cardio,
            subject="Entlassbrief Müller",
            recipients=["praxis.mueller@praxis-mueller.kim.telematik-test"],
        ),
        document=document_check(b"Sehr geehrte Frau Kollegin,\nDiagnose: Vorhofflimmern\n", "Entlassbrief.txt"),
    )
    Membership.objects.filter(mailbox=cardio, user__in=[author, signer]).delete()  # both left the department
    return draft


def test_the_owner_takes_over_an_orphaned_draft_by_keyboard(portal_web, page: Page, orphan):
    LoginPage(page, portal_web.url).open().login("stationsleitung", "pw-secret-123")
    page.goto(f"{portal_web.url}/signatur/")
    page.get_by_role("link", name="Verwaiste Entwürfe").click()
    expect(page.get_by_role("heading", name="Verwaiste Entwürfe", level=1)).to_be_visible()
    row = page.locator(f"#orphan-{orphan.pk}")
    expect(row).to_contain_text("Entlassbrief Müller")
    expect(row).to_contain_text("Jonas Neumann")
    for viewport in (PHONE, TABLET):
        page.set_viewport_size(viewport)
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"orphaned drafts at {viewport['width']} px")
        screenshot(page, f"signing-orphans-{viewport['width']}")
    page.set_viewport_size(DESKTOP)

    take_over = page.get_by_role("button", name="Entwurf „Entlassbrief Müller“ (Müller, Jürgen) übernehmen")
    take_over.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/signatur/entwurf/{orphan.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Entlassbrief Müller")
    assert_accessible(page, "taken-over draft")
    orphan.refresh_from_db()
    assert orphan.author.username == "stationsleitung" and orphan.state == Draft.State.DRAFT


def test_a_processor_of_the_department_has_no_link_and_no_page(portal_web, page: Page, orphan):
    LoginPage(page, portal_web.url).open().login("pflege", "pw-secret-123")
    page.goto(f"{portal_web.url}/signatur/")
    expect(page.get_by_role("link", name="Verwaiste Entwürfe")).to_have_count(0)
    response = page.goto(f"{portal_web.url}/signatur/verwaist/")
    assert response is not None and response.status == 404
