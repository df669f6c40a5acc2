"""The outbox's held mail and per-recipient retries, the owners' drafts of former members, the notice of an ended
session or access, the signing queue's selection limit and the managers' switch: on a phone (390 px) and a tablet
(820 px), held to axe's WCAG 2.0/2.1 A and AA rules, usable by keyboard alone, and in English too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from playwright.sync_api import Page, expect

from mailbox.models import KimAccount, Membership, OutgoingMessage, OutgoingRecipient
from mailbox.services.outbox import outgoing_hold
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import (
    PHONE,
    TABLET,
    assert_in_viewport,
    assert_no_horizontal_scroll,
    assert_not_clipped,
    assert_touch_target,
    screenshot,
    tab_to,
)
from tests.e2e.pages import LoginPage, SiteNav
from tests.e2e.pages_signing import SigningQueuePage
from tests.mailbox.factories import KimAccountFactory, MailboxFactory, MembershipFactory, UserFactory
from tests.signing.factories import SignerCardFactory, WorkplaceFactory, plain_letters

pytestmark = pytest.mark.e2e

KARDIO = "kardiologie@klinikum-demo.kim.telematik-test"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"
LABOR = "befunde.eingang@labor-wenzel-und-partner.kim.telematik-test"


def _context(browser, viewport: dict) -> Iterator[Page]:
    context = browser.new_context(locale="de-DE", viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(params=["phone", "tablet"])
def narrow(request, browser) -> Iterator[Page]:
    yield from _context(browser, PHONE if request.param == "phone" else TABLET)


def _fits(page: Page, where: str) -> None:
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"{where} at {page.viewport_size['width']} px")
    screenshot(page, f"{where}-{page.viewport_size['width']}")


def _unfold(page: Page) -> SiteNav:
    """Below 1,100 px the header's menu (navigation, language, log out) waits behind the menu button."""
    nav = SiteNav(page)
    if nav.toggle.is_visible():
        nav.open()
    return nav


def _english(page: Page) -> None:
    """Switch the language as a user does: the selector in the header (it submits itself)."""
    _unfold(page)
    with page.expect_navigation():
        page.locator("#lang-select").select_option("en")
    expect(page.locator("html")).to_have_attribute("lang", "en")


