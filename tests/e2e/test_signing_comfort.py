"""Komfortsignatur in the browser: the physician activates it (one PIN at the simulated terminal), signs a batch
without any PIN prompt, sees the count go down, and when it runs out in the middle of the next batch the page says
so and asks for the PIN for the rest; finally ends it. Every page state axe-clean.

Real components: gunicorn and a Celery worker against PostgreSQL, the simulated Konnektor in mode "basic" (HTTPS
with Login: the Komfortsignatur needs a secured connection) over its sockets; nobody types a PIN but the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mailbox.models import Membership
from signing.models import ComfortActivation, Draft
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import DESKTOP, PHONE, TABLET, assert_no_horizontal_scroll, box
from tests.e2e.pages import LoginPage
from tests.e2e.pages_signing import BatchPage, SigningQueuePage
from tests.e2e.signing_stack import signing_stack
from tests.fixtures.konnektor_sim import CT_ID, HBA_TELEMATIK_ID, PIN, WORKPLACE
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.documents import LETTER_XML, make_pdf
from tests.signing.factories import DraftFactory, SignerCardFactory, WorkplaceFactory
from tisim.konnektor import KonnektorSimulator

pytestmark = pytest.mark.e2e

WORKPLACE_LABEL = "Station 3, Arztzimmer"
WORKPLACE_OPTION = f"{WORKPLACE_LABEL} · {CT_ID}"
COMFORT_MAX = 4


@pytest.fixture
def konnektor(konnektor_sim_factory) -> KonnektorSimulator:
    return konnektor_sim_factory(mode="basic", auto_pin=None, pin_timeout=60.0, comfort_max=COMFORT_MAX)


@pytest.fixture
def comfort_portal(transactional_db, tmp_path: Path, konnektor: KonnektorSimulator) -> Iterator[PortalStack]:
    with signing_stack(tmp_path, konnektor) as stack:
        yield stack


@pytest.fixture
def letters(transactional_db) -> list[Draft]:
    """Four discharge letters (PDF) and an eAU (XML) for Dr. Sommer, who has the simulator's eHBA."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Stationsteam")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    cardio = MailboxFactory(display_name="Station Kardiologie", address="kardiologie@klinikum-demo.kim.telematik-test")
    MembershipFactory(mailbox=cardio, user=station, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=cardio, user=aerztin, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin, telematik_id=HBA_TELEMATIK_ID)
    WorkplaceFactory(workplace_id=WORKPLACE, label=WORKPLACE_LABEL, ct_id=CT_ID)
    pdfs = [
        DraftFactory(
            author=station,
            signer=aerztin,
            mailbox=cardio,
            patient_reference=f"Patient {n}",
            subject=f"Entlassbrief {n}",
            filename=f"Entlassbrief {n}.pdf",
            content=make_pdf(f"Entlassbrief {n}"),
        )
        for n in range(1, 5)
    ]
    eau = DraftFactory(
        author=station,
        signer=aerztin,
        mailbox=cardio,
        document_type="eau",
        patient_reference="Patient 1",
        subject="eAU 1",
        filename="eAU 1.xml",
        mime_type="application/xml",
        content=LETTER_XML,
    )
    return [*pdfs, eau]


def _open_comfort(page: Page) -> None:
    page.get_by_role("navigation", name="Signatur").get_by_role("link", name="Komfortsignatur").click()
    expect(page.get_by_role("heading", name="Komfortsignatur", level=1)).to_be_visible()


def _sign(page: Page, drafts: list[Draft]) -> BatchPage:
    queue = SigningQueuePage.open_from_nav(page)
    for draft in drafts:
        queue.checkbox(draft.pk).check()
    batch = queue.sign_selected(WORKPLACE_OPTION)
    batch.wait_live()
    return batch


