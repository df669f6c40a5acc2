"""login → inbox → open message → a mail sent with `python -m tisim send` appears live."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from mailbox.models import KimAccount, Message
from mailbox.services.ingest import message_ingest
from tests.e2e.conftest import ROOT
from tests.e2e.pages import LoginPage, load_with_live_script_held
from tests.mailbox.factories import KimAccountFactory, MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tisim.cm import CMSimulator

pytestmark = pytest.mark.e2e

KARDIO = "kardiologie@klinikum-demo.kim.telematik-test"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"


@pytest.fixture
def cm(tmp_path):
    sim = CMSimulator(tmp_path / "cm", accounts={KARDIO: "demo", PRAXIS: "demo"}, tls=True)
    sim.start()
    yield sim
    sim.stop()


def wait_until(predicate, timeout: float, portal) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail("condition not reached; portal logs:\n" + portal.logs())


def tisim_send(cm, subject: str, *extra: str) -> None:
    cmd = [sys.executable, "-m", "tisim", "send", "--data-dir", str(cm.data_dir), "--from", PRAXIS, "--to", KARDIO]
    subprocess.run([*cmd, "--subject", subject, *extra], cwd=ROOT, check=True, capture_output=True, timeout=30)


def test_new_mail_appears_live_without_reload(cm, portal, page, tmp_path):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(
        mailbox__address=KARDIO,
        mailbox__display_name="Station Kardiologie",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        poll_interval_seconds=1,
        password="demo",
    )
    MembershipFactory(mailbox=account.mailbox, user=station)
    pdf = tmp_path / "Entlassbrief Müller.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    tisim_send(cm, "Arztbrief Herr Müller", "--dienstkennung", "Arztbrief;VHitG-Versand;V1.2", "--attach", str(pdf))

    # Beat → worker → POP3 → ingest; wait for it to be stored before the first page load.
    wait_until(lambda: Message.objects.filter(subject="Arztbrief Herr Müller").exists(), 30, portal)

    inbox = LoginPage(page, portal.url).open().login("station", "pw-secret-123")
    expect(inbox.row("Arztbrief Herr Müller")).to_be_visible()
    expect(inbox.row("Arztbrief Herr Müller").locator(".badge")).to_have_text("eArztbrief")

    message = inbox.open_message("Arztbrief Herr Müller")
    expect(message.security).to_contain_text("Sicher empfangen")
    expect(message.attachment("Entlassbrief Müller.pdf")).to_be_visible()

    inbox = message.back_to_mailbox()
    inbox.wait_live()
    page.evaluate("window.__noReload = true")
    tisim_send(cm, "Neuer Befund live")
    expect(inbox.row("Neuer Befund live")).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__noReload === true"), "the page must not have reloaded"
    expect(inbox.row("Neuer Befund live")).to_have_class("msg-row unread state-new")


def _letter(box, uidl: str, subject: str) -> Message:
    raw = MAIL_WITH_PDF.replace(b"=?utf-8?q?Entlassbrief_M=C3=BCller?=", subject.encode("ascii"))
    return message_ingest(mailbox=box, uidl=uidl, raw=raw)


def test_a_letter_stored_while_the_inbox_still_loads_appears_once_the_page_listens(portal_web, page):
    """The worker stores a letter while the inbox page loads: its event reaches no socket of that page (none
    listens yet). Once the socket opens, it sends the rows of what came after the newest the page knew."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    _letter(box, "known", "Alter Befund")
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    expect(inbox.row("Alter Befund")).to_be_visible()

    # The page is rendered, and its live script waits: its socket cannot open yet.
    held = load_with_live_script_held(page, portal_web.url + "/")
    # Meanwhile the worker stores a letter; its event reaches no socket of this page.
    _letter(box, "window", "Im Fenster eingegangen")
    held.continue_()
    inbox.wait_live()
    expect(inbox.row("Im Fenster eingegangen")).to_be_visible()
    expect(inbox.row("Im Fenster eingegangen")).to_have_count(1)
    expect(inbox.rows.first).to_contain_text("Im Fenster eingegangen")


