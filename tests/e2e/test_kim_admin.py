"""KIM-Konten in the browser: leitung sets the admission's out-of-office note through the simulated Account Manager
(JWT signed by the SMC-B in the simulated Konnektor), by keyboard, and the practice gets the automatic reply; the
pages are axe-clean and fit a phone (390 px) and a tablet (820 px)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import Page, expect

from mailbox.models import KimAccount
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, TABLET, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage
from tests.e2e.pages_operations import KimListPage, KimOutOfOfficePage
from tests.fixtures.accountmanager_sim import AmSim
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, MANDANT, WORKPLACE
from tests.mailbox.factories import KimAccountFactory, UserFactory
from tests.tisim.support import smtp_connect, smtp_user
from tisim.cm import CMSimulator
from tisim.cm.autoreply import DIENSTKENNUNG, AbsenceStore
from tisim.cm.messages import get_header
from tisim.konnektor import KonnektorSimulator

pytestmark = pytest.mark.e2e

AUFNAHME = "aufnahme@klinikum-demo.kim.telematik-test"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"
PASSWORD = "demo"
NOTE = "Die Aufnahme ist heute geschlossen. Bitte wenden Sie sich an die Notaufnahme."


class KimStack:
    def __init__(self, portal: PortalStack, cm: CMSimulator, am: AmSim, account: KimAccount) -> None:
        self.portal, self.cm, self.am, self.account = portal, cm, am, account


@pytest.fixture
def kim_stack(
    transactional_db: None,
    tmp_path: Path,
    konnektor_sim_factory: Callable[..., KonnektorSimulator],
    accountmanager_sim_factory: Callable[..., AmSim],
) -> Iterator[KimStack]:
    konnektor = konnektor_sim_factory(hba=False, data_dir=tmp_path / "konnektor")
    konnektor.add_smcb("Klinikum Demo", "5-2-123456789", workplaces=(WORKPLACE,))
    cm = CMSimulator(tmp_path / "cm", accounts={AUFNAHME: PASSWORD, PRAXIS: PASSWORD}, tls=True)
    cm.start()
    portal = PortalStack(
        tmp_path,
        with_worker=False,
        extra_env={
            "KIMPORTAL_KONNEKTOR_URL": konnektor.base_url,
            "KIMPORTAL_KONNEKTOR_MODE": "plain",
            "KIMPORTAL_KONNEKTOR_MANDANT": MANDANT,
            "KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM": CLIENT_SYSTEM,
            "KIMPORTAL_KONNEKTOR_TIMEOUT": "10",
        },
    )
    try:
        am = accountmanager_sim_factory(cm=cm, pki_data_dir=konnektor.data_dir)
        portal.extra_env.update(
            KIMPORTAL_ACCOUNT_MANAGER_URL=am.base_url,
            KIMPORTAL_ACCOUNT_MANAGER_CA=str(am.am.ca_path),
            KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT="10",
        )
        leitung = UserFactory(username="leitung", first_name="Lena", last_name="Leitung")
        leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
        account = KimAccountFactory(
            mailbox__address=AUFNAHME,
            mailbox__display_name="Aufnahme",
            smtp_port=cm.smtp_port,
            pop3_port=cm.pop3_port,
            transport=KimAccount.Transport.IMPLICIT_TLS,
            tls_certificate_check=KimAccount.CertificateCheck.PINNED,
            tls_fingerprint_sha256=cm.fingerprint,
            mandant_id=MANDANT,
            client_system_id=CLIENT_SYSTEM,
            workplace_id=WORKPLACE,
            password=PASSWORD,
        )
        portal.start()
        yield KimStack(portal, cm, am, account)
    finally:
        portal.stop()
        cm.stop()


def _login(page: Page, stack: KimStack) -> None:
    LoginPage(page, stack.portal.url).open().login("leitung", "pw-secret-123")


def _mail_from_the_practice(cm: CMSimulator) -> None:
    raw = (
        f"From: Praxis Mueller <{PRAXIS}>\r\nTo: <{AUFNAHME}>\r\nSubject: Befund\r\n"
        f"Date: Sun, 29 Nov 2026 10:00:00 +0100\r\nMessage-ID: <{time.time_ns()}@praxis-mueller.kim.telematik-test>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n"
    ).encode()
    with smtp_connect(cm) as conn:
        conn.login(smtp_user(PRAXIS), PASSWORD)
        conn.sendmail(PRAXIS, [AUFNAHME], raw)


def test_leitung_sets_the_out_of_office_note_by_keyboard_and_the_practice_gets_the_reply(
    kim_stack: KimStack, page: Page
) -> None:
    _login(page, kim_stack)
    account_page = KimListPage.open_from_nav(page).open_account("Aufnahme")
    expect(account_page.status).to_contain_text("registriert")
    expect(account_page.out_of_office_summary).to_contain_text("ausgeschaltet")
    form = account_page.open_out_of_office()

    # Keyboard only, except for the date pickers' values: Space ticks, typing fills, Tab leads to the button.
    form.active.focus()
    page.keyboard.press("Space")
    expect(form.active).to_be_checked()
    now = timezone.localtime()
    form.starts_at.fill((now - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    form.ends_at.fill((now + dt.timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"))
    form.text.focus()
    page.keyboard.type(NOTE)
    page.keyboard.press("Tab")
    expect(form.submit).to_be_focused()
    page.keyboard.press("Enter")

    expect(form.flash()).to_contain_text("Abwesenheitsnotiz gespeichert und eingeschaltet.")
    expect(KimOutOfOfficePage(page).text).to_have_value(NOTE)
    note = AbsenceStore(kim_stack.cm.data_dir).get(AUFNAHME)
    assert note is not None and note.active and note.message == NOTE

    _mail_from_the_practice(kim_stack.cm)
    drop = [kim_stack.cm.maildrop_read(PRAXIS, u) for u in kim_stack.cm.maildrop_uidls(PRAXIS)]
    replies = [m for m in drop if get_header(m, "X-KIM-Dienstkennung") == DIENSTKENNUNG]
    assert len(replies) == 1 and NOTE.encode() in replies[0]


def test_a_too_long_text_is_refused_in_german_and_the_page_stays_accessible(kim_stack: KimStack, page: Page) -> None:
    _login(page, kim_stack)
    page.goto(f"{kim_stack.portal.url}/betrieb/kim/{kim_stack.account.mailbox_id}/abwesenheit/")
    form = KimOutOfOfficePage(page)
    form.active.check()
    form.text.fill("kurz")
    form.submit.click()  # no dates: the portal says which are missing, the provider is not asked
    expect(page.locator("#kim-ooo-form")).to_contain_text("Bitte den Beginn angeben.")
    expect(page.locator("#kim-ooo-form")).to_contain_text("Bitte das Ende angeben.")
    assert_accessible(page, "the out-of-office form with errors")
    assert AbsenceStore(kim_stack.cm.data_dir).get(AUFNAHME) is None


def test_the_kim_pages_are_accessible_and_fit_a_phone_and_a_tablet(kim_stack: KimStack, page: Page) -> None:
    from operations.models import PasswordChange

    # The account page's last change with its longest reason: it must fit too.
    reason = "Beim Anbieter zurückgesetzt, weil das Portal das neue Passwort nicht speichern konnte."
    PasswordChange.objects.create(
        account=kim_stack.account, state=PasswordChange.State.REJECTED, outcome={"msgid": reason, "params": {}}
    )
    _login(page, kim_stack)
    pk = kim_stack.account.mailbox_id
    paths = [
        "/betrieb/kim/",
        f"/betrieb/kim/{pk}/",
        f"/betrieb/kim/{pk}/abwesenheit/",
        f"/betrieb/kim/{pk}/passwort/",
        f"/betrieb/kim/{pk}/version/",
        f"/betrieb/kim/{pk}/abmelden/",
        "/betrieb/kim/registrieren/",
    ]
    checked: list[Any] = []
    for viewport in (PHONE, TABLET):
        page.set_viewport_size(viewport)
        for path in paths:
            page.goto(kim_stack.portal.url + path)
            expect(page.get_by_role("heading", level=1)).to_be_visible()
            if path == f"/betrieb/kim/{pk}/":
                expect(page.locator("#kim-last-password-change")).to_contain_text(reason)
            assert_accessible(page, f"{path} at {viewport['width']} px")
            try:
                assert_no_horizontal_scroll(page)
            except AssertionError as exc:
                raise AssertionError(f"{path} at {viewport['width']} px: {exc}") from None
            checked.append((viewport["width"], path))
    assert len(checked) == 2 * len(paths)
