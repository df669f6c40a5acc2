"""The HTML body's own document (mailbox.services.rendering): what it embeds and what that costs."""

from __future__ import annotations

import base64

import pytest
from django.urls import reverse

from mailbox.services import rendering
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _image(cid: str, size: int = 0) -> bytes:
    """A PNG that differs per name (each its own stored file), padded to `size` bytes."""
    return (PNG + cid.encode()).ljust(size, b"\0")


def _related(html: str, images: list[tuple[str, bytes, str]]) -> bytes:
    """A multipart/related mail: the HTML, then its images as (cid, bytes, Content-Disposition or "")."""
    parts = [
        "From: Dr. Anna Sender <sender@arzt.kim.telematik-test>",
        "To: station@klinik.kim.telematik-test",
        "Subject: Bilder",
        "Message-ID: <bilder-1@arzt.kim.telematik-test>",
        "MIME-Version: 1.0",
        'Content-Type: multipart/related; boundary="rel"',
        "",
        "--rel",
        "Content-Type: text/html; charset=utf-8",
        "",
        html,
    ]
    for cid, data, disposition in images:
        parts += ["--rel", "Content-Type: image/png", f"Content-ID: <{cid}>", "Content-Transfer-Encoding: base64"]
        if disposition:
            parts.append(f"Content-Disposition: {disposition}; filename={cid.split('@')[0]}.png")
        parts += ["", base64.encodebytes(data).decode().replace("\n", "\r\n").rstrip()]
    parts.append("--rel--")
    return "\r\n".join(parts).encode("ascii") + b"\r\n"


def _mail_with_images(html: str, cids: list[str]) -> bytes:
    return _related(html, [(cid, _image(cid), "") for cid in cids])


@pytest.fixture
def member():
    return UserFactory(username="station")


@pytest.fixture
def mailbox(member):
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=member)
    return box


def test_only_the_images_the_html_names_are_read(client, member, mailbox, monkeypatch):
    # A sender can attach any number of images with a Content-ID that the HTML never names: showing the body must
    # not read (and base64-encode) every one of them on each view, only the one it embeds.
    unnamed = [f"bild{i}@arzt" for i in range(30)]
    raw = _mail_with_images('<p><img src="cid:logo@arzt" alt="Logo"></p>', ["logo@arzt", *unnamed])
    msg = message_ingest(mailbox=mailbox, uidl="bilder", raw=raw)
    read: list[str] = []
    real_get = rendering.blob_get

    def counting_get(sha256: str) -> bytes:
        read.append(sha256)
        return real_get(sha256)

    monkeypatch.setattr(rendering, "blob_get", counting_get)
    client.force_login(member)
    body = client.get(reverse("mailbox:message-html", args=[msg.pk])).content.decode()
    logo = base64.b64encode(PNG + b"logo@arzt").decode()
    assert f'src="data:image/png;base64,{logo}"' in body
    assert read == [msg.attachments.get(content_id__icontains="logo@arzt").sha256]


def test_an_image_name_given_to_many_parts_reads_and_shows_only_the_first(client, member, mailbox, monkeypatch):
    raw = _mail_with_images('<p><img src="cid:logo@arzt" alt="Logo"></p>', ["logo@arzt"] * 30)
    msg = message_ingest(mailbox=mailbox, uidl="gleich", raw=raw)
    read: list[str] = []
    real_get = rendering.blob_get

    def counting_get(sha256: str) -> bytes:
        read.append(sha256)
        return real_get(sha256)

    monkeypatch.setattr(rendering, "blob_get", counting_get)
    client.force_login(member)
    body = client.get(reverse("mailbox:message-html", args=[msg.pk])).content.decode()
    assert body.count("data:image/png;base64,") == 1
    assert len(read) == 1
    # The other 29 parts are not hidden: the message lists them.
    assert list(msg.attachments.order_by("position").values_list("is_inline", flat=True)) == [True] + [False] * 29
    msg.refresh_from_db()
    assert msg.attachment_count == 29


MB = 1024 * 1024


def _mail_with_sized_images(sizes: dict[str, int]) -> bytes:
    """An HTML body naming every image; each image `size` bytes."""
    tags = "".join(f'<img src="cid:{cid}" alt="{cid}">' for cid in sizes)
    return _related(f"<p>{tags}</p>", [(cid, _image(cid, size), "") for cid, size in sizes.items()])


