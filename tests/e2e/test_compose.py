"""Browser test of the send path: compose with a directory search and a typed address, an attachment, the draft
surviving a reload, send, and the delivery timeline turning "zugestellt" without a reload when the Fachdienst's
DSN comes back (simulated CM with its Fachdienst, a small slapd as the VZD, gunicorn + Celery worker/beat)."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from email.policy import default

import pytest
from django.utils import timezone
from playwright.sync_api import Route, expect

from mailbox.models import KimAccount, Membership, OutgoingMessage, OutgoingRecipient
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.ingest import message_ingest
from mailbox.services.members import membership_set
from tests.e2e.a11y import assert_accessible
from tests.e2e.conftest import PortalStack
from tests.e2e.layout import PHONE, TABLET, assert_no_horizontal_scroll
from tests.e2e.pages import LoginPage, load_with_live_script_held
from tests.e2e.pages_compose import ComposePage, SentPage
from tests.mailbox.conftest import HOSPITAL, PASSWORD, PRAXIS
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.send.conftest import NO_CERT, OUTSIDE, cm, send_vzd_server  # noqa: F401  (fixtures: simulated CM, slapd)

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


def _station_at(cm):  # noqa: F811
    """The ward's user and mailbox, its account at the simulated CM (polled every second)."""
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
    return station, account


def test_compose_send_and_see_it_delivered_live(cm, stack, page, tmp_path):  # noqa: F811
    _station_at(cm)
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
    # Keyboard focus resting on "Senden" while the draft saves itself (the timer) saves, and sends nothing.
    draft_url = page.url
    send_button = page.get_by_role("button", name="Senden", exact=True)
    page.get_by_label("Betreff").fill("Rückfrage Entlassbrief eilig")
    with page.expect_response(lambda r: r.request.method == "POST" and "eilig" in (r.request.post_data or "")):
        send_button.focus()  # leaving the subject saves it
    with page.expect_response(lambda r: r.request.method == "POST" and "/entwurf/" in r.url) as saved:
        page.evaluate("() => htmx.trigger(document.getElementById('draft-form'), 'draft-autosave')")
    assert saved.value.url == draft_url
    assert OutgoingMessage.objects.get(subject="Rückfrage Entlassbrief eilig").state == OutgoingMessage.State.DRAFT
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
    expect(page.get_by_label("Betreff")).to_have_value("Rückfrage Entlassbrief eilig")
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

    outgoing = OutgoingMessage.objects.get(subject="Rückfrage Entlassbrief eilig")
    records = [r for r in cm.sent_messages() if outgoing.message_id.encode() in r.raw]
    assert len(records) == 1, "exactly one copy reached the CM"
    sent = email.message_from_bytes(records[0].raw, policy=default)
    assert [p.get_filename() for p in sent.iter_attachments()] == ["Befund Müller.pdf"]
    assert csp == []


def test_a_recipient_the_fachdienst_does_not_know_turns_failed_live(cm, stack, page):  # noqa: F811
    station, account = _station_at(cm)
    cm.set_recipient_state(PRAXIS, "unknown")
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=[PRAXIS])
    )
    LoginPage(page, stack.url).open().login("station", "pw-secret-123")
    page.goto(f"{stack.url}/entwurf/{draft.pk}/")
    sent_page = ComposePage(page).send()
    sent_page.wait_live()
    row = sent_page.recipient(PRAXIS)
    expect(row).to_contain_text("fehlgeschlagen", timeout=45_000)
    expect(sent_page.state).to_have_text("fehlgeschlagen")
    reason = row.locator(".reason")
    expect(reason).not_to_be_empty()
    # A failed send is somebody's job: it waits in the outbox with its reason.
    page.goto(f"{stack.url}/postausgang/")
    expect(page.locator(f"#out-{draft.pk}")).to_contain_text("fehlgeschlagen")
    assert_accessible(page, "outbox with a failed send")


@pytest.fixture
def web(transactional_db, tmp_path, send_vzd_server) -> Iterator[PortalStack]:  # noqa: F811
    env = {"KIMPORTAL_VZD_URL": send_vzd_server.url, "KIMPORTAL_VZD_CA_FILE": "", "KIMPORTAL_VZD_TLS_PIN": ""}
    portal = PortalStack(tmp_path, with_worker=False, extra_env=env)
    try:
        portal.start()
        yield portal
    finally:
        portal.stop()