@pytest.fixture
def outbox(transactional_db) -> dict[str, OutgoingMessage]:
    """An owner's mailbox whose KIM account is switched off: one message held, one waiting for a recipient the CM
    refused for the moment, and a draft a former member left behind."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    gone = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station, role=Membership.Role.OWNER)
    account = KimAccountFactory(mailbox=box)
    now = timezone.now()

    held = OutgoingMessage.objects.create(
        mailbox=box, author=station, subject="Befund Herzkatheter", body="Text", to=[PRAXIS],
        state=OutgoingMessage.State.QUEUED, queued_at=now,
    )  # fmt: skip
    OutgoingRecipient.objects.create(outgoing=held, address=PRAXIS)
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)
    assert outgoing_hold(outgoing_id=held.pk)

    waiting = OutgoingMessage.objects.create(
        mailbox=box, author=station, subject="Entlassbrief Müller", body="Text", to=[PRAXIS, LABOR],
        state=OutgoingMessage.State.QUEUED, queued_at=now, next_try_at=now + timedelta(hours=1),
        message_id="<waiting@klinikum-demo>",
    )  # fmt: skip
    OutgoingRecipient.objects.create(outgoing=waiting, address=PRAXIS, state=OutgoingRecipient.State.SENT)
    OutgoingRecipient.objects.create(
        outgoing=waiting,
        address=LABOR,
        reason="Vom Clientmodul vorübergehend abgelehnt: 452 4.2.2 Postfach voll",
        status_code="452",
    )
    left = OutgoingMessage.objects.create(
        mailbox=box, author=gone, subject="Arztbrief Schmidt (unfertig)", body="Sehr geehrte", author_left_at=now
    )
    return {"held": held, "waiting": waiting, "left": left}


def test_held_mail_and_waiting_recipients_on_a_phone_and_a_tablet(portal_web, outbox, narrow):
    page = narrow
    held = outbox["held"]
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")

    page.goto(f"{portal_web.url}/postausgang/")
    row = page.locator(f"#out-{held.pk}")
    expect(row.locator(".outgoing-state")).to_have_text("zurückgehalten")
    expect(row.locator(".outgoing-error")).to_contain_text("Das KIM-Konto des Postfachs")
    assert_in_viewport(row.locator(".outgoing-error"))
    _fits(page, "outbox-held")

    row.get_by_role("link").click()
    expect(page.locator("#outgoing-state")).to_have_text("zurückgehalten")
    expect(page.locator("#outgoing-error")).to_contain_text("kann als Entwurf zurückgeholt werden")
    withdraw = page.get_by_role("button", name="Als Entwurf zurückholen")
    assert_touch_target(withdraw)
    assert_in_viewport(withdraw)
    _fits(page, "outgoing-held")

    # The waiting recipient says why and that it is tried again; the one the CM took says so.
    page.goto(f"{portal_web.url}/gesendet/{outbox['waiting'].pk}/")
    labor = page.locator(f"tr[data-address='{LABOR}']")
    expect(labor).to_contain_text("in Warteschlange")
    expect(labor).to_contain_text("vorübergehend abgelehnt: 452 4.2.2 Postfach voll")
    expect(page.locator(f"tr[data-address='{PRAXIS}']")).to_contain_text("versendet")
    assert_in_viewport(labor.locator(".reason"))
    assert_not_clipped(labor.locator("th"))
    _fits(page, "outgoing-waiting")

    # By keyboard alone: Tab reaches the action, its focus is visible, Enter takes the message back as a draft.
    page.goto(f"{portal_web.url}/gesendet/{held.pk}/")
    tab_to(page, page.get_by_role("button", name="Als Entwurf zurückholen"))
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/entwurf/{held.pk}/")
    expect(page.locator(".flash")).to_contain_text("wieder ein Entwurf")
    held.refresh_from_db()
    assert held.state == OutgoingMessage.State.DRAFT


def test_drafts_of_former_members_on_a_phone_and_a_tablet(portal_web, outbox, narrow):
    page = narrow
    left = outbox["left"]
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/entwuerfe/")
    section = page.get_by_role("list", name="Entwürfe ehemaliger Mitglieder")
    row = section.get_by_role("listitem")
    expect(row).to_contain_text("von ehemaligem Mitglied Paul Pfleger")
    # The buttons say which draft they act on (a list of several has many "Übernehmen").
    take_over = row.get_by_role("button", name="Entwurf „Arztbrief Schmidt (unfertig)“ übernehmen", exact=True)
    delete = row.get_by_role("button", name="Entwurf „Arztbrief Schmidt (unfertig)“ löschen", exact=True)
    expect(take_over).to_have_text("Übernehmen")
    expect(delete).to_have_text("Löschen")
    for action in (row.get_by_role("link"), take_over, delete):
        assert_touch_target(action)
        assert_in_viewport(action)
    _fits(page, "drafts-left")

    tab_to(page, take_over)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/entwurf/{left.pk}/")
    expect(page.locator(".flash")).to_contain_text("Der Entwurf ist jetzt Ihrer.")
    left.refresh_from_db()
    assert left.author.username == "station"


def test_the_outbox_pieces_are_translated(portal_web, outbox, page):
    held = outbox["held"]
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/gesendet/{held.pk}/")
    _english(page)
    expect(page.locator("#outgoing-state")).to_have_text("held back")
    expect(page.get_by_role("button", name="Take back as draft")).to_be_visible()
    page.goto(f"{portal_web.url}/gesendet/{outbox['waiting'].pk}/")
    expect(page.locator(f"tr[data-address='{LABOR}']")).to_contain_text("queued")
    page.goto(f"{portal_web.url}/entwuerfe/")
    section = page.get_by_role("list", name="Drafts of former members")
    expect(section).to_contain_text("by former member Paul Pfleger")
    subject = "Arztbrief Schmidt (unfertig)"
    expect(section.get_by_role("button", name=f"Take over draft “{subject}”")).to_have_text("Take over")
    expect(section.get_by_role("button", name=f"Delete draft “{subject}”")).to_have_text("Delete")
    assert_accessible(page, "drafts in English")


def _on_top(locator) -> bool:
    """Nothing lies over the element's middle (a tap there reaches it)."""
    return locator.evaluate(
        """el => { const r = el.getBoundingClientRect();
        const hit = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
        return hit !== null && el.contains(hit); }"""
    )


