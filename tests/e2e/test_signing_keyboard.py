"""The signing queue by keyboard only, at phone width (390 px): Tab to a row's checkbox and Space, "x" on a row's
link, the count follows, and Enter on "Auswahl signieren" starts the batch of exactly the rows chosen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mailbox.models import Membership
from signing.models import SignatureBatch
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage
from tests.e2e.pages_signing import SigningQueuePage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory, plain_letters

pytestmark = pytest.mark.e2e


@pytest.fixture
def portal_web_only(transactional_db, tmp_path: Path) -> Iterator[PortalStack]:
    """The web server only: the batch is created and waits for a worker, which is all this test looks at."""
    stack = PortalStack(tmp_path, with_worker=False)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def _tab_to(page: Page, selector: str, limit: int = 60) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reached by Tab")


def test_the_queue_is_signed_by_keyboard_only_on_a_phone(portal_web_only, page: Page) -> None:
    ward = MailboxFactory(display_name="Station Kardiologie")
    station = UserFactory(username="station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    for user in (station, aerztin):
        MembershipFactory(mailbox=ward, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin)
    WorkplaceFactory()  # the only one: preselected
    drafts = plain_letters(3, signer=aerztin, author=station, mailbox=ward)

    page.set_viewport_size(PHONE)
    LoginPage(page, portal_web_only.url).open().login("aerztin", "pw-secret-123")
    page.goto(f"{portal_web_only.url}/signatur/")
    signing = SigningQueuePage.arrived(page)
    assert_no_horizontal_scroll(page)

    _tab_to(page, f"#select-{drafts[0].pk}")
    page.keyboard.press("Space")
    expect(signing.checkbox(drafts[0].pk)).to_be_checked()
    _tab_to(page, f"#draft-{drafts[2].pk} a")
    page.keyboard.press("x")
    expect(signing.checkbox(drafts[2].pk)).to_be_checked()
    expect(signing.page).to_have_url(f"{portal_web_only.url}/signatur/")  # "x" did not follow the link
    expect(signing.checkbox(drafts[1].pk)).not_to_be_checked()
    expect(signing.selection_count).to_contain_text("2")

    _tab_to(page, "#sign-button")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Signaturvorgang", level=1)).to_be_visible()
    assert_no_horizontal_scroll(page)
    batch = SignatureBatch.objects.get()
    assert sorted(batch.items.values_list("draft_id", flat=True)) == sorted([drafts[0].pk, drafts[2].pk])