@pytest.mark.usefixtures("kept_logs")
def test_a_letter_stored_while_a_filter_swaps_the_list_appears_in_the_list_swapped_in(portal_web, page):
    """The user picks another view: the server reads the new list, a letter is stored before that list reaches the
    page, and its live row is prepended to the list the swap then replaces. The new list's watch frame (its own
    data-live-at) makes the socket send the row again, once."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    _letter(box, "known", "Alter Befund")
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    inbox.wait_live()
    expect(inbox.row("Alter Befund")).to_be_visible()

    held: list = []
    page.route(lambda url: "view=open" in url, lambda route: held.append(route), times=1)
    page.get_by_role("radio", name="Offen").check()
    for _ in range(1000):  # Playwright calls the route's handler while the test waits in one of its calls
        if held:
            break
        page.wait_for_timeout(10)
    response = held[0].fetch()  # the server has read the new list
    _letter(box, "swap", "Beim Filtern eingegangen")
    expect(inbox.row("Beim Filtern eingegangen")).to_be_visible()  # in the list about to be replaced
    held[0].fulfill(response=response)
    expect(page).to_have_url(re.compile(r"view=open"))
    expect(inbox.row("Beim Filtern eingegangen")).to_be_visible()
    expect(inbox.row("Beim Filtern eingegangen")).to_have_count(1)
    expect(inbox.rows.first).to_contain_text("Beim Filtern eingegangen")


def test_a_new_row_the_list_shows_already_is_not_added_twice(portal_web, page):
    """A row sent again for a swapped-in list may have reached that list before its watch frame did (the socket's
    frame crossed it): the page keeps one row."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    _letter(box, "known", "Alter Befund")
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    inbox.wait_live()
    expect(inbox.row("Alter Befund")).to_have_count(1)
    # The socket's new-row frame (mailbox/partials/_live_new_message.html) for a row the list shows.
    page.evaluate(
        """(box) => {
        const row = document.querySelector(".msg-row[id^='msg-']");
        const frame = `<div hx-swap-oob="afterbegin:[data-live-mailboxes~='mb-${box}']">${row.outerHTML}</div>`;
        htmx.swap(document.body, frame, { swapStyle: "none" });
      }""",
        box.pk,
    )
    expect(inbox.row("Alter Befund")).to_have_count(1)


@pytest.mark.usefixtures("kept_logs")
def test_a_colleague_claiming_a_letter_while_the_inbox_still_loads_shows_once_the_page_listens(portal_web, page):
    """A colleague takes a letter the list shows while the page loads: the claim's event reached no socket of the page.
    Once it listens, the socket replays what its rows went through since the list was read (data-live-at)."""
    from mailbox.services.claims import message_claim

    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    bert = UserFactory(username="bert", first_name="Bert", last_name="Kollege")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    for user in (station, bert):
        MembershipFactory(mailbox=box, user=user)
    letter = _letter(box, "known", "Alter Befund")
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    expect(inbox.row("Alter Befund")).to_be_visible()

    held = load_with_live_script_held(page, portal_web.url + "/")
    expect(inbox.row("Alter Befund").locator(".lock")).to_have_count(0)
    message_claim(user=bert, message=letter)
    held.continue_()
    inbox.wait_live()
    expect(inbox.row("Alter Befund").locator(".lock")).to_contain_text("Bert Kollege")
    expect(inbox.row("Alter Befund")).to_have_count(1)


