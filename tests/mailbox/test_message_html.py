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


def _mail_with_images(html: str, cids: list[str]) -> bytes:
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
    for cid in cids:
        # Each image differs by a trailing byte, so each is its own stored file.
        image = base64.b64encode(PNG + cid.encode()).decode()
        parts += ["--rel", "Content-Type: image/png", f"Content-ID: <{cid}>", "Content-Transfer-Encoding: base64", ""]
        parts.append(image)
    parts.append("--rel--")
    return "\r\n".join(parts).encode("ascii") + b"\r\n"


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
