"""A keyboard user's focus survives the message page's socket redrawing the lock panel: on the same button when the
panel still has it (the redraw on connect, a colleague arriving), on the panel itself when the button is gone (one's
own claim or release, a colleague's claim, and a colleague's claim disabling the actions it was on): never back at
the top of the page, never on another button. Of several alike controls in a swapped list, the n-th stays the n-th."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.urls import reverse
from playwright.sync_api import Page, WebSocketRoute, expect

from directory.models import Contact
from mailbox.models import Message
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.pages import LoginPage, WorkPanel
from tests.e2e.pages_compose import ComposePage
from tests.mailbox.conftest import HOSPITAL
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory, ward_with_processors
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e

# Runs before the page's own scripts: how many lock panels the message page's socket has swapped in.
COUNT_PANELS = """
window.socketPanels = 0;
document.addEventListener("htmx:wsAfterMessage", (ev) => {
  if (String(ev.detail.message).includes('id="lock-panel"')) window.socketPanels += 1;
});
"""


def _socket_panels(page: Page) -> int:
    return page.evaluate("window.socketPanels")


def _wait_socket_panels(page: Page, count: int) -> None:
    page.wait_for_function(f"() => window.socketPanels >= {count}")


class HeldSocket:
    """The message page's socket with what the server sends held until `release()`: the page is on the screen and
    the test acts on it before the socket's first redraw arrives, as on a slow connection."""

    def __init__(self, page: Page) -> None:
        self.held: list[str | bytes] = []
        self.page_side: WebSocketRoute | None = None
        self.holding = True
        page.route_web_socket("**/ws/message/**", self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        self.page_side = ws
        server = ws.connect_to_server()
        server.on_message(self._from_server)  # what the page sends still goes to the server as it is

    def _from_server(self, message: str | bytes) -> None:
        if self.holding:
            self.held.append(message)
        else:
            assert self.page_side is not None
            self.page_side.send(message)

    def wait_for(self, page: Page, text: str) -> None:
        for _ in range(1000):  # Playwright calls the handler while the test waits in one of its calls
            if any(text in str(m) for m in self.held):
                return
            page.wait_for_timeout(10)
        raise AssertionError(f"the server sent nothing with {text!r}")

    def release(self) -> None:
        assert self.page_side is not None
        self.holding = False
        for message in self.held:
            self.page_side.send(message)
        self.held.clear()


@contextmanager
def _anna_and_bert_on_a_finished_letter(portal_web, browser, uidl: str) -> Iterator[tuple[str, Page, Page]]:
    """Two processors signed in, each in a browser of their own, and the address of a finished letter of their ward
    (not claimed by opening it: both pages show "Bearbeiten"). Anna's page counts the lock panels it receives."""
    box, _people = ward_with_processors(("anna", "Anna", "Alt"), ("bert", "Bert", "Bauer"))
    message = message_ingest(mailbox=box, uidl=uidl, raw=MAIL_WITH_PDF)
    Message.objects.filter(pk=message.pk).update(state=Message.State.DONE)
    ctx_a, ctx_b = browser.new_context(locale="de-DE"), browser.new_context(locale="de-DE")
    try:
        page_a, page_b = ctx_a.new_page(), ctx_b.new_page()
        for page in (page_a, page_b):
            page.set_default_timeout(10_000)
        page_a.add_init_script(COUNT_PANELS)
        LoginPage(page_a, portal_web.url).open().login("anna", "pw-secret-123")
        LoginPage(page_b, portal_web.url).open().login("bert", "pw-secret-123")
        yield f"{portal_web.url}/nachricht/{message.pk}/", page_a, page_b
    finally:
        ctx_a.close()
        ctx_b.close()


def test_the_focus_stays_on_the_lock_panel_through_its_redraws(portal_web, browser):
    with _anna_and_bert_on_a_finished_letter(portal_web, browser, "f1") as (url, page_a, page_b):
        # Anna's page is there; its socket's first panel (sent on every connect) is held back.
        socket = HeldSocket(page_a)
        page_a.goto(url)
        work = WorkPanel(page_a)
        claim = work.claim_button()
        socket.wait_for(page_a, 'id="lock-panel"')
        claim.focus()
        page_a.evaluate("window.focusedBefore = document.activeElement")

        # The redraw on connect replaces the button: the focus is on the new one, not on the page.
        socket.release()
        _wait_socket_panels(page_a, 1)
        expect(claim).to_be_focused()
        assert page_a.evaluate("document.activeElement !== window.focusedBefore"), "the panel was not redrawn"

        # Bert opens the letter too: Anna's panel is redrawn with him present, her focus stays on the button.
        page_b.goto(url)
        expect(work.lock.locator("#detail-presence")).to_contain_text("Bert Bauer")
        expect(claim).to_be_focused()

        # Enter still presses it. The answer's panel has "Freigeben" instead: the focus goes to the panel (which reads
        # as its new state), not to the button in the old one's place; the next Tab reaches that button.
        panels = _socket_panels(page_a)
        page_a.keyboard.press("Enter")
        expect(work.lock).to_contain_text("Sie bearbeiten diese Nachricht")
        expect(work.lock).to_be_focused()
        expect(work.lock).to_have_accessible_name(re.compile(r"^Sie bearbeiten diese Nachricht\. Für andere gesperrt"))
        _wait_socket_panels(page_a, panels + 1)  # the claim's redraw by the socket is through
        expect(work.lock).to_be_focused()
        page_a.keyboard.press("Tab")
        release = work.lock.get_by_role("button", name="Freigeben")
        expect(release).to_be_focused()

        # Space presses "Freigeben"; the panel says the letter is free and has the focus again.
        panels = _socket_panels(page_a)
        page_a.keyboard.press("Space")
        expect(work.lock).to_contain_text("Niemand bearbeitet diese Nachricht")
        expect(work.lock).to_be_focused()
        _wait_socket_panels(page_a, panels + 1)
        page_a.keyboard.press("Tab")
        expect(claim).to_be_focused()

        # Bert claims it: Anna's panel has no button any more; her focus is on the panel that says who holds it.
        page_b.locator("body").press("c")
        expect(WorkPanel(page_b).lock).to_contain_text("Sie bearbeiten diese Nachricht")
        expect(work.lock).to_contain_text("In Bearbeitung durch Bert Bauer")
        expect(work.lock).to_be_focused()
        assert_accessible(page_a, "message page with the focus on the redrawn lock panel")


def test_a_colleagues_claim_moves_the_focus_from_the_disabled_actions_to_the_lock_panel(portal_web, browser):
    # The actions are not redrawn when a colleague claims the letter, only disabled (their fieldset): a focus left on
    # a disabled button is announced as nothing, and Tab goes on from there.
    with _anna_and_bert_on_a_finished_letter(portal_web, browser, "f2") as (url, page_a, page_b):
        page_b.goto(url)
        work_b = WorkPanel(page_b)
        expect(work_b.lock).to_contain_text("Niemand bearbeitet diese Nachricht")

        # Anna's page is live (its first panel, sent on connect, is through); her focus is on "Übernehmen".
        page_a.goto(url)
        _wait_socket_panels(page_a, 1)
        work = WorkPanel(page_a)
        take = work.button("Übernehmen")
        take.focus()

        # Bert claims it: Anna's actions are disabled, her focus is on the panel that says who holds the letter.
        page_b.locator("body").press("c")
        expect(work_b.lock).to_contain_text("Sie bearbeiten diese Nachricht")
        expect(work.lock).to_contain_text("In Bearbeitung durch Bert Bauer")
        expect(take).to_be_disabled()
        expect(work.lock).to_be_focused()
        expect(work.lock).to_have_accessible_name(re.compile(r"^In Bearbeitung durch Bert Bauer seit"))
        assert_accessible(page_a, "message page with the actions disabled by a colleague's claim")

        # Bert releases it: the actions are enabled again and the focus stays where it is (on the redrawn panel).
        panels = _socket_panels(page_a)
        work_b.lock.get_by_role("button", name="Freigeben").click()
        expect(work.lock).to_contain_text("Niemand bearbeitet diese Nachricht")
        expect(take).to_be_enabled()
        _wait_socket_panels(page_a, panels + 1)
        expect(work.lock).to_be_focused()
        page_a.keyboard.press("Tab")
        expect(work.claim_button()).to_be_focused()


def test_the_nth_of_alike_controls_stays_the_nth_when_their_list_is_swapped_by_its_content(portal_web, page):
    # htmx's default swap keeps the container and replaces its children. No page of the portal swaps a list of alike
    # controls so today; the recipient picker's favorites have the shape such a swap meets (id-less items, one
    # "Auswählen" each, alike but for their place, in a form that stays), so their list is swapped here, by htmx with
    # the server's own answer. The focus went to no button at all (the form around the list was looked for only after
    # the swap, on the removed button), and with that form found, to the first: the place was counted in the removed
    # item and applied across the list.
    station = UserFactory(username="station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    for name in ("Praxis Adler", "Praxis Berg", "Praxis Christ"):
        address = f"{name.split()[1].lower()}@praxis-test.kim.telematik-test"
        Contact.objects.create(kim_address=address, display_name=name, kim_version="1.5", is_favorite=True)
    draft = outgoing_draft_save(user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage"))
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/entwurf/{draft.pk}/")
    ComposePage(page)

    # The picker shows the favorites when its search box gets the focus; the focus is on the second one's button.
    page.locator("#to-picker-q").focus()
    favorites = page.locator("#to-picker-results [data-hit]")
    expect(favorites).to_have_text([re.compile("Praxis Adler"), re.compile("Praxis Berg"), re.compile("Praxis Christ")])
    favorites.nth(1).get_by_role("button", name="Auswählen").focus()
    page.evaluate("document.activeElement.closest('[data-hit]').dataset.old = '1'")

    page.evaluate(
        """(url) => htmx.ajax("GET", url, {
            target: "#to-picker-results ul.vzd-list", swap: "innerHTML", select: "ul.vzd-list > li",
        })""",
        f"{reverse('directory:picker')}?field=to",
    )
    expect(page.locator("[data-hit][data-old]")).to_have_count(0)
    expect(favorites).to_have_count(3)
    # The second one's button again, not the first one's: the place is counted in the list on both sides.
    expect(favorites.nth(1).get_by_role("button", name="Auswählen")).to_be_focused()
    assert_accessible(page, "compose page with the focus kept in the swapped favorites")