def test_a_page_restored_from_the_back_forward_cache_reads_its_list_again(portal_web, page):
    """Back to the inbox with the browser's back button: a page kept in the back-forward cache shows the list as it
    was when the user left, however long ago (the socket's replay reaches back about 50 s). It is read again."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    letter = _letter(box, "known", "Alter Befund")
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    inbox.wait_live()
    expect(inbox.row("Alter Befund")).to_be_visible()
    # What changed while the page was away, told to no socket of it.
    Message.objects.filter(pk=letter.pk).update(subject="Befund ergänzt")
    page.evaluate("""() => window.dispatchEvent(new PageTransitionEvent("pageshow", { persisted: true }))""")
    expect(inbox.row("Befund ergänzt")).to_be_visible()
    expect(inbox.rows).to_have_count(1)


def test_a_message_page_opens_one_socket_and_declares_its_watch_once(portal_web, page):
    """htmx's ws extension opened a socket nested in another socket's element twice: every message page view cost
    the server two message sockets (two presences, two heartbeats); and each opening socket re-declared the
    inbox socket's watch. Now the message's socket is the page-wide one too: one socket per page view."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    letter = _letter(box, "brief", "Befund")
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    # Every socket the page creates, and every watch frame it sends.
    page.add_init_script(
        """(() => {
        const Native = window.WebSocket;
        window.__sockets = [];
        window.__watchFrames = 0;
        window.WebSocket = function (url, protocols) {
          const socket = new Native(url, protocols);
          window.__sockets.push(socket);
          return socket;
        };
        window.WebSocket.prototype = Native.prototype;
        Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
        const send = Native.prototype.send;
        Native.prototype.send = function (data) {
          if (String(data).includes('"watch"')) window.__watchFrames += 1;
          return send.call(this, data);
        };
      })()"""
    )
    page.goto(f"{portal_web.url}/nachricht/{letter.pk}/")
    page.wait_for_function("() => window.__sockets.length > 0 && window.__sockets.every((s) => s.readyState === 1)")
    kinds = page.evaluate("() => window.__sockets.map((s) => new URL(s.url).pathname.split('/')[2]).sort()")
    assert kinds == ["message"]
    assert page.evaluate("() => window.__watchFrames") == 1


# Every socket the page creates (as above), counted per page load.
_COUNT_SOCKETS = """(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function (url, protocols) {
    const socket = new Native(url, protocols);
    window.__sockets.push(socket);
    return socket;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})()"""
SESSION_ENDED = "Ihre Sitzung wurde beendet (abgemeldet oder abgelaufen). Diese Seite wird nicht mehr aktualisiert."


def _signed_in_inbox(portal_web, page):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    _letter(box, "brief", "Befund")
    page.add_init_script(_COUNT_SOCKETS)
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    inbox.wait_live()
    # Reconnect at once instead of htmx's backoff: a reconnect loop shows within the test's time.
    page.evaluate("htmx.config.wsReconnectDelay = () => 50")
    return station, inbox


def test_a_tab_logged_out_in_another_tab_says_so_and_offers_to_sign_in_again(portal_web, page, browser_context):
    _station, _inbox = _signed_in_inbox(portal_web, page)
    other = browser_context.new_page()
    other.goto(f"{portal_web.url}/")
    other.get_by_role("button", name="Abmelden").click()
    other.wait_for_url(lambda url: "/login/" in url)

    expect(page.get_by_role("alert").filter(has_text=SESSION_ENDED)).to_be_visible()
    login = page.get_by_role("link", name="Erneut anmelden")
    expect(login).to_have_attribute("href", "/login/?next=%2F")
    expect(page.locator(".live-indicator")).to_be_hidden()  # not "reconnecting": nothing will
    assert page.evaluate("window.__sockets.length") == 1
    login.click()
    expect(page.get_by_label("Benutzername")).to_be_visible()


