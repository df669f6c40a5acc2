"""Browser test of the send path: compose with a directory search and a typed address, an attachment, the draft
surviving a reload, send, and the delivery timeline turning "zugestellt" without a reload when the Fachdienst's
DSN comes back (simulated CM with its Fachdienst, a small slapd as the VZD, gunicorn + Celery worker/beat)."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.policy import default

import pytest
from playwright.sync_api import expect

from mailbox.models import KimAccount, OutgoingMessage
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, TABLET, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage
from tests.e2e.pages_compose import ComposePage
from tests.mailbox.conftest import HOSPITAL, PASSWORD, PRAXIS
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tests.mailbox.send.conftest import cm, send_vzd_server  # noqa: F401  (fixtures: simulated CM, slapd)

pytestmark = [pytest.mark.e2e, pytest.mark.slapd]


@pytest.fixture
def stack(transactional_db, tmp_path, send_vzd_server) -> Iterator[PortalStack]:  # noqa: F811
    env = {"KIMPORTAL_VZD_URL": send_vzd_server.url, "KIMPORTAL_VZD_CA_FILE": "", "KIMPORTAL_VZD_TLS_PIN": ""}
    portal = PortalStack(tmp_path, with_worker=True, extra_env=env)
    try:
        portal.start()
        yield portal
    finally:
        portal.stop()


def test_compose_send_and_see_it_delivered_live(cm, stack, page, tmp_path):  # noqa: F811
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(
        mailbox__address=HOSPITAL,
        mailbox__display_name="Station Kardiologie",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        poll_interval_seconds=1,
        password=PASSWORD,
    )
    MembershipFactory(mailbox=account.mailbox, user=station)
    csp: list[str] = []
    page.on("console", lambda msg: csp.append(msg.text) if "Content Security Policy" in msg.text else None)

    LoginPage(page, stack.url).open().login("station", "pw-secret-123")
    compose = ComposePage.start(page, stack.url, "Station Kardiologie")
    assert_accessible(page, "compose")

    # A recipient from the directory search …
    hits = compose.search_recipient("Praxis Test")
    hit = hits.filter(has_text=PRAXIS)
    expect(hit).to_have_count(1)
    compose.pick(hit)
    expect(compose.chips("to").filter(has_text=PRAXIS)).to_have_count(1)
    # … and a typed one that is no KIM address: a German error in place, nothing added.
    compose.type_address("jemand@gmail.com")
    error = compose.chips("to").filter(has_text="keine KIM-Adresse")
    expect(error).to_have_count(1)
    error.get_by_role("button").click()
    expect(compose.chips("to")).to_have_count(1)

    compose.fill(subject="Rückfrage Entlassbrief", body="Sehr geehrte Kollegin,\nbitte um Rückruf.\n")
    compose.wait_saved()
    pdf = tmp_path / "Befund Müller.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    compose.attach(pdf)

    for size in (PHONE, TABLET):
        page.set_viewport_size(size)
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"compose at {size['width']} px")
    page.set_viewport_size({"width": 1280, "height": 900})

    # The draft saved itself: a reload shows everything again.
    page.reload()
    expect(page.get_by_label("Betreff")).to_have_value("Rückfrage Entlassbrief")
    expect(compose.chips("to").filter(has_text=PRAXIS)).to_have_count(1)
    expect(compose.attachments).to_contain_text("Befund Müller.pdf")

    sent_page = compose.send()
    sent_page.wait_live()
    page.evaluate("window.__noReload = true")
    row = sent_page.recipient(PRAXIS)
    expect(row).to_be_visible()
    # versendet once the CM took it; zugestellt when the Fachdienst's DSN was fetched and matched — live.
    expect(row).to_contain_text("zugestellt", timeout=45_000)
    assert page.evaluate("window.__noReload === true"), "the page must not have reloaded"
    expect(sent_page.state).to_have_text("zugestellt")
    assert_accessible(page, "sent message")
    page.set_viewport_size(PHONE)
    assert_no_horizontal_scroll(page)

    outgoing = OutgoingMessage.objects.get(subject="Rückfrage Entlassbrief")
    records = [r for r in cm.sent_messages() if outgoing.message_id.encode() in r.raw]
    assert len(records) == 1, "exactly one copy reached the CM"
    sent = email.message_from_bytes(records[0].raw, policy=default)
    assert [p.get_filename() for p in sent.iter_attachments()] == ["Befund Müller.pdf"]
    assert csp == []
