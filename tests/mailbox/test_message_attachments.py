"""A message with thousands of attachments: its page lists the first ones, all of them are on pages of their own."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from mailbox import selectors
from mailbox.models import Attachment, Message
from mailbox.selectors.messages import ATTACHMENTS_PAGE_SIZE, ATTACHMENTS_SHOWN
from mailbox.services.ingest import message_ingest
from signing.views.received import panel_applies
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db

MANY = 10_000
_ITEM = re.compile(r'<li>\s*<a href="/nachricht/\d+/anhang/(\d+)/" download>')


@pytest.fixture
def member():
    return UserFactory(username="station")


@pytest.fixture
def mailbox(member):
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=member)
    return box


def _with_attachments(mailbox, count: int, *, uidl: str = "viele", inline: int = 0) -> Message:
    """A received message and `count` listed attachment rows (position 0 is the mail's own PDF), with `inline` images
    its HTML shows before them."""
    message = message_ingest(mailbox=mailbox, uidl=uidl, raw=MAIL_WITH_PDF)
    Attachment.objects.filter(message=message).update(position=inline)
    Attachment.objects.bulk_create(
        [
            Attachment(message=message, position=i, filename=f"bild-{i}.png", content_type="image/png", size=10,
                       sha256="a" * 64, content_id=f"<b{i}@x>", is_inline=True)
            for i in range(inline)
        ]
        + [
            Attachment(message=message, position=inline + i, filename=f"scan-{i:05d}.tif", content_type="image/tiff",
                       size=1000 + i, sha256="b" * 64)
            for i in range(1, count)
        ]
    )  # fmt: skip
    Message.objects.filter(pk=message.pk).update(attachment_count=min(count, Message.ATTACHMENT_COUNT_MAX))
    return message


def test_the_page_of_a_message_with_10000_attachments_lists_50_and_links_to_all(client, member, mailbox):
    message = _with_attachments(mailbox, MANY)
    client.force_login(member)
    html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    # 1.9 MB when every attachment was on it.
    assert len(html.encode()) < 100_000
    section = html[html.index('<section class="attachments"') :]
    section = section[: section.index("</section>")]
    assert [int(p) for p in _ITEM.findall(section)] == list(range(ATTACHMENTS_SHOWN))
    assert "Anhänge (10000)" in section
    assert "Die ersten 50 von 10000 Anhängen." in section
    all_url = reverse("mailbox:message-attachments", args=[message.pk])
    assert f'<a href="{all_url}">Alle 10000 Anhänge anzeigen</a>' in section


def test_every_attachment_is_reachable_page_by_page_and_each_page_is_recorded(client, member, mailbox):
    message = _with_attachments(mailbox, MANY)
    client.force_login(member)
    url = reverse("mailbox:message-attachments", args=[message.pk])
    first = client.get(url).content.decode()
    assert "10000 Anhänge" in first and "Anhänge 1–200 von 10000" in first and "Seite 1 von 50" in first
    assert '<a href="?seite=2" rel="next">' in first and 'rel="prev"' not in first
    assert len(first.encode()) < 150_000
    seen: list[int] = []
    page, next_url = 1, url
    while next_url:
        with CaptureQueriesContext(connection) as queries:
            html = client.get(next_url).content.decode()
        # The same few queries on every page, whatever its number: no query per attachment.
        assert len(queries) <= 12, [q["sql"][:120] for q in queries]
        seen += [int(p) for p in _ITEM.findall(html)]
        found = re.search(r'<a href="\?seite=(\d+)" rel="next">', html)
        next_url = f"{url}?seite={found.group(1)}" if found else ""
        page += 1
    assert seen == list(range(MANY))
    assert page - 1 == MANY // ATTACHMENTS_PAGE_SIZE
    events = AuditEvent.objects.filter(actor_id=member.pk, action="message.attachments_viewed", message_id=message.pk)
    assert sorted(e.details["page"] for e in events) == [1, *range(1, 51)]


def test_a_page_number_out_of_range_or_garbage_shows_the_nearest_page(client, member, mailbox):
    message = _with_attachments(mailbox, 450)
    client.force_login(member)
    url = reverse("mailbox:message-attachments", args=[message.pk])
    last = client.get(url + "?seite=999").content.decode()
    assert "Anhänge 401–450 von 450" in last and "Seite 3 von 3" in last
    assert "Anhänge 1–200 von 450" in client.get(url + "?seite=abc").content.decode()


def test_images_the_html_shows_are_neither_listed_nor_counted_nor_crowd_out_files(client, member, mailbox):
    message = _with_attachments(mailbox, 3, inline=80)
    client.force_login(member)
    html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert [int(p) for p in _ITEM.findall(html)] == [80, 81, 82]
    assert "Alle 3 Anhänge" not in html and "Anhänge (3)" not in html
    listed = client.get(reverse("mailbox:message-attachments", args=[message.pk])).content.decode()
    assert [int(p) for p in _ITEM.findall(listed)] == [80, 81, 82]


def test_a_few_attachments_need_no_second_page(client, member, mailbox):
    message = _with_attachments(mailbox, ATTACHMENTS_SHOWN)
    client.force_login(member)
    html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert len(_ITEM.findall(html)) == ATTACHMENTS_SHOWN
    assert reverse("mailbox:message-attachments", args=[message.pk]) not in html


def test_someone_elses_attachment_list_is_404_and_not_recorded(client, member, mailbox):
    message = _with_attachments(mailbox, 60)
    stranger = UserFactory(username="fremd")
    MembershipFactory(user=stranger)
    client.force_login(stranger)
    assert client.get(reverse("mailbox:message-attachments", args=[message.pk])).status_code == 404
    assert not AuditEvent.objects.filter(actor_id=stranger.pk, action="message.attachments_viewed").exists()
    assert list(selectors.attachment_page_for_user(stranger, message_pk=message.pk, page=1)) == []


def test_a_signature_beyond_the_listed_attachments_still_brings_the_signatures_panel(member, mailbox):
    message = _with_attachments(mailbox, 60, uidl="sig")
    Attachment.objects.filter(message=message, position=0).update(content_type="image/tiff", filename="scan.tif")
    assert not panel_applies(selectors.message_detail_for_user(member, message.pk))
    Attachment.objects.filter(message=message, position=55).update(content_type="application/pkcs7-signature",
                                                                   filename="brief.p7s")  # fmt: skip
    shown = selectors.message_detail_for_user(member, message.pk)
    assert shown.attachments_more and len(shown.attachment_list) == ATTACHMENTS_SHOWN
    assert panel_applies(shown)


def test_the_list_filters_by_name_counts_the_matches_keeps_the_filter_and_records_it(client, member, mailbox):
    message = _with_attachments(mailbox, 450)  # the mail's PDF, then scan-00001.tif … scan-00449.tif
    client.force_login(member)
    url = reverse("mailbox:message-attachments", args=[message.pk])

    first = client.get(url, {"name": " SCAN-00 "}).content.decode()

    assert '<h1 id="attachments-heading">449 Anhänge mit „SCAN-00“ im Namen</h1>' in first
    assert "Anhänge 1–200 von 449" in first and "Seite 1 von 3" in first
    assert 'value="SCAN-00"' in first and "Filter aufheben" in first
    assert '<label for="attachment-name">Name enthält</label>' in first
    # Paging keeps the filter: the link, and the jump to a page by its number.
    found = re.search(r'<a href="\?seite=2&amp;name=SCAN-00" rel="next">', first)
    assert found is not None
    assert '<input type="hidden" name="name" value="SCAN-00">' in first
    second = client.get(url, {"seite": 2, "name": "SCAN-00"}).content.decode()
    assert "Anhänge 201–400 von 449" in second
    assert [int(p) for p in _ITEM.findall(second)] == list(range(201, 401))

    one = client.get(url, {"name": "scan-00017"}).content.decode()
    assert "1 Anhang mit „scan-00017“ im Namen" in one and [int(p) for p in _ITEM.findall(one)] == [17]
    # The name is text, not a pattern: "%" and "_" match only themselves.
    for pattern in ("%", "scan_0"):
        none = client.get(url, {"name": pattern}).content.decode()
        assert "0 Anhänge mit" in none and "Kein Anhang passt zu diesem Namen." in none
    events = AuditEvent.objects.filter(actor_id=member.pk, action="message.attachments_viewed", message_id=message.pk)
    assert [(e.details["page"], e.details.get("name")) for e in events.order_by("id")] == [
        (1, "SCAN-00"),
        (2, "SCAN-00"),
        (1, "scan-00017"),
        (1, "%"),
        (1, "scan_0"),
    ]
    unfiltered = client.get(url).content.decode()
    assert "450 Anhänge</h1>" in unfiltered and "Filter aufheben" not in unfiltered
    assert "name" not in AuditEvent.objects.filter(action="message.attachments_viewed").latest("id").details


def test_a_name_filter_over_the_limit_is_refused_with_the_whole_list(client, member, mailbox):
    message = _with_attachments(mailbox, 3)
    client.force_login(member)
    html = client.get(reverse("mailbox:message-attachments", args=[message.pk]), {"name": "x" * 201}).content.decode()
    assert 'aria-invalid="true"' in html and 'id="attachment-name-error"' in html
    assert "3 Anhänge</h1>" in html


def test_a_message_with_more_attachments_than_its_count_holds_shows_the_real_number(client, member, mailbox):
    # A hostile mail of 32,800 parts: the row's small-integer count stops at 32,767, as ingest stores it.
    message = _with_attachments(mailbox, 32_800)
    assert Message.objects.get(pk=message.pk).attachment_count == 32_767
    client.force_login(member)

    html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()

    assert "Anhänge (32800)" in html and "Die ersten 50 von 32800 Anhängen." in html
    assert "Alle 32800 Anhänge anzeigen" in html
    listed = client.get(reverse("mailbox:message-attachments", args=[message.pk])).content.decode()
    assert "32800 Anhänge</h1>" in listed
