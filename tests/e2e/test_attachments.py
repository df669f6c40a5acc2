"""Received attachments in the browser: shown in a sandbox (Chromium's PDF viewer too), and a message with hundreds
of them listed page by page."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest
from playwright.sync_api import Frame, Page, expect

from mailbox.models import Attachment, Message
from mailbox.services.ingest import message_ingest
from tests.e2e.a11y import assert_accessible
from tests.e2e.layout import PHONE, TABLET, assert_no_horizontal_scroll, screenshot
from tests.e2e.pages import LoginPage
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.e2e


def _pdf(text: str) -> bytes:
    """A one-page PDF showing *text* (Helvetica, no compression)."""
    stream = f"BT /F1 24 Tf 40 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _part(filename: str, content_type: str, data: bytes) -> bytes:
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (
        f'--B\r\nContent-Type: {content_type}\r\nContent-Disposition: attachment; filename="{filename}"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode() + encoded


def _viewer(page: Page) -> Frame:
    """Chromium's PDF viewer (its extension's frame) inside a page showing a PDF."""
    for _ in range(100):
        frame = next((f for f in page.frames if f.url.startswith("chrome-extension://")), None)
        if frame is not None:
            return frame
        page.wait_for_timeout(100)
    raise AssertionError(f"no PDF viewer in {[f.url for f in page.frames]}")


def test_pdf_image_and_text_are_shown_in_a_sandbox(portal_web, page, browser_context):
    user = UserFactory(username="station")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=user)
    pdf, png = _pdf("Befund Herzkatheter"), _png(40, 30)
    raw = (
        b"From: Praxis <praxis@praxis-test.kim.telematik-test>\r\nTo: station@klinikum-test.kim.telematik-test\r\n"
        b'Subject: Befunde\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnbei die Befunde.\r\n"
        + _part("befund.pdf", "application/pdf", pdf)
        + _part("roentgen.png", "image/png", png)
        + _part("werte.txt", "text/plain", b"Kalium 4,1 mmol/l")
        + b"--B--\r\n"
    )
    message_ingest(mailbox=box, uidl="a1", raw=raw)
    inbox = LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    detail = inbox.open_message("Befunde")

    def show(filename: str) -> Page:
        name = detail.page.get_by_role("link", name=filename, exact=True)
        item = detail.page.locator(".attachments li").filter(has=name)
        with browser_context.expect_page() as opened:
            item.get_by_role("link", name="anzeigen").click()
        shown = opened.value
        shown.wait_for_load_state()
        return shown

    # The PDF under the same sandbox as every attachment: the viewer reads its one page and offers the download.
    with browser_context.expect_event("response", lambda r: r.url.endswith("?inline=1")) as answered:
        shown = show("befund.pdf")
    assert (answered.value.header_value("content-security-policy") or "").startswith("sandbox;")
    viewer = _viewer(shown)
    # The viewer's own elements (Chromium's PDF extension): the page count is there once PDFium has read the file.
    expect(viewer.locator("viewer-page-selector #pagelength")).to_have_text("1")
    with shown.expect_download() as saved:
        viewer.locator("viewer-download-controls #save").click()
    assert saved.value.suggested_filename == "befund.pdf"
    assert open(saved.value.path(), "rb").read() == pdf
    shown.close()

    # An image document shows its own image (img-src 'self' in the sandbox).
    shown = show("roentgen.png")
    image = shown.locator("img")
    expect(image).to_be_visible()
    assert image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]") == [True, 40, 30]
    shown.close()

    # Text is shown as text, and no script of the portal's origin can run in it.
    shown = show("werte.txt")
    expect(shown.locator("body")).to_have_text("Kalium 4,1 mmol/l")
    assert shown.evaluate("() => { try { return String(document.cookie); } catch (e) { return 'opaque'; } }") == (
        "opaque"
    )
    shown.close()


@pytest.mark.parametrize("viewport", [PHONE, TABLET], ids=["phone", "tablet"])
def test_all_attachments_of_a_long_message_by_keyboard(portal_web, page, viewport):
    user = UserFactory(username="station")
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=user)
    message = message_ingest(mailbox=box, uidl="viele", raw=MAIL_WITH_PDF)
    Attachment.objects.bulk_create(
        Attachment(message=message, position=i, filename=f"scan-{i:04d}-station-kardiologie-aufnahme.tif",
                   content_type="image/tiff", size=1000, sha256="b" * 64)
        for i in range(1, 450)
    )  # fmt: skip
    Message.objects.filter(pk=message.pk).update(attachment_count=450)
    page.set_viewport_size(viewport)
    LoginPage(page, portal_web.url).open().login("station", "pw-secret-123")
    page.goto(f"{portal_web.url}/nachricht/{message.pk}/")
    attachments = page.locator("section.attachments")
    expect(attachments.locator("li")).to_have_count(50)
    more = attachments.get_by_role("link", name="Alle 450 Anhänge anzeigen")
    more.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("450 Anhänge")
    expect(page.locator(".attachments-page li")).to_have_count(200)
    expect(page.locator("#attachments-range")).to_have_text("Anhänge 1–200 von 450")
    assert_no_horizontal_scroll(page)
    screenshot(page, f"attachments-{viewport['width']}")
    assert_accessible(page, f"attachments page at {viewport['width']} px")

    pages = page.get_by_role("navigation", name="Seiten der Anhänge")
    pages.get_by_role("link", name="Nächste »").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#attachments-range")).to_have_text("Anhänge 201–400 von 450")
    # Straight to a page by its number, from the keyboard.
    page.get_by_label("Seite", exact=True).fill("3")
    page.keyboard.press("Enter")
    expect(page.locator("#attachments-range")).to_have_text("Anhänge 401–450 von 450")
    expect(page.locator(".attachments-page li").last).to_contain_text("scan-0449-station-kardiologie-aufnahme.tif")
    assert_no_horizontal_scroll(page)

    # The list by name, from the keyboard: the search field, Enter, the count of what matches, and paging that keeps
    # the filter.
    filter_field = page.get_by_role("search", name="Anhänge nach Name filtern").get_by_label("Name enthält")
    filter_field.focus()
    page.keyboard.type("SCAN-02")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("100 Anhänge mit „SCAN-02“ im Namen")
    expect(page.locator(".attachments-page li")).to_have_count(100)
    expect(page.locator(".attachments-page li").first).to_contain_text("scan-0200-station-kardiologie-aufnahme.tif")
    assert_accessible(page, f"filtered attachments page at {viewport['width']} px")
    filter_field.fill("station")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("449 Anhänge mit „station“ im Namen")
    page.get_by_role("navigation", name="Seiten der Anhänge").get_by_role("link", name="Nächste »").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#attachments-range")).to_have_text("Anhänge 201–400 von 449")
    expect(filter_field).to_have_value("station")
    page.get_by_role("link", name="Filter aufheben").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("450 Anhänge")