def _signed_in_inbox(portal_web, page: Page) -> None:
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123").wait_live()


def _log_out_elsewhere(portal_web, page: Page) -> None:
    other = page.context.new_page()
    other.goto(f"{portal_web.url}/")
    _unfold(other)
    other.locator(".logout-form button").click()
    other.wait_for_url(lambda url: "/login/" in url)
    other.close()


def test_the_session_ended_notice_on_a_phone_and_a_tablet(portal_web, narrow):
    page = narrow
    _signed_in_inbox(portal_web, page)
    _log_out_elsewhere(portal_web, page)

    notice = page.get_by_role("alert").filter(has_text="Ihre Sitzung wurde beendet")
    expect(notice).to_be_visible()
    login = page.get_by_role("link", name="Erneut anmelden")
    assert_touch_target(login)
    expect(page.get_by_role("button", name="Hinweis schließen")).to_be_hidden()  # nothing else works any more
    assert_in_viewport(login)
    assert_not_clipped(page.locator("#session-ended-text"))
    _fits(page, "session-ended")

    # Keyboard: the notice comes first in the page's order (after the skip link), as it comes first on the screen.
    page.locator(".skip-link").focus()
    tab_to(page, login, limit=1)
    page.keyboard.press("Enter")
    page.wait_for_url("**/login/?next=%2F")