def _check_widths(page, where: str) -> None:
    for size in (PHONE, TABLET):
        page.set_viewport_size(size)
        assert_no_horizontal_scroll(page)
        assert_accessible(page, f"{where} at {size['width']} px")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_reply_preflight_problem_remove_recipient_and_the_send_pages(web, page):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    letter = message_ingest(mailbox=account.mailbox, uidl="brief", raw=MAIL_WITH_PDF)
    now = timezone.now()
    uncertain = OutgoingMessage.objects.create(
        mailbox=account.mailbox,
        author=station,
        subject="Befund unterwegs",
        to=[PRAXIS],
        state="uncertain",
        queued_at=now,
        message_id="<11111111-1111-4111-8111-111111111111@kim.local>",
        last_error="Die Verbindung endete nach der Übergabe.",
    )
    OutgoingRecipient.objects.create(outgoing=uncertain, address=PRAXIS, state="uncertain", updated_at=now)
    failed = OutgoingMessage.objects.create(
        mailbox=account.mailbox,
        author=station,
        subject="Befund abgelehnt",
        to=[NO_CERT],
        state="failed",
        queued_at=now,
        last_error="Die Nachricht konnte nicht gesendet werden.",
    )
    OutgoingRecipient.objects.create(
        outgoing=failed, address=NO_CERT, state="failed", reason="kein Zertifikat", updated_at=now
    )

    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    page.goto(f"{web.url}/nachricht/{letter.pk}/")
    expect(page.locator("#conversation")).to_contain_text("Eingangsbestätigung senden")
    _check_widths(page, "message with reply actions")

    page.locator("#reply-actions").get_by_role("button", name="Antworten", exact=True).click()
    compose = ComposePage(page)
    expect(page.locator("#compose-heading")).to_have_text("Antworten")
    expect(compose.chips("to").filter(has_text=PRAXIS)).to_have_count(1)
    compose.type_address(NO_CERT)
    expect(compose.chips("to").filter(has_text=NO_CERT)).to_have_count(1)
    page.get_by_role("button", name="Senden", exact=True).click()
    problem = compose.problems.locator(f'[data-problem-address="{NO_CERT}"]')
    expect(problem).to_contain_text("kein Verschlüsselungszertifikat")
    expect(compose.problems).to_contain_text("Die Nachricht wurde nicht gesendet.")
    _check_widths(page, "pre-flight problems")
    problem.get_by_role("button", name="Empfänger entfernen").click()
    expect(compose.problems).to_contain_text(f"{NO_CERT} wurde aus den Empfängern entfernt.")
    expect(compose.chips("to").filter(has_text=NO_CERT)).to_have_count(0)
    # A file dropped onto the attachment zone is uploaded like one chosen with the file input.
    page.evaluate(
        """() => {
        const dt = new DataTransfer();
        dt.items.add(new File(["Rückrufnotiz"], "notiz.txt", {type: "text/plain"}));
        document.querySelector("[data-drop-zone]").dispatchEvent(
            new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
    }"""
    )
    expect(compose.attachments).to_contain_text("notiz.txt")
    draft = OutgoingMessage.objects.get(in_reply_to=letter)
    assert [a.filename for a in draft.attachments.all()] == ["notiz.txt"]
    assert draft.to == [PRAXIS] and draft.state == OutgoingMessage.State.DRAFT

    for path, text in [
        ("/gesendet/", "Befund unterwegs"),
        ("/postausgang/", "Befund abgelehnt"),
        ("/entwuerfe/", draft.subject),
        (f"/postfach/{account.mailbox_id}/gesendet/", "Befund unterwegs"),
    ]:
        page.goto(web.url + path)
        expect(page.locator("main")).to_contain_text(text)
        _check_widths(page, path)
    page.goto(f"{web.url}/gesendet/{uncertain.pk}/")
    expect(page.locator("#uncertain-decision")).to_contain_text("Zustellung ungewiss.")
    _check_widths(page, "uncertain sent message")
    page.get_by_role("button", name="Ist angekommen – nicht erneut senden").click()
    expect(page.locator("#outgoing-state")).to_have_text("versendet")
    page.goto(f"{web.url}/gesendet/{failed.pk}/")
    page.get_by_role("button", name="Ich kümmere mich").click()
    expect(page.locator("#outgoing-claim")).to_contain_text("Sabine Station")

    # Discarding asks first: "Abbrechen" keeps the draft, "OK" removes it.
    page.goto(f"{web.url}/entwurf/{draft.pk}/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Entwurf verwerfen").click()
    expect(page.locator("#compose-heading")).to_be_visible()
    assert OutgoingMessage.objects.filter(pk=draft.pk).exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Entwurf verwerfen").click()
    expect(page.locator("main")).to_contain_text("Keine Entwürfe.")
    assert not OutgoingMessage.objects.filter(pk=draft.pk).exists()