def test_activate_sign_without_pin_run_out_and_end(comfort_portal, konnektor, letters, page):
    page.set_viewport_size(DESKTOP)
    LoginPage(page, comfort_portal.url).open().login("aerztin", "pw-secret-123")
    SigningQueuePage.open_from_nav(page)
    _open_comfort(page)
    status = page.locator("#comfort-status")
    expect(status).to_have_attribute("data-state", "none")
    assert_accessible(page, "the Komfortsignatur page, not active")

    # Activate: the terminal asks once ("Komfortsignatur aktivieren HBA"); the page says so while it waits.
    page.locator("#sign-workplace").select_option(label=WORKPLACE_OPTION)
    page.locator("#comfort-activate").click()
    terminal = konnektor.terminal(CT_ID)
    assert terminal.wait_for_prompt(30), "the terminal never asked for the PIN"
    assert any("Komfortsignatur aktivieren" in line for line in terminal.display)
    expect(page.locator("#pin-prompt")).to_have_text("Bitte PIN am Kartenterminal eingeben", timeout=10_000)
    assert_accessible(page, "the Komfortsignatur page waiting for the PIN")
    terminal.enter_pin(PIN)
    expect(status).to_have_attribute("data-state", "active", timeout=15_000)
    expect(page.locator("#comfort-remaining")).to_have_text(str(COMFORT_MAX))
    expect(page.locator("#comfort-valid-until")).to_contain_text("noch")
    assert_accessible(page, "the Komfortsignatur page, active")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_scroll(page)
    page.set_viewport_size(DESKTOP)

    # A batch of two letters: no PIN prompt at all, the summary says they were signed with the Komfortsignatur.
    prompts = len(terminal.prompts)
    batch = _sign(page, letters[:2])
    expect(batch.summary).to_be_visible(timeout=60_000)
    expect(batch.status).to_have_attribute("data-state", "done")
    expect(batch.count_signed).to_have_text("2 Dokumente signiert")
    expect(page.locator("#count-comfort")).to_have_text("davon 2 mit Komfortsignatur (ohne PIN)")
    assert len(terminal.prompts) == prompts, "no PIN was asked for"
    assert_accessible(page, "a batch signed with the Komfortsignatur")
    _open_comfort(page)
    expect(page.locator("#comfort-remaining")).to_have_text(str(COMFORT_MAX - 2))

    # The rest: two letters use up the Komfortsignatur, the eAU then asks for the PIN, and the page says why.
    batch = _sign(page, letters[2:])
    batch.wait_for_pin_prompt(timeout=60_000)
    expect(page.locator("#comfort-fallback")).to_contain_text("aufgebraucht")
    expect(page.locator("#comfort-fallback")).to_contain_text("PIN am Kartenterminal")
    expect(batch.pin_prompt).to_have_text("Bitte PIN am Kartenterminal eingeben")
    assert_accessible(page, "a batch falling back to the PIN")
    assert terminal.wait_for_prompt(10)
    terminal.enter_pin(PIN)
    expect(batch.summary).to_be_visible(timeout=60_000)
    expect(batch.count_signed).to_have_text("3 Dokumente signiert")
    expect(page.locator("#count-comfort")).to_have_text("davon 2 mit Komfortsignatur (ohne PIN)")
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNED}

    _open_comfort(page)
    expect(status).to_have_attribute("data-state", "none")
    expect(page.locator("#comfort-last")).to_contain_text("aufgebraucht")
    assert_accessible(page, "the Komfortsignatur page after it ran out")


def test_end_it_by_the_button(comfort_portal, konnektor, letters, page):
    page.set_viewport_size(DESKTOP)
    LoginPage(page, comfort_portal.url).open().login("aerztin", "pw-secret-123")
    SigningQueuePage.open_from_nav(page)
    _open_comfort(page)
    page.locator("#sign-workplace").select_option(label=WORKPLACE_OPTION)
    page.locator("#comfort-activate").click()
    terminal = konnektor.terminal(CT_ID)
    assert terminal.wait_for_prompt(30)
    terminal.enter_pin(PIN)
    expect(page.locator("#comfort-status")).to_have_attribute("data-state", "active", timeout=15_000)
    page.locator("#comfort-deactivate").focus()
    page.keyboard.press("Enter")  # keyboard only
    expect(page.locator("#comfort-status")).to_have_attribute("data-state", "none")
    expect(page.locator(".flash")).to_contain_text("Die Komfortsignatur wurde beendet.")
    assert konnektor.cards[0].comfort is None
    assert ComfortActivation.objects.get().end_reason == ComfortActivation.End.DEACTIVATED
    assert_accessible(page, "the Komfortsignatur page after ending it")
    for viewport in (PHONE, TABLET):  # 390 and 820 px: nothing scrolls sideways, the form is on screen whole
        page.set_viewport_size(viewport)
        assert_no_horizontal_scroll(page)
        for selector in ("#sign-workplace", "#comfort-activate"):
            found = box(page.locator(selector))
            assert found.x >= 0 and found.right <= viewport["width"], (selector, viewport)
