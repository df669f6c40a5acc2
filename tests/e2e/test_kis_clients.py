"""Drafts from the KIS, end to end in a real browser against gunicorn: the manager creates the Kardiologie
connection with the keyboard and copies its token (shown once), the sample client posts the demo's three
eArztbriefe with it, the physician finds them in review, and a revoked token is refused at once. The managers'
page is axe-clean and fits at phone (390 px) and tablet (820 px) width."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from mailbox.models import Membership
from signing.api.tokens import token_hash
from signing.models import Draft, KisToken
from signing.services.review import review_rule_set
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import DESKTOP, PHONE, TABLET, assert_no_horizontal_scroll, screenshot
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory

pytestmark = pytest.mark.e2e

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kis_client.py"
KARDIOLOGIE = "kardiologie@klinikum-demo.kim.telematik-test"


@pytest.fixture
def house(transactional_db):
    cardio = MailboxFactory(display_name="Station Kardiologie", address=KARDIOLOGIE)
    MailboxFactory(display_name="Aufnahme", address="aufnahme@klinikum-demo.kim.telematik-test")
    assistenz = UserFactory(username="assistenz", first_name="Jonas", last_name="Neumann")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    leitung = UserFactory(username="leitung", first_name="Lea", last_name="Leitung")
    leitung.user_permissions.add(Permission.objects.get(codename="manage_house"))
    for user in (assistenz, aerztin):
        MembershipFactory(mailbox=cardio, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin)
    aerztin.user_permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))
    review_rule_set(manager=leitung, mailbox=cardio, document_type="earztbrief", required=True)
    return cardio


def _client(portal_url: str, token_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--url", f"{portal_url}/api/kis/v1", "--token-file", str(token_file), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _fits(page: Page, what: str) -> None:
    for viewport in (PHONE, TABLET):
        page.set_viewport_size(viewport)
        screenshot(page, f"kis-{what}-{viewport['width']}")
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"{what} at {viewport['width']} px")
    page.set_viewport_size(DESKTOP)


def test_manager_connects_the_kis_which_posts_letters_for_review(portal_web, browser, house, tmp_path):
    manager_ctx, physician_ctx = browser.new_context(locale="de-DE"), browser.new_context(locale="de-DE")
    try:
        manager, physician = manager_ctx.new_page(), physician_ctx.new_page()
        for p in (manager, physician):
            p.set_default_timeout(10_000)
            p.set_viewport_size(DESKTOP)

        LoginPage(manager, portal_web.url).open().login("leitung", "pw-secret-123")
        manager.get_by_role("navigation", name="Hauptnavigation").get_by_role("link", name="Signatur").click()
        manager.get_by_role("navigation", name="Signatur").get_by_role("link", name="KIS-Anbindungen").click()
        expect(manager.get_by_role("heading", name="KIS-Anbindungen", level=1)).to_be_visible()
        _fits(manager, "clients-empty")

        # Keyboard only: the name, the department's checkbox (Space), the button (Enter).
        manager.get_by_label("Name der Anbindung").fill("KIS Kardiologie")
        manager.get_by_label("Name der Anbindung").press("Tab")
        expect(manager.get_by_role("checkbox", name="Aufnahme")).to_be_focused()
        manager.keyboard.press("Tab")
        expect(manager.get_by_role("checkbox", name="Station Kardiologie")).to_be_focused()
        manager.keyboard.press("Space")
        manager.get_by_role("button", name="Anlegen und Token erzeugen").focus()
        manager.keyboard.press("Enter")
        shown = manager.locator("#kis-token-value")
        expect(shown).to_be_visible()
        token = shown.inner_text().strip()
        assert KisToken.objects.get().token_hash == token_hash(token)
        expect(manager.locator("#kis-client-list")).to_contain_text("Station Kardiologie")
        _fits(manager, "token-shown")

        token_file = tmp_path / "kis-token"
        token_file.write_text(token + "\n")
        posted = _client(portal_web.url, token_file, "submit", "--demo")
        assert posted.returncode == 0, posted.stderr + portal_web.logs()
        assert posted.stdout.count("eingereicht") == 3 and posted.stdout.count("in Prüfung") == 3
        assert Draft.objects.filter(source="kis", review_state=Draft.Review.PENDING).count() == 3

        # The physician reviews them: all three are hers to review.
        LoginPage(physician, portal_web.url).open().login("aerztin", "pw-secret-123")
        physician.goto(f"{portal_web.url}/signatur/alle/")
        for subject in ("Entlassbrief Weber, Karl", "Entlassbrief Yilmaz, Ayse", "Verlegungsbrief Hoffmann, Erika"):
            expect(physician.get_by_role("link", name=subject, exact=False).first).to_be_visible()
        for draft in Draft.objects.filter(source="kis"):
            expect(physician.locator(f"#draft-{draft.pk} [data-review]")).to_have_text("in Prüfung")

        # The manager revokes the token on the connection's page; the next call is refused.
        manager.set_viewport_size(DESKTOP)
        manager.get_by_role("link", name="KIS Kardiologie").click()
        expect(manager.get_by_role("heading", name="KIS Kardiologie", level=1)).to_be_visible()
        expect(manager.locator("#kis-token-value")).to_have_count(0)  # shown once, never again
        _fits(manager, "client")
        manager.get_by_role("button", name="Widerrufen").press("Enter")
        expect(manager.locator("#kis-token-list")).to_contain_text("widerrufen")
        refused = _client(portal_web.url, token_file, "status", "DEMO-ARZTBRIEF-1")
        assert refused.returncode == 1 and "token_revoked" in refused.stderr

        # A new token for 90 days, chosen with the keyboard: its date is shown with it, and it works until then.
        lifetime = manager.get_by_label("Gültigkeit des Tokens")
        expect(lifetime).to_have_value("365")
        lifetime.focus()
        manager.keyboard.press("ArrowUp")  # 180 Tage
        manager.keyboard.press("ArrowUp")  # 90 Tage
        expect(lifetime).to_have_value("90")
        manager.keyboard.press("Tab")
        expect(manager.get_by_role("button", name="Neues Token erzeugen")).to_be_focused()
        manager.keyboard.press("Enter")
        expect(manager.locator("#kis-token-expires")).to_be_visible()
        renewed = KisToken.objects.filter(revoked_at__isnull=True).get()
        assert renewed.expires_at - renewed.created_at == timedelta(days=90)
        expect(manager.locator("#kis-token-expires")).to_have_text(
            timezone.localtime(renewed.expires_at).strftime("%d.%m.%Y %H:%M")
        )
        _fits(manager, "token-renewed")
        token_file.write_text(manager.locator("#kis-token-value").inner_text().strip() + "\n")
        assert _client(portal_web.url, token_file, "status", "DEMO-ARZTBRIEF-1").returncode == 0
        KisToken.objects.filter(pk=renewed.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
        expired = _client(portal_web.url, token_file, "status", "DEMO-ARZTBRIEF-1")
        assert expired.returncode == 1 and "token_expired" in expired.stderr
        manager.goto(portal_web.url + reverse("kis:client", args=[renewed.client_id]))
        expect(manager.locator(f"#kis-token-{renewed.pk}")).to_contain_text("abgelaufen")
    finally:
        manager_ctx.close()
        physician_ctx.close()