def test_a_save_or_upload_that_cannot_reach_the_server_or_is_refused_says_so(web, page, tmp_path):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    owner = UserFactory(username="chefin")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    MembershipFactory(mailbox=account.mailbox, user=owner, role=Membership.Role.OWNER)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    page.goto(f"{web.url}/entwurf/{draft.pk}/")
    compose = ComposePage(page)
    body = page.get_by_label("Nachricht", exact=True)

    # The network is gone: the line says the text is not saved; once it is back, the next timed save stores it.
    page.context.set_offline(True)
    body.fill("Erster Absatz")
    page.keyboard.press("Tab")
    expect(compose.status).to_contain_text("Nicht gespeichert: keine Verbindung zum Server.")
    page.context.set_offline(False)
    expect(compose.status).to_contain_text("Entwurf gespeichert um")
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Erster Absatz"

    # Files that are each allowed but together more than the proxy takes in one request: nginx answers 413 before
    # the portal sees them (simulated here at the browser's end). The section says so; chosen again in smaller
    # groups, they are attached and the notice goes.
    note = tmp_path / "Rückrufnotiz.txt"
    note.write_text("Bitte zurückrufen", encoding="utf-8")
    upload = f"**/entwurf/{draft.pk}/anhang/"
    page.route(upload, lambda route: route.fulfill(status=413, content_type="text/html", body="<h1>413</h1>"))
    page.locator("#attachment-files").set_input_files(str(note))
    expect(page.locator("#attachment-error")).to_contain_text("Zusammen sind sie größer, als der Server")
    page.unroute(upload)
    compose.attach(note)
    expect(page.locator("#attachment-error")).to_have_count(0)

    # A save the server fails outright (a 5xx, not swapped in): the line says so instead of the last "gespeichert".
    failing = f"**/entwurf/{draft.pk}/"
    page.route(failing, lambda route: route.fulfill(status=502, content_type="text/html", body="<h1>502</h1>"))
    body.fill("Erster Absatz\nnicht angekommen")
    page.keyboard.press("Tab")
    expect(compose.status).to_contain_text("Von dieser Seite aus kann der Entwurf nicht mehr gespeichert")
    page.unroute(failing)

    # An owner makes the author a reader while the page is open: the save is refused (423) with the reason, instead
    # of still showing the last "gespeichert".
    membership_set(user=owner, mailbox=account.mailbox, username="station", role=Membership.Role.READER)
    body.fill("Erster Absatz\nZweiter Absatz")
    page.keyboard.press("Tab")
    expect(compose.status).to_contain_text("Sie dürfen aus diesem Postfach nicht mehr senden")
    expect(compose.status).not_to_contain_text("Entwurf gespeichert um")
    saved = OutgoingMessage.objects.get(pk=draft.pk)
    assert (saved.body, saved.state) == ("Erster Absatz", OutgoingMessage.State.DRAFT)


STALE = "Der Entwurf wurde inzwischen an anderer Stelle geändert"


