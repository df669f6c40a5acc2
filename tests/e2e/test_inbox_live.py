"""login → inbox → open message → a mail sent with `python -m tisim send` appears live."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from playwright.sync_api import expect

from mailbox.models import KimAccount, Message
from mailbox.services.ingest import message_ingest
from tests.e2e.conftest import ROOT
from tests.e2e.pages import LoginPage
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
    held = []
    page.route("**/vendor/htmx/ws.min.js", lambda route: held.append(route))
    page.goto(portal_web.url + "/", wait_until="commit")
    for _ in range(1000):  # Playwright calls the route's handler while the test waits in one of its calls
        if held:
            break
        page.wait_for_timeout(10)
    assert len(held) == 1
    # Meanwhile the worker stores a letter; its event reaches no socket of this page.
    _letter(box, "window", "Im Fenster eingegangen")
    held.pop().continue_()
    inbox.wait_live()
    expect(inbox.row("Im Fenster eingegangen")).to_be_visible()
    expect(inbox.row("Im Fenster eingegangen")).to_have_count(1)
    expect(inbox.rows.first).to_contain_text("Im Fenster eingegangen")


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

    held = []
    page.route("**/vendor/htmx/ws.min.js", lambda route: held.append(route))
    page.goto(portal_web.url + "/", wait_until="commit")
    for _ in range(1000):  # Playwright calls the route's handler while the test waits in one of its calls
        if held:
            break
        page.wait_for_timeout(10)
    assert len(held) == 1
    expect(inbox.row("Alter Befund").locator(".lock")).to_have_count(0)
    message_claim(user=bert, message=letter)
    held.pop().continue_()
    inbox.wait_live()
    expect(inbox.row("Alter Befund").locator(".lock")).to_contain_text("Bert Kollege")
    expect(inbox.row("Alter Befund")).to_have_count(1)


def test_a_message_page_opens_one_socket_of_each_kind_and_declares_its_watch_once(portal_web, page):
    """htmx's ws extension opened a socket nested in another socket's element twice: every message page view cost
    the server two message sockets (two presences, two heartbeats); and each opening socket re-declared the
    inbox socket's watch."""
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
    assert kinds == ["inbox", "message"]
    assert page.evaluate("() => window.__watchFrames") == 1
