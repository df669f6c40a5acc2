"""Select all on a list longer than one batch takes: the sign button is disabled and the page says why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mailbox.models import Membership
from tests.e2e.conftest import PortalStack
from tests.e2e.pages import LoginPage
from tests.e2e.pages_signing import SigningQueuePage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory, plain_letters

pytestmark = pytest.mark.e2e


@pytest.fixture
def portal_small_batches(transactional_db, tmp_path: Path) -> Iterator[PortalStack]:
    """The web server only, with batches of at most two documents (the limit is a setting)."""
    stack = PortalStack(tmp_path, with_worker=False, extra_env={"KIMPORTAL_SIGNING_MAX_BATCH": "2"})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_selecting_more_than_one_batch_takes_says_why_the_button_is_disabled(portal_small_batches, page: Page) -> None:
    ward = MailboxFactory(display_name="Station Kardiologie")
    station = UserFactory(username="station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    for user in (station, aerztin):
        MembershipFactory(mailbox=ward, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin)
    WorkplaceFactory()
    drafts = plain_letters(3, signer=aerztin, author=station, mailbox=ward)

    LoginPage(page, portal_small_batches.url).open().login("aerztin", "pw-secret-123")
    signing = SigningQueuePage.open_from_nav(page)
    limit = page.locator("#selection-limit")
    expect(limit).to_be_hidden()
    signing.select_all.check()
    expect(signing.selection_count).to_contain_text("3")
    expect(signing.sign_button).to_be_disabled()
    expect(limit).to_be_visible()
    expect(limit).to_have_text("Höchstens 2 Dokumente je Signaturvorgang. Bitte wählen Sie weniger aus.")
    signing.checkbox(drafts[0].pk).uncheck()
    expect(signing.selection_count).to_contain_text("2")
    expect(signing.sign_button).to_be_enabled()
    expect(limit).to_be_hidden()