def test_two_tabs_on_one_draft_the_stale_one_notices_and_neither_send_nor_save_overwrites(web, page, browser_context):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    url = f"{web.url}/entwurf/{draft.pk}/"
    page.goto(url)
    first = ComposePage(page)
    SentPage(page).wait_live()
    other = browser_context.new_page()
    other.goto(url)
    second = ComposePage(other)
    SentPage(other).wait_live()

    # The second tab writes and saves; the first, untouched, is told at once (its socket heard of the save).
    other.get_by_label("Nachricht", exact=True).fill("Text aus dem zweiten Tab")
    second.wait_saved()
    expect(first.status).to_contain_text(STALE)
    expect(first.status.get_by_role("link", name="Neuere Fassung laden")).to_be_visible()
    expect(second.status).to_contain_text("Entwurf gespeichert um")  # its own save is no conflict

    # The first tab types anyway and sends: refused, its text stays on the page, the newer text stays stored.
    page.get_by_label("Nachricht", exact=True).fill("Text aus dem ersten Tab")
    page.get_by_role("button", name="Senden", exact=True).click()
    expect(first.problems).to_contain_text("Die Nachricht wurde nicht gesendet.")
    expect(first.problems).to_contain_text(STALE)
    expect(page.get_by_label("Nachricht", exact=True)).to_have_value("Text aus dem ersten Tab")
    stored = OutgoingMessage.objects.get(pk=draft.pk)
    assert (stored.state, stored.body) == (OutgoingMessage.State.DRAFT, "Text aus dem zweiten Tab")
    _check_widths(page, "a send refused as stale")

    # "Diese Fassung speichern" keeps this tab's text on purpose; now the second tab is the stale one.
    first.problems.get_by_role("button", name="Diese Fassung speichern").click()
    expect(first.status).to_contain_text("Entwurf gespeichert um")
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Text aus dem ersten Tab"
    # The refusal is over: what it said of the conflict goes; that nothing was sent stays said.
    expect(first.problems).not_to_contain_text("Die Nachricht wurde nicht gesendet.")
    expect(first.problems).not_to_contain_text(STALE)
    expect(first.problems).to_contain_text("Gesendet wurde noch nichts")
    expect(second.status).to_contain_text(STALE)
    # "Neuere Fassung laden" there shows what the first tab stored.
    second.status.get_by_role("link", name="Neuere Fassung laden").click()
    expect(other.get_by_label("Nachricht", exact=True)).to_have_value("Text aus dem ersten Tab")


def test_a_file_added_in_another_tab_shows_up_here_and_this_tabs_text_saves_without_a_conflict(
    web, page, browser_context, tmp_path
):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    url = f"{web.url}/entwurf/{draft.pk}/"
    page.goto(url)
    first = ComposePage(page)
    SentPage(page).wait_live()
    other = browser_context.new_page()
    other.goto(url)
    second = ComposePage(other)
    SentPage(other).wait_live()

    # The second tab attaches a file: the first shows it at once (its socket heard of the change), no conflict.
    note = tmp_path / "Laborwerte.txt"
    note.write_text("Kalium 4,1", encoding="utf-8")
    second.attach(note)
    expect(first.attachments).to_contain_text("Laborwerte.txt")
    expect(first.status).not_to_contain_text(STALE)
    # The first tab's text is saved: nothing it overwrites changed since it loaded.
    page.get_by_label("Nachricht", exact=True).fill("Befund anbei")
    first.wait_saved()
    stored = OutgoingMessage.objects.get(pk=draft.pk)
    assert (stored.body, [a.filename for a in stored.attachments.all()]) == ("Befund anbei", ["Laborwerte.txt"])
    # A change of the text is still a conflict: the second tab is told of the first one's save.
    expect(second.status).to_contain_text(STALE)


