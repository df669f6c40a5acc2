""" "Auswahl signieren" sent twice — a double click, and the same selection from a second tab — leads to the running
batch's page with its job number (the one the card terminal shows), never to an error or a second batch.

Real components: gunicorn (uvicorn workers) and a Celery worker against PostgreSQL, the simulated Konnektor over
its sockets, waiting at the terminal for a PIN nobody types (the batch stays running)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from mailbox.models import Membership
from signing.models import Draft, SignatureBatch
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage, click_twice_while_the_first_is_answered
from tests.e2e.pages_signing import BatchPage, SigningQueuePage
from tests.e2e.signing_stack import signing_stack
from tests.fixtures.konnektor_sim import CT_ID, HBA_TELEMATIK_ID, WORKPLACE
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory, plain_letters
from tisim.konnektor import KonnektorSimulator

pytestmark = pytest.mark.e2e

WORKPLACE_LABEL = "Station 3, Arztzimmer"
WORKPLACE_OPTION = f"{WORKPLACE_LABEL} · {CT_ID}"


@pytest.fixture
def konnektor(konnektor_sim_factory) -> KonnektorSimulator:
    return konnektor_sim_factory(mode="plain", auto_pin=None, pin_timeout=60.0)


@pytest.fixture
def signing_portal(transactional_db, tmp_path: Path, konnektor: KonnektorSimulator) -> Iterator[PortalStack]:
    with signing_stack(tmp_path, konnektor) as stack:
        yield stack


@pytest.fixture
def letters(transactional_db) -> list[Draft]:
    station = UserFactory(username="station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    ward = MailboxFactory(display_name="Station Kardiologie")
    for user in (station, aerztin):
        MembershipFactory(mailbox=ward, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin, telematik_id=HBA_TELEMATIK_ID)
    WorkplaceFactory(workplace_id=WORKPLACE, label=WORKPLACE_LABEL, ct_id=CT_ID)
    return plain_letters(3, signer=aerztin, author=station, mailbox=ward)


def test_a_double_click_and_a_second_tab_lead_to_the_one_running_batch(
    signing_portal, konnektor, letters, browser_context
):
    first = browser_context.new_page()
    first.set_default_timeout(10_000)
    LoginPage(first, signing_portal.url).open().login("aerztin", "pw-secret-123")
    # The second tab shows the same list, all selected, before the first tab signs.
    second = browser_context.new_page()
    second.set_default_timeout(10_000)
    second.goto(signing_portal.url + "/signatur/")
    in_second = SigningQueuePage.arrived(second)
    in_second.select_all.check()
    in_second.workplace.select_option(label=WORKPLACE_OPTION)

    queue = SigningQueuePage.open_from_nav(first)
    queue.select_all.check()
    expect(queue.selection_count).to_contain_text("3")
    queue.workplace.select_option(label=WORKPLACE_OPTION)
    click_twice_while_the_first_is_answered(first, queue.sign_button, f"{signing_portal.url}/signatur/signieren/")

    expect(first.get_by_role("heading", name="Signaturvorgang", level=1)).to_be_visible()
    batch = SignatureBatch.objects.get()
    assert BatchPage(first).batch_id == batch.pk
    expect(first.locator("#flash-alert")).to_be_empty()
    shown = BatchPage(first).wait_for_pin_prompt()
    terminal = konnektor.terminal(CT_ID)
    assert terminal.wait_for_prompt(10), "the terminal never asked for the PIN"
    assert terminal.display[0] == shown
    assert sorted(batch.items.values_list("draft_id", flat=True)) == sorted(d.pk for d in letters)

    # The second tab's "Auswahl signieren": the same selection is being signed, so it leads there too.
    in_second.sign_button.click()
    expect(second.get_by_role("heading", name="Signaturvorgang", level=1)).to_be_visible()
    assert BatchPage(second).batch_id == batch.pk
    expect(second.locator("#flash-status")).to_have_text("Diese Auswahl wird bereits signiert.")
    expect(second.locator("#flash-alert")).to_be_empty()
    expect(BatchPage(second).job_number).to_have_text(shown)
    assert SignatureBatch.objects.count() == 1
    assert len(terminal.prompts) == 1, "one PIN prompt at the terminal, not one per click"
    assert_accessible(second, "the running batch reached from a second tab")
    second.set_viewport_size(PHONE)
    assert_no_horizontal_scroll(second)
    expect(BatchPage(second).job_number).to_be_in_viewport()