def test_a_tab_whose_session_ended_unheard_stops_reconnecting_once_its_socket_drops(portal_web, page):
    """The session ended without the tab hearing it (it expired; the server restarted in between): when its socket
    drops and htmx reconnects, the server refuses the socket. Refused during the handshake, the browser saw 1006 and
    htmx reconnected for as long as the tab stayed open; accepted and closed with 4401, it stops and says why."""
    from django.contrib.sessions.models import Session

    from mailbox.events import send_to_group, user_group

    station, _inbox = _signed_in_inbox(portal_web, page)
    assert page.evaluate("window.__sockets.length") == 1
    Session.objects.all().delete()
    # The server closes the socket as when its Redis connection was made again (1012): htmx reconnects.
    send_to_group(user_group(station.pk), {"type": "layer.lost"})

    expect(page.get_by_role("alert").filter(has_text=SESSION_ENDED)).to_be_visible()
    # Thirty reconnect delays: a loop would have opened more sockets by now.
    page.wait_for_timeout(1500)
    assert page.evaluate("window.__sockets.length") == 2
    expect(page.locator("#message-list")).to_contain_text("Befund")  # the list did not become the login page


def test_a_dropped_socket_of_a_valid_session_reconnects_without_the_notice(portal_web, page):
    from mailbox.events import send_to_group, user_group

    station, _inbox = _signed_in_inbox(portal_web, page)
    send_to_group(user_group(station.pk), {"type": "layer.lost"})
    page.wait_for_function("() => window.__sockets.length === 2 && window.__sockets[1].readyState === 1")
    expect(page.locator("body[data-live=open]")).to_be_attached()
    expect(page.locator("#session-ended-text")).to_be_empty()
    expect(page.get_by_role("link", name="Erneut anmelden")).to_be_hidden()


ACCESS_ENDED = (
    "Sie haben keinen Zugriff mehr auf diesen Inhalt (z. B. aus dem Postfach entfernt oder gelöscht). "
    "Diese Seite wird nicht mehr aktualisiert."
)


def test_an_ex_members_open_message_page_says_why_it_stopped_and_does_not_reconnect(portal_web, page):
    """Removed from the mailbox while reading a letter (membership gone without the page hearing it, then the socket
    dropped): the message socket is refused on reconnect. Refused during the handshake, the browser saw 1006 and htmx
    reconnected for as long as the tab stayed open; accepted and closed with 4404, it stops and says why."""
    from mailbox.events import send_to_group, user_group
    from mailbox.models import Membership

    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    box = MailboxFactory(address=KARDIO, display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=station)
    letter = _letter(box, "brief", "Befund")
    page.add_init_script(_COUNT_SOCKETS)
    # Frames per socket: the message socket's first frame (the lock panel drawn on opening, which checks access)
    # has come before the membership goes; so the socket learns of it only on its reconnect.
    page.add_init_script(
        """(() => {
        const send = window.WebSocket;
        window.WebSocket = function (url, protocols) {
          const socket = send(url, protocols);
          socket.__frames = 0;
          socket.addEventListener("message", () => { socket.__frames += 1; });
          return socket;
        };
        window.WebSocket.prototype = send.prototype;
        Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
      })()"""
    )
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/nachricht/{letter.pk}/")
    page.wait_for_function(
        """() => window.__sockets.length === 1 && window.__sockets.every((s) => s.readyState === 1)
        && window.__sockets.some((s) => s.url.includes("/ws/message/") && s.__frames > 0)"""
    )
    page.evaluate("htmx.config.wsReconnectDelay = () => 50")
    Membership.objects.filter(user=station).delete()
    send_to_group(user_group(station.pk), {"type": "layer.lost"})

    expect(page.get_by_role("alert").filter(has_text=ACCESS_ENDED)).to_be_visible()
    expect(page.get_by_role("link", name="Zur Startseite")).to_be_visible()
    # Thirty reconnect delays: a loop would have opened more sockets by now (one new socket each). The page's one
    # socket reconnected once, and was refused.
    page.wait_for_timeout(1500)
    assert page.evaluate("window.__sockets.length") == 2
    expect(page.get_by_role("link", name="Erneut anmelden")).to_be_hidden()