def test_signing_out_with_edits_not_yet_saved_saves_them_first_and_keeps_no_copy(web, page):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    url = f"{web.url}/entwurf/{draft.pk}/"
    page.goto(url)
    compose = ComposePage(page)
    body = page.get_by_label("Nachricht", exact=True)
    logout = page.get_by_role("button", name="Abmelden")

    # Typed, and "Abmelden" at once: the last save is still on its way (held here until the page said it waits).
    # The logout waits for its answer; sent after it, the save would meet an ended session and the text be lost.
    held = []

    def hold_first_save(route):
        if route.request.method == "POST" and not held:
            held.append(route)
        else:
            route.continue_()

    page.route(url, hold_first_save)
    body.fill("Bitte um Rückruf wegen der Medikation.")
    logout.click()
    expect(compose.status).to_contain_text("dann werden Sie abgemeldet")
    assert held and OutgoingMessage.objects.get(pk=draft.pk).body == ""
    held[0].continue_()
    page.wait_for_url(lambda u: "/login/" in u)
    expect(page.locator("main")).to_contain_text("Sie haben sich abgemeldet.")
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Bitte um Rückruf wegen der Medikation."
    assert compose.local_copies() == []
    page.unroute(url)

    # The last save fails (the server errs): the user is asked, may stay to keep the text, or go without it; then
    # the tab keeps no copy of it either (the next person at this tab).
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    page.goto(url)
    compose = ComposePage(page)
    page.route(
        url, lambda route: route.fulfill(status=502, body="") if route.request.method == "POST" else route.continue_()
    )
    body.fill("Nachtrag, der nicht ankommt")
    with page.expect_event("dialog") as asked:
        logout.click()
    assert "konnten nicht gespeichert werden" in asked.value.message
    asked.value.dismiss()
    expect(compose.status).to_contain_text("Nicht gespeichert")
    assert page.url == url
    page.once("dialog", lambda dialog: dialog.accept())
    logout.click()
    page.wait_for_url(lambda u: "/login/" in u)
    assert compose.local_copies() == []
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Bitte um Rückruf wegen der Medikation."


def test_edits_of_a_tab_whose_session_ended_are_offered_back_after_signing_in_never_to_someone_else(
    web, page, browser_context
):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    colleague = UserFactory(username="kollegin", first_name="Karin", last_name="Kollegin")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    MembershipFactory(mailbox=account.mailbox, user=colleague)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    own = outgoing_draft_save(user=colleague, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Ihrer"))
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    url = f"{web.url}/entwurf/{draft.pk}/"
    page.goto(url)
    compose = ComposePage(page)
    SentPage(page).wait_live()

    # Logged out in another tab; this one still shows the form and the user goes on writing.
    other = browser_context.new_page()
    other.goto(f"{web.url}/")
    other.get_by_role("button", name="Abmelden").click()
    other.wait_for_url(lambda u: "/login/" in u)
    other.close()
    expect(page.locator("#session-ended-text")).to_contain_text("Ihre Sitzung wurde beendet")
    # The subject's save goes out as the focus moves on to the text (its change event); held until both are typed,
    # or a quick answer took the tab to the login page before the text was in it (CI).
    holding: list[Route] = []

    def hold_saves(route: Route) -> None:
        if route.request.method == "POST" and not released:
            holding.append(route)
        else:
            route.continue_()

    released = False
    page.route(url, hold_saves)
    page.get_by_label("Betreff").fill("Rückfrage zum Entlassbrief")
    page.get_by_label("Nachricht", exact=True).fill("Bitte um Rückruf\nwegen der Medikation.")
    released = True
    for route in holding:
        route.continue_()
    # The next save meets the ended session: the tab goes to the login page, the edits stay in this tab.
    page.wait_for_url(lambda u: "/login/" in u)
    assert OutgoingMessage.objects.get(pk=draft.pk).body == ""
    page.get_by_label("Benutzername").fill("station")
    page.get_by_label("Passwort").fill("pw-secret-123")
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(url)
    compose = ComposePage(page)
    expect(compose.restore_offer).to_be_visible()
    expect(compose.restore_offer).to_contain_text("nicht gespeichert")
    expect(page.get_by_label("Nachricht", exact=True)).to_have_value("")
    _check_widths(page, "the offer of unsaved edits")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url == url and r.ok):
        compose.restore_offer.get_by_role("button", name="Nicht gespeicherte Änderungen wiederherstellen").click()
    expect(compose.restore_offer).to_be_hidden()
    expect(page.get_by_label("Betreff")).to_have_value("Rückfrage zum Entlassbrief")
    expect(compose.status).to_contain_text("Entwurf gespeichert um")
    stored = OutgoingMessage.objects.get(pk=draft.pk)
    assert (stored.subject, stored.body, stored.to) == (
        "Rückfrage zum Entlassbrief",
        "Bitte um Rückruf\nwegen der Medikation.",
        [PRAXIS],
    )
    assert compose.local_copies() == []  # confirmed by the server: nothing is offered again
    page.reload()
    expect(ComposePage(page).restore_offer).to_be_hidden()

    # The session ends unheard (expired); the tab's next save goes to the login page, and a colleague signs in at
    # this tab: her draft page offers nothing and keeps nothing of the other user's text.
    from django.contrib.sessions.models import Session

    page.get_by_label("Nachricht", exact=True).fill("Vertraulicher Zusatz")
    Session.objects.all().delete()
    page.wait_for_url(lambda u: "/login/" in u)
    page.get_by_label("Benutzername").fill("kollegin")
    page.get_by_label("Passwort").fill("pw-secret-123")
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(lambda u: "/login/" not in u)
    page.goto(f"{web.url}/")
    assert "Vertraulicher Zusatz" not in page.evaluate("() => JSON.stringify(sessionStorage)")
    page.goto(f"{web.url}/entwurf/{own.pk}/")
    theirs = ComposePage(page)
    expect(page.get_by_label("Betreff")).to_have_value("Ihrer")
    expect(theirs.restore_offer).to_be_hidden()
    assert theirs.local_copies() == []
    assert "Vertraulicher Zusatz" not in page.evaluate("() => JSON.stringify(sessionStorage)")

    # Signing out on purpose clears what the tab kept.
    page.get_by_label("Nachricht", exact=True).fill("Noch nicht gespeichert")
    page.evaluate("() => sessionStorage.setItem('kim-draft-unsaved:0:0', JSON.stringify({at: 0, fields: {body: 'x'}}))")
    page.get_by_role("button", name="Abmelden").click()
    page.wait_for_url(lambda u: "/login/" in u)
    expect(page.locator("main")).to_contain_text("Sie haben sich abgemeldet.")
    assert theirs.local_copies() == []


