"""A signed letter from the practice, in the browser: the production server and a Celery worker with beat, the
simulated CM and Konnektor over their sockets. The message page shows the Konnektor's verdict, follows a new check
live (no reload), checks again from the keyboard, is accessible (axe) and fits a phone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from audit.models import AuditEvent
from mailbox.models import KimAccount, Message
from signing.models import ReceivedSignature
from signing.services.received import received_signatures_verify
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import ROOT, PortalStack
from tests.e2e.layout import PHONE, assert_no_horizontal_scroll, screenshot
from tests.e2e.pages import LoginPage
from tests.fixtures.konnektor_sim import WORKPLACE, sample_pdf
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tests.signing.factories import WorkplaceFactory
from tisim.cm import CMSimulator
from tisim.konnektor import KonnektorSimulator

pytestmark = pytest.mark.e2e

KARDIO = "kardiologie@klinikum-demo.kim.telematik-test"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"
GOOD = "QES von Dr. med. Klaus Müller — gültig"


@pytest.fixture
def ti_dir(tmp_path: Path) -> Path:
    return tmp_path / "ti"


@pytest.fixture
def cm(ti_dir: Path) -> Iterator[CMSimulator]:
    sim = CMSimulator(ti_dir, accounts={KARDIO: "demo", PRAXIS: "demo"}, tls=True)
    sim.start()
    yield sim
    sim.stop()


@pytest.fixture
def konnektor(konnektor_sim_factory: Callable[..., KonnektorSimulator], ti_dir: Path, settings) -> KonnektorSimulator:
    # The same data directory as the CM: the practice's physician has a certificate of the QES CA it trusts.
    sim = konnektor_sim_factory(mode="plain", data_dir=ti_dir)
    settings.KIMPORTAL_KONNEKTOR_URL = sim.base_url  # for the check this test process runs itself
    return sim


@pytest.fixture
def stack(transactional_db, tmp_path: Path, konnektor: KonnektorSimulator) -> Iterator[PortalStack]:
    env = {
        "KIMPORTAL_KONNEKTOR_URL": konnektor.base_url,
        "KIMPORTAL_KONNEKTOR_MODE": "plain",
        "KIMPORTAL_KONNEKTOR_MANDANT": konnektor.mandant_id,
        "KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM": konnektor.client_system_id,
    }
    portal = PortalStack(tmp_path, with_worker=True, extra_env=env)
    try:
        portal.start()
        yield portal
    finally:
        portal.stop()


def wait_until(predicate: Callable[[], bool], timeout: float, portal: PortalStack) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail("condition not reached; portal logs:\n" + portal.logs())


def test_a_signed_letter_shows_the_konnektors_verdict_live_and_checks_again_from_the_keyboard(
    cm, konnektor, stack, page, tmp_path
):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(
        mailbox__address=KARDIO,
        mailbox__display_name="Kardiologie",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        poll_interval_seconds=1,
        password="demo",
    )
    MembershipFactory(mailbox=account.mailbox, user=station)
    WorkplaceFactory(workplace_id=WORKPLACE)
    # The Konnektor's verification fails once (4001): the page says "nicht prüfbar" first.
    konnektor.arm_fault("verify-failure", times=1)
    letter = tmp_path / "Entlassbrief Müller.pdf"
    letter.write_bytes(sample_pdf("Entlassbrief"))
    subprocess.run(
        [sys.executable, "-m", "tisim", "send", "--data-dir", str(cm.data_dir), "--from", PRAXIS, "--to", KARDIO,
         "--subject", "Arztbrief signiert", "--sign", "--attach", str(letter)],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip

    # Beat → worker → POP3 → ingest → signal → task → Konnektor (refuses once).
    wait_until(lambda: ReceivedSignature.objects.filter(status="unverifiable").exists(), 60, stack)
    message = Message.objects.get(subject="Arztbrief signiert")

    inbox = LoginPage(page, stack.url).open().login("station", "pw-secret-123")
    inbox.open_message("Arztbrief signiert")
    panel = page.locator("#received-signatures")
    expect(panel).to_contain_text("QES von Dr. med. Klaus Müller — nicht prüfbar: ")
    expect(panel).to_contain_text("nächster Versuch um")
    screenshot(page, "received-signature-not-verifiable")
    page.locator("body[data-live=open]").wait_for(state="attached")
    assert_accessible(page)

    # A check elsewhere (here: this test process) reaches the open page through its socket, without reload.
    page.evaluate("window.__noReload = true")
    received_signatures_verify(message_id=message.pk, force=True)
    expect(panel).to_contain_text(GOOD, timeout=10_000)
    assert page.evaluate("window.__noReload === true"), "the page must not have reloaded"

    # Check again with the keyboard: the button is reachable and works (htmx), the worker answers.
    before = AuditEvent.objects.filter(action="signing.received_verified").count()
    button = page.get_by_role("button", name="Signaturen erneut prüfen")
    button.focus()
    page.keyboard.press("Enter")
    wait_until(lambda: AuditEvent.objects.filter(action="signing.received_verified").count() > before, 30, stack)
    expect(panel).to_contain_text(GOOD, timeout=10_000)
    expect(page.get_by_role("button", name="Signaturen erneut prüfen")).to_be_enabled()
    requested = AuditEvent.objects.get(action="signing.received_verify_requested")
    assert requested.actor_id == station.pk and requested.message_id == message.pk
    assert_accessible(page)

    screenshot(page, "received-signature-valid")
    page.set_viewport_size(PHONE)
    expect(panel).to_be_visible()
    assert_no_horizontal_scroll(page)
    screenshot(page, "received-signature-phone")
