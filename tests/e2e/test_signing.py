"""The physician's signing flow in the browser: queue → read a letter inline → select all → "Signieren" → the job
number on the page is the one the card terminal shows → PIN typed at the (simulated) terminal → progress →
summary; and pressing cancel at the terminal leaves every draft in the queue with the German text.

Real components throughout: gunicorn (uvicorn workers) and a Celery worker against PostgreSQL, and the simulated
Konnektor over its sockets with nobody typing the PIN but the test (no auto_pin)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from konnektor import error_text
from mailbox.models import Membership
from signing.models import BatchItem, Draft, Signature, SignatureBatch
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import DESKTOP, PHONE, TABLET, assert_no_horizontal_scroll, assert_not_clipped, box, screenshot
from tests.e2e.pages import LoginPage
from tests.e2e.pages_signing import SigningQueuePage
from tests.e2e.signing_stack import signing_stack
from tests.fixtures.konnektor_sim import CT_ID, HBA_TELEMATIK_ID, PIN, WORKPLACE
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.documents import LETTER_XML, make_pdf
from tests.signing.factories import DraftFactory, SignerCardFactory, WorkplaceFactory
from tisim.konnektor import KonnektorSimulator

pytestmark = pytest.mark.e2e

WORKPLACE_LABEL = "Station 3, Arztzimmer"
WORKPLACE_OPTION = f"{WORKPLACE_LABEL} · {CT_ID}"  # as the sign form lists it
PATIENTS = ["Müller, Jürgen", "Schäfer, Renate", "Öztürk, Mehmet", "Weiß, Gertrud"]


@pytest.fixture
def konnektor(konnektor_sim_factory) -> KonnektorSimulator:
    """The simulated Konnektor with Dr. Sommer's eHBA in CT-1; the PIN pad waits for the test (no auto_pin)."""
    return konnektor_sim_factory(mode="plain", auto_pin=None, pin_timeout=60.0)


@pytest.fixture
def signing_portal(transactional_db, tmp_path: Path, konnektor: KonnektorSimulator) -> Iterator[PortalStack]:
    """The portal's web server and worker, configured for the simulated Konnektor as the demo does it."""
    with signing_stack(tmp_path, konnektor) as stack:
        yield stack


