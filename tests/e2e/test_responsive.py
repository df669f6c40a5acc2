"""Ward rounds with a tablet (820 px, portrait) or a phone (390 px): the inbox, a message and the login page are
measured in the browser; desktop (1280 px) keeps its three-column layout. Every page is held to axe's WCAG 2.0/2.1
A and AA rules, and the page's real Content-Security-Policy stays on (the menu button needs no inline script)."""

from __future__ import annotations

from collections.abc import Iterator
from email.header import Header

import pytest
from playwright.sync_api import Page, expect

from mailbox.models import Message
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import (
    DESKTOP,
    PHONE,
    TABLET,
    assert_no_horizontal_scroll,
    assert_not_clipped,
    box,
    line_height,
    screenshot,
)
from tests.e2e.pages import InboxPage, LoginPage, SiteNav
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e

SENDER = (
    "Gemeinschaftspraxis Dr. Mustermann-Schulze <anmeldung.kardiologie@praxis-mustermann-schulze.kim.telematik-test>"
)
SUBJECT = "Entlassbrief Müller, Hans – Kardiologie"
BODY = (
    "Sehr geehrte Kolleginnen und Kollegen,\r\n\r\n"
    "wir berichten über den stationären Aufenthalt von Herrn Hans Müller vom 02.11. bis 09.11. "
    "Diagnosen: Vorhofflimmern, arterielle Hypertonie. Die Medikation ist im beigefügten Brief aufgeführt.\r\n\r\n"
    "Mit freundlichen Grüßen\r\nDr. med. Mustermann-Schulze"
)


def _ingest(mailbox, uidl: str, *, sender: str, subject: str, body: str = "Anbei der Brief.") -> Message:
    raw = (
        MAIL_WITH_PDF.replace(b"Praxis <praxis@praxis-test.kim.telematik-test>", sender.encode())
        .replace(b"=?utf-8?q?Entlassbrief_M=C3=BCller?=", Header(subject, "utf-8").encode(linesep="\r\n").encode())
        .replace(b"Anbei der Brief.", body.encode())
    )
    return message_ingest(mailbox=mailbox, uidl=uidl, raw=raw)