def test_a_sent_page_still_loading_when_the_message_is_delivered_shows_it_delivered(web, page):
    """The worker hands the message over and the DSN comes back while the sent page loads: those events went to
    nobody (the page's socket did not listen yet). Once the socket opens, the page reads the timeline again."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    now = timezone.now()
    outgoing = OutgoingMessage.objects.create(
        mailbox=account.mailbox, author=station, subject="Befund unterwegs", to=[PRAXIS], state="queued", queued_at=now
    )
    OutgoingRecipient.objects.create(outgoing=outgoing, address=PRAXIS, state="queued", updated_at=now)
    LoginPage(page, web.url).open().login("station", "pw-secret-123")

    # The page is rendered (in Warteschlange), and its live script waits: its socket cannot open yet.
    def load_then_deliver(path: str, state: str) -> None:
        held = load_with_live_script_held(page, web.url + path)
        # Meanwhile the message is sent (and delivered); the events of it reach no socket of this page.
        OutgoingMessage.objects.filter(pk=outgoing.pk).update(state=state)
        OutgoingRecipient.objects.filter(outgoing=outgoing).update(state=state, updated_at=timezone.now())
        held.continue_()

    load_then_deliver(f"/gesendet/{outgoing.pk}/", "delivered")
    sent_page = SentPage(page)
    sent_page.wait_live()
    expect(sent_page.state).to_have_text("zugestellt")
    expect(sent_page.recipient(PRAXIS)).to_contain_text("zugestellt")

    # The list of sent messages likewise, while a row of it is still under way.
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(state="queued")
    load_then_deliver("/gesendet/", "sent")
    expect(page.locator(f"#out-{outgoing.pk} .outgoing-state")).to_have_text("versendet")


def test_kept_edits_restored_after_the_draft_changed_elsewhere_meet_the_conflict_and_a_cancelled_discard_keeps_them(
    web, page, browser_context
):
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    draft = outgoing_draft_save(
        user=station, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Rückfrage", to=[PRAXIS])
    )
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    url = f"{web.url}/entwurf/{draft.pk}/"
    page.goto(url)
    SentPage(page).wait_live()
    other = browser_context.new_page()
    other.goto(f"{web.url}/")
    other.get_by_role("button", name="Abmelden").click()
    other.wait_for_url(lambda u: "/login/" in u)
    other.close()
    expect(page.locator("#session-ended-text")).to_contain_text("Ihre Sitzung wurde beendet")
    page.get_by_label("Nachricht", exact=True).fill("Text aus dem alten Tab")
    page.wait_for_url(lambda u: "/login/" in u)
    # Meanwhile the draft is written on elsewhere (another device).
    stored = OutgoingMessage.objects.get(pk=draft.pk)
    outgoing_draft_save(
        user=station,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject="Rückfrage", to=[PRAXIS], body="Neuerer Text vom Stationsrechner"),
        draft=stored,
        version=stored.version,
    )
    page.get_by_label("Benutzername").fill("station")
    page.get_by_label("Passwort").fill("pw-secret-123")
    page.get_by_role("button", name="Anmelden").click()
    page.wait_for_url(url)
    compose = ComposePage(page)
    expect(compose.restore_offer).to_be_visible()
    with page.expect_response(lambda r: r.request.method == "POST" and r.url == url) as answered:
        compose.restore_offer.get_by_role("button", name="Nicht gespeicherte Änderungen wiederherstellen").click()
    assert answered.value.status == 409  # saved against the version the edits were made on: a conflict to decide
    expect(compose.status).to_contain_text("Neuere Fassung laden")
    expect(page.get_by_label("Nachricht", exact=True)).to_have_value("Text aus dem alten Tab")
    assert OutgoingMessage.objects.get(pk=draft.pk).body == "Neuerer Text vom Stationsrechner"
    assert compose.local_copies() != []

    # "Entwurf verwerfen", then "Abbrechen" in the question: nothing is discarded, the kept edits neither.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_role("button", name="Entwurf verwerfen").click()
    expect(page).to_have_url(url)
    assert compose.local_copies() != []
    assert OutgoingMessage.objects.filter(pk=draft.pk).exists()


LIMIT_FULL = (
    "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 100. Um weitere hinzuzufügen, entfernen "
    "Sie bitte zuerst einen."
)


def _station_draft_to(count: int, *, to: int) -> tuple[OutgoingMessage, list[str]]:
    """A draft of Sabine ("station", of the cardiology ward) to `count` practices (the first `to` in An, the rest in
    Kopie), and their addresses."""
    station = UserFactory(username="station", first_name="Sabine", last_name="Station")
    account = KimAccountFactory(mailbox__address=HOSPITAL, mailbox__display_name="Station Kardiologie")
    MembershipFactory(mailbox=account.mailbox, user=station)
    addresses = [f"p{i}@praxis-test.kim.telematik-test" for i in range(count)]
    draft = outgoing_draft_save(
        user=station,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject="Rundschreiben", to=addresses[:to], cc=addresses[to:]),
    )
    return draft, addresses


def test_the_picker_and_the_address_boxes_stop_at_the_recipient_limit_say_why_and_open_again(web, page):
    draft, _addresses = _station_draft_to(99, to=60)
    # The requests that add a chip (a pick, a typed address): none may leave at the limit.
    adds: list[str] = []
    page.on("request", lambda r: adds.append(r.url) if re.search(r"/auswahl/uebernehmen/|/adresse/", r.url) else None)
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    page.goto(f"{web.url}/entwurf/{draft.pk}/")
    compose = ComposePage(page)
    limit = page.locator("#recipient-limit")
    expect(limit).to_have_attribute("role", "status")
    expect(limit).to_have_text("")

    # The 100th recipient from the directory: the sentence says no more can be added, the focus is back in the
    # search box (never on a control that does nothing).
    compose.pick(compose.search_recipient("Praxis Test").filter(has_text=PRAXIS))
    expect(compose.chips("to").filter(has_text=PRAXIS)).to_have_count(1)
    expect(limit).to_have_text(LIMIT_FULL)
    expect(page.locator("#to-picker-q")).to_be_focused()
    for field in ("to", "cc"):
        typed_add = page.locator(f'[data-typed-add="{field}-typed"]')
        expect(typed_add).to_have_text("Höchstzahl erreicht")
        expect(typed_add).to_have_attribute("aria-disabled", "true")
    assert_accessible(page, "compose at the recipient limit")

    # A 101st from the Cc picker: its button says so. Enter on the hit (the picker's keys) adds nothing, and the
    # focus stays on the hit; the button itself (Space) neither.
    hit = compose.search_recipient("Praxis Draußen", field="cc").first
    pick = hit.locator(".vzd-pick")
    expect(pick).to_have_text("Höchstzahl erreicht")
    expect(pick).to_have_attribute("aria-disabled", "true")
    expect(pick).to_have_accessible_description(LIMIT_FULL)
    adds.clear()
    page.keyboard.press("ArrowDown")
    expect(hit).to_be_focused()
    page.keyboard.press("Enter")
    expect(hit).to_be_focused()
    pick.focus()
    page.keyboard.press("Space")
    expect(pick).to_be_focused()
    # A typed address likewise: nothing is asked for, the box keeps what was typed.
    typed = page.locator("#cc-typed")
    typed.fill(OUTSIDE)
    typed.press("Enter")
    expect(typed).to_be_focused()
    expect(typed).to_have_value(OUTSIDE)
    expect(limit).to_have_text(LIMIT_FULL)
    assert adds == []
    expect(page.locator(".vzd-chips input[type=hidden]")).to_have_count(100)

    # One removed: adding is open again, and the sentence is gone.
    compose.chips("to").filter(has_text=PRAXIS).get_by_role("button", name="Empfänger entfernen").click()
    expect(limit).to_have_text("")
    expect(pick).to_have_text("Auswählen")
    expect(pick).not_to_have_attribute("aria-disabled", "true")
    expect(page.locator('[data-typed-add="cc-typed"]')).to_have_text("Hinzufügen")
    # A pasted list that does not fit is refused whole, with the numbers; the box keeps it to be shortened.
    typed.fill(f"{OUTSIDE}, {PRAXIS}; {NO_CERT}")
    typed.press("Enter")
    expect(limit).to_have_text(
        "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 99, hier stehen 3 weitere. Nichts "
        "hinzugefügt: Bitte kürzen Sie die Eingabe auf 1."
    )
    expect(typed).to_have_value(f"{OUTSIDE}, {PRAXIS}; {NO_CERT}")
    assert adds == []
    # Shortened to one, it is added: the 100th again.
    typed.fill(OUTSIDE)
    typed.press("Enter")
    expect(compose.chips("cc").filter(has_text=OUTSIDE)).to_have_count(1)
    expect(limit).to_have_text(LIMIT_FULL)
    expect(page.locator('[data-typed-add="cc-typed"]')).to_have_text("Höchstzahl erreicht")


def test_a_draft_saved_with_more_recipients_than_may_be_sent_keeps_them_all_and_says_how_many_must_go(web, page):
    draft, many = _station_draft_to(102, to=70)
    LoginPage(page, web.url).open().login("station", "pw-secret-123")
    url = f"{web.url}/entwurf/{draft.pk}/"
    page.goto(url)
    compose = ComposePage(page)
    limit = page.locator("#recipient-limit")
    expect(page.locator(".vzd-chips input[type=hidden]")).to_have_count(102)
    expect(limit).to_have_text(
        "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 102. Bitte entfernen Sie 2."
    )
    expect(page.locator('[data-typed-add="to-typed"]')).to_have_text("Höchstzahl erreicht")
    assert_accessible(page, "compose above the recipient limit")

    # One removed: the sentence counts along, and the draft saved keeps all the others.
    with page.expect_response(lambda r: r.request.method == "POST" and r.url == url and r.ok):
        compose.chips("cc").filter(has_text=many[101]).get_by_role("button", name="Empfänger entfernen").click()
    expect(limit).to_have_text(
        "Höchstens 100 Empfänger je Nachricht (An und Kopie zusammen); diese hat 101. Bitte entfernen Sie 1."
    )
    stored = OutgoingMessage.objects.get(pk=draft.pk)
    assert (stored.to, stored.cc) == (many[:70], many[70:101])
    page.reload()
    expect(page.locator(".vzd-chips input[type=hidden]")).to_have_count(101)
    expect(limit).to_contain_text("diese hat 101")