def test_embedded_images_stay_within_a_total_and_the_rest_are_listed(client, member, mailbox, monkeypatch):
    # A hostile sender's many large images: the view would read and base64-encode all of them on every view.
    sizes = {"a@x": 4 * MB, "b@x": 4 * MB, "c@x": 4 * MB, "d@x": 1 * MB}
    msg = message_ingest(mailbox=mailbox, uidl="gross", raw=_mail_with_sized_images(sizes))
    inline = dict(msg.attachments.values_list("content_id", "is_inline"))
    # In their order while they fit 10 MB: a, b (8 MB), not c (12 MB), d (9 MB).
    assert {cid.strip("<>"): flag for cid, flag in inline.items()} == {
        "a@x": True,
        "b@x": True,
        "c@x": False,
        "d@x": True,
    }
    msg.refresh_from_db()
    assert msg.attachment_count == 1
    read: list[int] = []
    real_get = rendering.blob_get

    def counting_get(sha256: str) -> bytes:
        data = real_get(sha256)
        read.append(len(data))
        return data

    monkeypatch.setattr(rendering, "blob_get", counting_get)
    client.force_login(member)
    body = client.get(reverse("mailbox:message-html", args=[msg.pk])).content.decode()
    assert body.count("data:image/png;base64,") == 3 and 'src="cid:c@x"' in body
    assert sum(read) == 9 * MB
    # The one not embedded is in the message's attachment list, to open or download.
    page = client.get(reverse("mailbox:message-detail", args=[msg.pk])).content.decode()
    listed = msg.attachments.get(content_id__icontains="c@x")
    assert reverse("mailbox:attachment-download", args=[msg.pk, listed.position]) in page


def test_the_view_bounds_the_total_of_what_was_stored_inline_before(client, member, mailbox, monkeypatch):
    # Rows marked inline without the total (stored before it existed, or by another path): the view still reads at
    # most the total, in their order.
    msg = message_ingest(mailbox=mailbox, uidl="alt", raw=_mail_with_sized_images({"a@x": 4 * MB, "b@x": 1 * MB}))
    monkeypatch.setattr(rendering, "MAX_INLINE_TOTAL_BYTES", 4 * MB)
    client.force_login(member)
    body = client.get(reverse("mailbox:message-html", args=[msg.pk])).content.decode()
    assert body.count("data:image/png;base64,") == 1 and 'src="cid:b@x"' in body


def test_ingest_and_view_agree_on_what_is_shown_so_nothing_is_hidden(client, member, mailbox):
    html_part = (
        '<p><img src="cid:logo&#64;arzt" alt="Logo">'  # named with an entity: shown
        '<a href="cid:link@arzt">Bild</a><!-- cid:kommentar@arzt -->'  # named, but not as an image: listed
        '<img src="cid:anhang@arzt" alt="Anhang"></p>'  # shown, and listed as its part asks
    )
    images = [("logo@arzt", ""), ("link@arzt", ""), ("kommentar@arzt", ""), ("anhang@arzt", "attachment")]
    raw = _related(html_part, [(cid, _image(cid), disposition) for cid, disposition in images])
    msg = message_ingest(mailbox=mailbox, uidl="verweise", raw=raw)
    inline = {cid.strip("<>"): flag for cid, flag in msg.attachments.values_list("content_id", "is_inline")}
    assert inline == {"logo@arzt": True, "link@arzt": False, "kommentar@arzt": False, "anhang@arzt": False}
    client.force_login(member)
    body = client.get(reverse("mailbox:message-html", args=[msg.pk])).content.decode()
    shown = {cid for cid, _ in images if base64.b64encode(PNG + cid.encode()).decode() in body}
    assert shown == {"logo@arzt", "anhang@arzt"}
    # Every part is shown in the body or in the list.
    page = client.get(reverse("mailbox:message-detail", args=[msg.pk])).content.decode()
    for attachment in msg.attachments.filter(is_inline=False):
        assert reverse("mailbox:attachment-download", args=[msg.pk, attachment.position]) in page
