"""Keyset pages: every message once, in order, forwards and back, at a cost that does not grow with depth."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from mailbox.models import Membership, Message
from mailbox.selectors import MessageFilter, message_list_for_user
from mailbox.selectors.pagination import KeysetPage
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader():
    return UserFactory(username="leserin")


@pytest.fixture
def box(reader):
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=reader, role=Membership.Role.READER)
    return box


def _fill(box, n: int, *, same_time: bool = False, senders: list[str] | None = None) -> list[Message]:
    now = timezone.now()
    made = []
    for i in range(n):
        m = message_ingest(mailbox=box, uidl=f"p{i}", raw=MAIL_WITH_PDF)
        fields = {"received_at": now if same_time else now - timedelta(minutes=i)}
        if senders:
            fields["from_name"] = senders[i % len(senders)]
        Message.objects.filter(pk=m.pk).update(**fields)
        made.append(m)
    return made


def _args(query: str) -> dict:
    return {k: v[0] for k, v in parse_qs(query).items()}


def _walk(user, box, *, size: int, sort: str = "-received") -> list[KeysetPage]:
    pages = [message_list_for_user(user, mailbox=box, size=size, filters=MessageFilter(sort=sort))]
    while pages[-1].has_next:
        args = _args(pages[-1].next_query)
        pages.append(message_list_for_user(user, mailbox=box, size=size, filters=MessageFilter(sort=sort), **args))
        assert len(pages) < 50
    return pages


@pytest.mark.parametrize("same_time", [False, True])
def test_walking_forward_shows_every_message_once_in_order(reader, box, same_time):
    _fill(box, 7, same_time=same_time)
    pages = _walk(reader, box, size=3)
    seen = [m.pk for page in pages for m in page]
    expected = list(Message.objects.filter(mailbox=box).order_by("-received_at", "-id").values_list("pk", flat=True))
    assert seen == expected
    assert [len(page.object_list) for page in pages] == [3, 3, 1]


def test_page_indices_use_the_pages_own_size(reader, box):
    # The old pager multiplied by the default page size (50): page 2 of 3-row pages said "51–53".
    _fill(box, 7)
    pages = _walk(reader, box, size=3)
    assert [(p.number, p.first_index, p.last_index) for p in pages] == [(1, 1, 3), (2, 4, 6), (3, 7, 7)]


@pytest.mark.parametrize("sort", ["from", "subject", "received"])
def test_every_sort_pages_through_ties_without_gaps(reader, box, sort):
    _fill(box, 11, senders=["Zahn", "Adler", "Adler", "Meier"])
    pages = _walk(reader, box, size=4, sort=sort)
    seen = [m.pk for page in pages for m in page]
    assert len(seen) == len(set(seen)) == 11
    unpaged = message_list_for_user(reader, mailbox=box, size=100, filters=MessageFilter(sort=sort))
    assert seen == [m.pk for m in unpaged]


def test_walking_back_returns_the_same_pages(reader, box):
    _fill(box, 10)
    forward = _walk(reader, box, size=3)
    page = forward[-1]
    back = []
    while page.has_previous:
        page = message_list_for_user(reader, mailbox=box, size=3, **_args(page.previous_query))
        back.append(page)
    assert [[m.pk for m in p] for p in back] == [[m.pk for m in p] for p in reversed(forward[:-1])]
    assert back[-1].number == 1 and not back[-1].has_previous


# The last: 2,000 nested "[" (2.7 kB in a URL), deeper than Python's JSON decoder goes.
NESTED = base64.urlsafe_b64encode(b"[" * 2000).decode().rstrip("=")


@pytest.mark.parametrize("cursor", ["", "!!!", "W10", "WyJ4IiwgMV0", "eyJhIjogMX0", "WzEsMl0", NESTED])
def test_a_broken_cursor_starts_at_the_top_instead_of_failing(reader, box, cursor, client):
    made = _fill(box, 3)
    page = message_list_for_user(reader, mailbox=box, after=cursor)
    assert [m.pk for m in page] == [m.pk for m in made]
    client.force_login(reader)
    url = reverse("mailbox:mailbox-messages", args=[box.pk])
    assert client.get(url, {"after": cursor, "before": cursor}).status_code == 200


def _cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# Well-formed JSON with values no list can seek to: an offset beyond ±24 h, NUL (PostgreSQL text refuses it), a lone
# surrogate (no UTF-8).
@pytest.mark.parametrize(
    ("sort", "values"),
    [
        ("-received", ["2026-01-01T00:00:00+99:00", 1]),
        ("subject", ["a\u0000b", "2026-01-01T00:00:00+00:00", 1]),
        ("from", ["\ud800", "x", "2026-01-01T00:00:00+00:00", 1]),
    ],
)
def test_an_impossible_cursor_value_starts_at_the_top_instead_of_failing(reader, box, client, sort, values):
    made = _fill(box, 2)
    cursor = _cursor(values)
    for key in ("after", "before"):
        page = message_list_for_user(reader, mailbox=box, filters=MessageFilter(sort=sort), **{key: cursor})
        assert {m.pk for m in page} == {m.pk for m in made}
    client.force_login(reader)
    url = reverse("mailbox:mailbox-messages", args=[box.pk])
    assert client.get(url, {"sort": sort, "after": cursor, "before": cursor, "page": 3}).status_code == 200


def test_the_older_page_link_follows_the_cursor(reader, box, client, settings):
    made = _fill(box, 60)
    client.force_login(reader)
    url = reverse("mailbox:mailbox-messages", args=[box.pk])
    first = client.get(url).content.decode()
    assert f'id="msg-{made[49].pk}"' in first and f'id="msg-{made[50].pk}"' not in first
    first_page = message_list_for_user(reader, mailbox=box)
    older = client.get(url + "?" + first_page.next_query).content.decode()
    assert f'id="msg-{made[50].pk}"' in older and f'id="msg-{made[49].pk}"' not in older
    assert "Nachrichten 51–60" in older


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the plan is PostgreSQL's")
def test_a_deep_page_seeks_instead_of_skipping_rows(reader, box):
    _fill(box, 12)
    pages = _walk(reader, box, size=2)
    deep_args = _args(pages[-2].next_query)
    with CaptureQueriesContext(connection) as ctx:
        message_list_for_user(reader, mailbox=box, size=2, **deep_args)
    listing = next(q["sql"] for q in ctx.captured_queries if "ORDER BY" in q["sql"])
    assert "OFFSET" not in listing.upper()