@pytest.fixture
def ward(transactional_db) -> Message:
    """Two mailboxes with mail in every state the list shows; returns the long discharge letter."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Arzt")
    cardio = MailboxFactory(display_name="Station Kardiologie")
    emergency = MailboxFactory(display_name="Zentrale Notaufnahme")
    for mailbox in (cardio, emergency):
        MembershipFactory(mailbox=mailbox, user=station)
        MembershipFactory(mailbox=mailbox, user=aerztin)
    done = _ingest(cardio, "w1", sender="Praxis Dr. Lange <lange@praxis-lange.kim.telematik-test>", subject="Rückfrage")
    taken = _ingest(emergency, "w2", sender="Labor Dr. Wenzel <befunde@labor.kim.telematik-test>", subject="Kalium")
    _ingest(emergency, "w3", sender="Rettungsdienst <leitstelle@rd.kim.telematik-test>", subject="Einsatzprotokoll")
    letter = _ingest(cardio, "w4", sender=SENDER, subject=SUBJECT, body=BODY)
    Message.objects.filter(pk=done.pk).update(state=Message.State.DONE)
    Message.objects.filter(pk=taken.pk).update(state=Message.State.IN_PROGRESS, assignee=aerztin)
    return letter


@pytest.fixture
def csp_violations() -> list[str]:
    return []


def _open(browser, viewport: dict, csp_violations: list[str], **options) -> Iterator[Page]:
    context = browser.new_context(locale="de-DE", viewport=viewport, **options)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def tablet(browser, csp_violations) -> Iterator[Page]:
    yield from _open(browser, TABLET, csp_violations)


@pytest.fixture
def phone(browser, csp_violations) -> Iterator[Page]:
    yield from _open(browser, PHONE, csp_violations)


@pytest.fixture
def desktop(browser, csp_violations) -> Iterator[Page]:
    yield from _open(browser, DESKTOP, csp_violations)


@pytest.fixture(params=["tablet", "phone"])
def narrow(request) -> Page:
    return request.getfixturevalue(request.param)


def test_inbox_message_and_login_on_tablet_and_phone(portal_web, ward, narrow, csp_violations):
    page = narrow
    width = page.viewport_size["width"]
    usable = width - 2 * 24  # what is left after the page's side padding (at most 24 px a side)

    login = LoginPage(page, portal_web.url).open()
    card = box(page.locator(".login-card"))
    assert card.x >= 0 and card.right <= width
    assert_no_horizontal_scroll(page)
    assert page.evaluate("typeof window.axe") == "undefined"  # the product never ships axe to its pages
    assert_accessible(page, f"login at {width} px")
    screenshot(page, f"login-{width}")

    inbox = login.login("station", "pw-secret-123")
    expect(inbox.rows).to_have_count(4)
    inbox.wait_live()
    nav = SiteNav(page)
    # Folded: the menu button shows; the navigation and the mailbox list wait behind it. Notifications stay in view.
    expect(nav.toggle).to_be_visible()
    expect(nav.toggle).to_have_attribute("aria-expanded", "false")
    expect(nav.link("Adressbuch")).to_be_hidden()
    expect(nav.sidebar).to_be_hidden()
    expect(page.locator("#notification-badge")).to_be_visible()
    assert_no_horizontal_scroll(page)

    # A row: sender and date share the first line, the subject has the whole second line; the date is not cut.
    row = inbox.row(SUBJECT)
    r = box(row)
    sender, subject, date = (box(row.locator(f".col-{c}")) for c in ("from", "subject", "date"))
    assert r.right <= width
    assert date.y < sender.bottom and sender.y < date.bottom, "sender and date are not on one line"
    assert date.x >= sender.right and date.right <= r.right
    assert subject.y >= max(sender.bottom, date.bottom) - 1, "the subject is not below sender and date"
    assert subject.width >= 0.8 * usable, f"subject only {subject.width} px wide"
    assert sender.width >= 0.4 * usable, f"sender only {sender.width} px wide"
    assert_not_clipped(row.locator(".col-date"))
    assert_accessible(page, f"inbox at {width} px")
    screenshot(page, f"inbox-{width}")

    # The menu button opens both the navigation and the mailbox list, and closes them again.
    nav.open()
    expect(nav.link("Adressbuch")).to_be_visible()
    expect(nav.mailbox_link("Zentrale Notaufnahme")).to_be_visible()
    assert box(nav.sidebar).width >= 0.9 * width
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"inbox with the menu open at {width} px")
    screenshot(page, f"inbox-menu-open-{width}")
    nav.close()
    expect(nav.link("Adressbuch")).to_be_hidden()
    expect(nav.sidebar).to_be_hidden()

    # By keyboard: Enter opens, the next Tab lands in the menu, Escape closes and returns to the button, Space toggles.
    nav.toggle.focus()
    page.keyboard.press("Enter")
    expect(nav.toggle).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Tab")
    expect(nav.link("Posteingang")).to_be_focused()
    page.keyboard.press("Escape")
    expect(nav.toggle).to_have_attribute("aria-expanded", "false")
    expect(nav.toggle).to_be_focused()
    expect(nav.link("Posteingang")).to_be_hidden()
    page.keyboard.press("Space")
    expect(nav.mailbox_link("Zentrale Notaufnahme")).to_be_visible()
    nav.mailbox_link("Zentrale Notaufnahme").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Zentrale Notaufnahme")
    expect(inbox.rows).to_have_count(2)
    expect(nav.sidebar).to_be_hidden()  # a new page starts folded

    # The message: the mail gets (nearly) the full width, the work panel goes under it, addresses break as words.
    page.goto(f"{portal_web.url}/")
    message = InboxPage(page).open_message(SUBJECT)
    expect(message.subject).to_be_visible()
    pane, body, work = (box(page.locator(s)) for s in (".message-pane", ".message-pane .body", ".work-pane"))
    assert body.width >= 0.9 * usable, f"the mail is {body.width} px wide in a {width} px window"
    assert work.y >= pane.bottom - 1, "the work panel is not under the message"
    assert work.width >= 0.9 * width
    sender_dd = page.locator(".headers dt:text-is('Von') + dd")
    assert box(sender_dd).width >= 0.6 * width
    assert box(sender_dd).height <= 3.5 * line_height(sender_dd), "the sender's address breaks letter by letter"
    to_dd = page.locator(".headers dt:text-is('An') + dd")
    assert box(to_dd).height < 2 * line_height(to_dd), "a short address does not fit on one line"
    expect(page.locator("#work").get_by_role("button", name="Erledigt")).to_be_visible()
    assert_no_horizontal_scroll(page)
    assert_accessible(page, f"message at {width} px")
    screenshot(page, f"message-{width}")
    assert csp_violations == []


def test_desktop_keeps_sidebar_list_and_work_panel_side_by_side(portal_web, ward, desktop, csp_violations):
    page = desktop
    login = LoginPage(page, portal_web.url).open()
    assert_accessible(page, "login at desktop width")
    screenshot(page, "login-1280")
    inbox = login.login("station", "pw-secret-123")
    expect(inbox.rows).to_have_count(4)
    nav = SiteNav(page)
    expect(nav.toggle).to_be_hidden()
    # One header row as before: brand, navigation, then language, notifications, help, user, logout on the right.
    header = box(page.locator(".topbar"))
    assert header.height < 60
    xs = [
        box(loc).x
        for loc in (
            page.locator(".brand"),
            nav.link("Adressbuch"),
            page.locator("#lang-select"),
            page.locator("#notification-badge"),
            page.locator("#shortcut-help-button"),
            page.get_by_role("button", name="Abmelden"),
        )
    ]
    assert xs == sorted(xs), f"header order changed: {xs}"
    # The mailbox list stays a 260 px column on the left; rows stay one line each.
    sidebar = box(nav.sidebar)
    assert sidebar.x == 0 and 255 <= sidebar.width <= 265
    row = inbox.row(SUBJECT)
    sender, subject, date = (box(row.locator(f".col-{c}")) for c in ("from", "subject", "date"))
    assert sender.x >= sidebar.right
    assert abs(sender.y - subject.y) < 4 and subject.right <= date.x
    assert date.y < sender.bottom and sender.y < date.bottom
    assert_no_horizontal_scroll(page)
    assert_accessible(page, "inbox at desktop width")
    screenshot(page, "inbox-1280")

    message = inbox.open_message(SUBJECT)
    expect(message.subject).to_be_visible()
    pane, work = box(page.locator(".message-pane")), box(page.locator(".work-pane"))
    assert work.x >= pane.right - 1 and 335 <= work.width <= 345
    assert abs(work.y - pane.y) < 1
    assert_no_horizontal_scroll(page)
    assert_accessible(page, "message at desktop width")
    screenshot(page, "message-1280")
    assert csp_violations == []


def test_without_javascript_the_narrow_navigation_stays_unfolded(portal_web, ward, browser, csp_violations):
    for page in _open(browser, TABLET, csp_violations, java_script_enabled=False):
        LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
        nav = SiteNav(page)
        expect(nav.link("Adressbuch")).to_be_visible()
        expect(nav.mailbox_link("Zentrale Notaufnahme")).to_be_visible()
        expect(nav.toggle).to_be_hidden()  # a button that could not work is not offered
        assert_no_horizontal_scroll(page)


@pytest.mark.parametrize("width", [1100, 1115, 1131])
def test_the_full_top_bar_of_a_superuser_fits_just_above_the_fold_width(
    portal_web, ward, browser, csp_violations, width
):
    """Every navigation entry at once (KIM-Konten, Leitung, Betrieb, Verwaltung) at the narrowest unfolded widths:
    the top bar wraps onto a second line instead of pushing the page sideways."""
    UserFactory(
        username="admin", first_name="Ingrid", last_name="Informationstechnik", is_staff=True, is_superuser=True
    )
    for page in _open(browser, {"width": width, "height": 900}, csp_violations):
        LoginPage(page, portal_web.url).open().login("admin", "pw-secret-123")
        nav = SiteNav(page)
        expect(nav.toggle).to_be_hidden()
        for name in ("Posteingang", "Adressbuch", "KIM-Konten", "Leitung", "Betrieb", "Verwaltung"):
            link = nav.link(name)
            assert box(link).right <= width, f"{name} reaches beyond the window"
        for locator in (
            page.locator("#lang-select"),
            page.locator("#notification-badge"),
            page.locator(".whoami"),
            page.get_by_role("button", name="Abmelden"),
        ):
            assert box(locator).right <= width
            assert_not_clipped(locator)
        header = box(page.locator(".topbar"))
        assert header.width <= width and header.height < 110  # two rows at most
        # What wraps stays where it was: "Abmelden" at the right end.
        assert box(page.get_by_role("button", name="Abmelden")).right >= width - 30
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"inbox of a superuser at {width} px")
        screenshot(page, f"topbar-superuser-{width}")
    assert csp_violations == []