@pytest.fixture
def queue(transactional_db) -> list[Draft]:
    """Four discharge letters (PDF) and an eAU (XML) written by the ward for Dr. Sommer, who has the eHBA of the
    simulator. PDFs (PAdES) and the eAU (CAdES) go in separate SignDocument calls: two PIN entries."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Stationsteam")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    cardio = MailboxFactory(display_name="Station Kardiologie", address="kardiologie@klinikum-demo.kim.telematik-test")
    MembershipFactory(mailbox=cardio, user=station, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=cardio, user=aerztin, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin, telematik_id=HBA_TELEMATIK_ID)
    WorkplaceFactory(workplace_id=WORKPLACE, label=WORKPLACE_LABEL, ct_id=CT_ID)
    letters = [
        DraftFactory(
            author=station,
            signer=aerztin,
            mailbox=cardio,
            patient_reference=patient,
            subject=f"Entlassbrief {patient.split(',')[0]}",
            filename=f"Entlassbrief {patient.split(',')[0]}.pdf",
            content=make_pdf(f"Entlassbrief {patient}", pages=2),
        )
        for patient in PATIENTS
    ]
    eau = DraftFactory(
        author=station,
        signer=aerztin,
        mailbox=cardio,
        document_type="eau",
        patient_reference=PATIENTS[0],
        subject="eAU Müller",
        filename="eAU Müller.xml",
        mime_type="application/xml",
        content=LETTER_XML,
    )
    return [*letters, eau]


def _login_to_queue(page: Page, portal: PortalStack) -> SigningQueuePage:
    LoginPage(page, portal.url).open().login("aerztin", "pw-secret-123")
    return SigningQueuePage.open_from_nav(page)


def _check_layout(page: Page, what: str, *required: str) -> None:
    """At phone and tablet width: nothing scrolls sideways, and the controls the flow needs are on screen whole."""
    for viewport in (PHONE, TABLET):
        page.set_viewport_size(viewport)
        assert_no_horizontal_scroll(page)
        for selector in required:
            found = box(page.locator(selector))
            assert found.x >= 0 and found.right <= viewport["width"], f"{selector} leaves the screen at {viewport}"
            assert_not_clipped(page.locator(selector))
        screenshot(page, f"signing-{what}-{viewport['width']}")
    page.set_viewport_size(DESKTOP)


def test_physician_signs_all_with_one_pin_at_the_terminal(signing_portal, konnektor, queue, page):
    page.set_viewport_size(DESKTOP)
    signing = _login_to_queue(page, signing_portal)
    for draft in queue:
        expect(signing.row(draft.pk)).to_be_visible()
    assert_accessible(page, "the signing queue")
    _check_layout(page, "queue", "#select-all", "#sign-workplace", "#sign-button")

    # What is signed is what was shown: the letter is drawn inline by pdf.js, no download needed.
    letter = signing.open_draft("Entlassbrief Müller")
    letter.wait_rendered()
    expect(letter.pages).to_have_count(2)
    expect(letter.state).to_have_text("Entwurf")
    assert_accessible(page, "a draft with its PDF")
    _check_layout(page, "draft", "#pdf-viewer", "#sign-button")

    signing = letter.back_to_queue()
    signing.select_all.check()
    for draft in queue:
        expect(signing.checkbox(draft.pk)).to_be_checked()
    expect(signing.selection_count).to_contain_text("5")
    batch = signing.sign_selected(WORKPLACE_OPTION)
    batch.wait_live()

    terminal = konnektor.terminal(CT_ID)
    job_number = batch.wait_for_pin_prompt()
    assert terminal.wait_for_prompt(10), "the terminal never asked for the PIN"
    # The physician compares the two: the page shows the number exactly as the terminal's display does.
    assert terminal.display[0] == job_number
    assert terminal.display[1:] == ["Eingabe Signatur-PIN HBA", "PIN.QES:"]
    expect(batch.pin_prompt).to_have_text("Bitte PIN am Kartenterminal eingeben")
    expect(batch.calls).to_have_text("Schritt 1 von 2 – jeder Schritt verlangt die PIN.")
    expect(batch.counts).to_have_text("0 von 5 signiert")
    assert_accessible(page, "the batch page waiting for the PIN")
    _check_layout(page, "batch-pin", "#job-number", "#pin-prompt", "#batch-cancel")

    # Nothing is signed before the PIN: the Konnektor waits, the drafts are out of the queue meanwhile.
    assert not Signature.objects.exists()
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNING}

    page.evaluate("window.__noReload = true")
    terminal.enter_pin(PIN)
    assert terminal.wait_settled(30) == ["PIN erfolgreich verifiziert!"]

    # Progress arrives over the socket: the PDFs are signed, the eAU's step asks for the PIN again, with its own
    # job number — again the one the terminal shows.
    expect(batch.calls).to_have_text("Schritt 2 von 2 – jeder Schritt verlangt die PIN.", timeout=60_000)
    expect(batch.pin_prompt).to_have_text("Bitte PIN erneut am Kartenterminal eingeben")
    first_call = len(konnektor.signed_requests)
    assert first_call == 4, "the four PDFs in the first call"
    expect(batch.counts).to_have_text("4 von 5 signiert")
    expect(batch.progress).to_have_attribute("value", "4")
    for draft in queue[:4]:
        expect(batch.item_for(draft.pk)).to_have_attribute("data-state", "signed")
    expect(batch.item_for(queue[4].pk)).to_have_attribute("data-state", "pending")
    second_job = batch.wait_for_pin_prompt()
    assert terminal.wait_for_prompt(10)
    assert terminal.display[0] == second_job != job_number
    terminal.enter_pin(PIN)

    # The summary, still without a reload.
    expect(batch.summary).to_be_visible(timeout=60_000)
    expect(batch.status).to_have_attribute("data-state", "done")
    expect(batch.summary).to_contain_text(second_job)
    expect(batch.count_signed).to_have_text("5 Dokumente signiert")
    expect(batch.count_failed).to_have_text("0 fehlgeschlagen")
    expect(batch.count_not_signed).to_have_text("0 nicht signiert (wieder in der Liste)")
    assert page.evaluate("window.__noReload === true"), "the page must not have reloaded"
    run = SignatureBatch.objects.get(pk=batch.batch_id)
    for item in run.items.all():
        expect(batch.item(item.pk)).to_have_attribute("data-state", "signed")
        expect(batch.item(item.pk)).to_contain_text("signiert")
    assert len(terminal.prompts) == 2, "one PIN entry per step"
    assert_accessible(page, "the batch summary")
    _check_layout(page, "batch-done", "#batch-summary", "#count-signed")

    # Every letter is signed (PDF: PAdES, the eAU: CAdES), checked locally, and out of the queue.
    assert run.job_number == second_job.removeprefix("#")
    assert set(Draft.objects.values_list("state", flat=True)) == {Draft.State.SIGNED}
    signatures = {s.draft_id: s for s in Signature.objects.filter(draft__in=queue)}
    assert len(signatures) == 5 and all(s.verified for s in signatures.values())
    assert [signatures[d.pk].format for d in queue] == [Signature.Format.PADES] * 4 + [Signature.Format.CADES]
    signed_requests = {r.request_id for r in konnektor.signed_requests}
    assert signed_requests == set(run.items.values_list("request_id", flat=True))
    page.get_by_role("link", name="Zurück zur Liste").click()
    signing = SigningQueuePage.arrived(page)
    expect(signing.list).to_contain_text("Keine Entwürfe zu signieren.")
    for draft in queue:
        expect(signing.row(draft.pk)).to_have_count(0)


def test_cancel_at_the_terminal_leaves_the_drafts_in_the_queue_with_the_reason(signing_portal, konnektor, queue, page):
    page.set_viewport_size(DESKTOP)
    signing = _login_to_queue(page, signing_portal)
    signing.select_all.check()
    batch = signing.sign_selected(WORKPLACE_OPTION)
    batch.wait_live()
    job_number = batch.wait_for_pin_prompt()

    terminal = konnektor.terminal(CT_ID)
    assert terminal.wait_for_prompt(10)
    assert terminal.display[0] == job_number
    terminal.cancel()  # the physician presses the cancel key instead of typing the PIN

    reason = error_text(4049)
    expect(batch.summary).to_be_visible(timeout=30_000)
    expect(batch.status).to_have_attribute("data-state", "failed")
    expect(batch.error).to_contain_text(reason)
    expect(batch.error).to_contain_text("Fehlercode 4049")
    expect(batch.count_signed).to_have_text("0 Dokumente signiert")
    expect(batch.count_not_signed).to_have_text("5 nicht signiert (wieder in der Liste)")
    for item in BatchItem.objects.filter(batch_id=batch.batch_id):
        expect(batch.item(item.pk)).to_have_attribute("data-state", "not_signed")
    assert_accessible(page, "a failed batch")
    _check_layout(page, "batch-failed", "#batch-error", "#count-not-signed")

    # Nothing signed, nothing lost: every draft is back in the queue, unchanged, with the German reason.
    assert not Signature.objects.exists()
    for draft in queue:
        fresh = Draft.objects.get(pk=draft.pk)
        assert (fresh.state, fresh.version, fresh.sha256) == (Draft.State.DRAFT, draft.version, draft.sha256)
        assert fresh.last_error_code == 4049
    page.get_by_role("link", name="Zurück zur Liste").click()
    signing = SigningQueuePage.arrived(page)
    for draft in queue:
        expect(signing.row(draft.pk)).to_be_visible()
        expect(signing.row(draft.pk)).to_contain_text(reason)
    assert_accessible(page, "the queue with failed drafts")

    # And they can be signed right away: the next attempt goes through (a PIN entry per step).
    signing.select_all.check()
    expect(signing.selection_count).to_contain_text("5")
    batch = signing.sign_selected(WORKPLACE_OPTION)
    for step in (1, 2):
        expect(batch.calls).to_contain_text(f"Schritt {step} von 2", timeout=60_000)
        shown = batch.wait_for_pin_prompt()
        assert terminal.wait_for_prompt(10) and terminal.display[0] == shown
        terminal.enter_pin(PIN)
    expect(batch.count_signed).to_have_text("5 Dokumente signiert", timeout=60_000)
    assert Signature.objects.count() == 5