def test_the_session_ended_notice_in_english(portal_web, page):
    _signed_in_inbox(portal_web, page)
    _english(page)
    page.wait_for_selector("body[data-live=open]")
    _log_out_elsewhere(portal_web, page)
    expect(page.get_by_role("alert").filter(has_text="Your session has ended")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in again")).to_be_visible()


@pytest.fixture
def phone(browser) -> Iterator[Page]:
    yield from _context(browser, PHONE)


def test_the_access_ended_notice_on_a_phone(portal_web, phone):
    """4403/4404 (shown by the same script as 4401): accessible, on screen, its link the next Tab stop, and it can be
    put away (the page's other parts still work; on a phone it covers the menu button)."""
    page = phone
    _signed_in_inbox(portal_web, page)
    # The socket's close as the server sends it for a message the user may no longer see.
    page.evaluate("""() => document.dispatchEvent(new CustomEvent("htmx:wsClose", {detail: {event: {code: 4404}}}))""")
    notice = page.get_by_role("alert").filter(has_text="Sie haben keinen Zugriff mehr auf diesen Inhalt")
    expect(notice).to_be_visible()
    home = page.get_by_role("link", name="Zur Startseite")
    assert_touch_target(home)
    assert_in_viewport(home)
    _fits(page, "access-ended")
    page.locator(".skip-link").focus()
    tab_to(page, home, limit=1)
    # It covers the menu button on a phone; the session goes on, so it can be put away by keyboard.
    assert not _on_top(page.locator("#nav-toggle"))
    close = page.get_by_role("button", name="Hinweis schließen")
    assert_touch_target(close)
    tab_to(page, close, limit=1)
    page.keyboard.press("Enter")
    expect(notice).to_have_count(0)
    expect(home).to_be_hidden()
    expect(page.locator("#main")).to_be_focused()
    assert _on_top(page.locator("#nav-toggle"))
    SiteNav(page).open()


@pytest.fixture
def portal_small_batches(transactional_db, tmp_path: Path) -> Iterator[PortalStack]:
    stack = PortalStack(tmp_path, with_worker=False, extra_env={"KIMPORTAL_SIGNING_MAX_BATCH": "2"})
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_the_selection_limit_is_announced_fits_and_is_translated(portal_small_batches, narrow):
    page = narrow
    ward = MailboxFactory(display_name="Station Kardiologie")
    station = UserFactory(username="station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Sommer")
    for user in (station, aerztin):
        MembershipFactory(mailbox=ward, user=user, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=aerztin)
    WorkplaceFactory()
    plain_letters(3, signer=aerztin, author=station, mailbox=ward)

    LoginPage(page, portal_small_batches.url).open().login("aerztin", "pw-secret-123")
    _unfold(page)
    signing = SigningQueuePage.open_from_nav(page)
    # A live region is announced when its text changes, not when a hidden one appears: it is there, empty.
    region = page.locator("#selection-limit")
    expect(region).to_be_attached()
    expect(region).to_have_attribute("role", "status")
    expect(region).to_have_text("")
    tab_to(page, signing.select_all)
    page.keyboard.press("Space")
    expect(signing.sign_button).to_be_disabled()
    expect(region).to_have_text("Höchstens 2 Dokumente je Signaturvorgang. Bitte wählen Sie weniger aus.")
    expect(region).to_be_visible()
    assert_in_viewport(region)
    assert_not_clipped(region)
    _fits(page, "selection-limit")

    _english(page)
    signing.select_all.check()
    expect(region).to_have_text("At most 2 documents per signing job. Please select fewer.")
    signing.select_all.uncheck()
    expect(region).to_have_text("")


def test_switching_a_mailbox_off_and_on_says_what_happens_to_held_mail(portal_web, narrow):
    page = narrow
    leitung = UserFactory(username="leitung")
    leitung.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    KimAccountFactory(mailbox=box)
    author = UserFactory(username="station")
    MembershipFactory(mailbox=box, user=author, role=Membership.Role.PROCESSOR)
    queued = OutgoingMessage.objects.create(
        mailbox=box, author=author, subject="Befund", to=[PRAXIS], state=OutgoingMessage.State.QUEUED,
        queued_at=timezone.now(), next_try_at=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    OutgoingRecipient.objects.create(outgoing=queued, address=PRAXIS)

    LoginPage(page, portal_web.url).open().login("leitung", "pw-secret-123")
    page.goto(f"{portal_web.url}/leitung/postfaecher/{box.pk}/")
    off = page.get_by_role("button", name="Postfach deaktivieren")
    expect(page.locator("#mailbox-active-help")).to_contain_text("zurückgehalten")
    expect(off).to_have_accessible_description(page.locator("#mailbox-active-help").inner_text())
    assert_touch_target(off)
    # It cannot be undone by a slip of the finger: the browser asks first; "Abbrechen" changes nothing.
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    tab_to(page, off)
    page.keyboard.press("Enter")
    for _ in range(500):  # Playwright calls the dialog's handler while the test waits in one of its calls
        if asked:
            break
        page.wait_for_timeout(10)
    assert asked == [
        "Postfach wirklich deaktivieren? Alle Mitglieder verlieren sofort den Zugriff; Abruf und Versand stoppen."
    ]
    box.refresh_from_db()
    assert box.is_active
    page.once("dialog", lambda dialog: dialog.accept())
    tab_to(page, off)
    page.keyboard.press("Enter")
    flash = page.get_by_role("status").filter(has_text="Postfach deaktiviert")
    expect(flash).to_contain_text("1 Nachricht im Postausgang wird zurückgehalten")
    assert_in_viewport(flash)
    assert_not_clipped(flash)
    _fits(page, "manage-mailbox-off")

    _english(page)
    on = page.get_by_role("button", name="Reactivate mailbox")
    tab_to(page, on)
    page.keyboard.press("Enter")
    flash = page.get_by_role("status").filter(has_text="Mailbox reactivated")
    expect(flash).to_contain_text("1 held-back message is being sent now.")
    assert_accessible(page, "manage mailbox in English")
