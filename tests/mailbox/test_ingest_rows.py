"""rows_insert(): the rows of a fetched batch go in as bulk_create() would put them, column for column.

rows_insert sends the column arrays in binary instead of the ORM's text arrays. Rows with values
that text arrays must quote or escape (quotes, backslashes, braces, commas, blanks, the word NULL,
empty strings, 8-bit text, JSON with quotes), NULLs, aware datetimes and set foreign keys are
stored both ways; every column must read back the same.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailbox.models import Attachment, Message
from mailbox.services.ingest import rows_insert
from tests.mailbox.factories import MailboxFactory, UserFactory

pytestmark = pytest.mark.django_db

_AWKWARD = ['"', "\\", "{", "}", ",", " ", "\t", "\n", "NULL", "null", "", "ä€", '\\"', "'", "{a,b}", "\u2028", "x"]


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(_AWKWARD) for _ in range(rng.randint(0, 12)))


def _message(rng: random.Random, mailbox: Any, user: Any, n: int) -> Message:
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**8), microseconds=rng.randint(0, 999))
    return Message(
        mailbox=mailbox,
        uidl=f"u{n}",
        pop3_size=rng.choice([None, 0, 2**40]),
        raw_sha256="a" * 64,
        size=rng.randint(0, 2**40),
        received_at=when,
        from_address=_text(rng),
        from_name=_text(rng),
        to=[_text(rng) for _ in range(rng.randint(0, 3))],
        cc=rng.choice([[], ["NULL"], [None], [{"a": _text(rng)}]]),
        subject=_text(rng),
        date=rng.choice([None, when]),
        references=_text(rng),
        text_body=_text(rng) * rng.randint(0, 50),
        html_body=f'<p class="{_text(rng)}">{_text(rng)}</p>',
        is_malformed=rng.random() < 0.5,
        parse_problems=[_text(rng)],
        attachment_count=rng.randint(0, 32767),
        state=rng.choice(["new", "done"]),
        assignee=rng.choice([None, user]),
        due_at=rng.choice([None, when]),
    )


def _columns(model: type[Any], pks: list[int]) -> list[dict[str, Any]]:
    rows = {row["id"]: row for row in model.objects.filter(pk__in=pks).values()}
    return [{k: v for k, v in rows[pk].items() if k not in ("id", "uidl", "message_id")} for pk in pks]


@pytest.mark.parametrize("seed", range(8))
def test_rows_read_back_as_bulk_create_stores_them(seed):
    rng = random.Random(seed)
    mailbox, user = MailboxFactory(), UserFactory()
    count = rng.randint(1, 60)
    ours = [_message(random.Random(f"{seed}-{n}"), mailbox, user, n) for n in range(count)]
    orm = [_message(random.Random(f"{seed}-{n}"), mailbox, user, n + 1000) for n in range(count)]

    with CaptureQueriesContext(connection) as queries:
        assert rows_insert(ours) is ours
    assert len([q for q in queries if q["sql"].startswith("INSERT")]) == 1
    Message.objects.bulk_create(orm)

    assert all(m.pk is not None and not m._state.adding for m in ours)
    # In order: each row got the id of its own INSERTed row.
    assert [m.uidl for m in ours] == [Message.objects.get(pk=m.pk).uidl for m in ours]
    assert _columns(Message, [m.pk for m in ours]) == _columns(Message, [m.pk for m in orm])

    ours_attachments = [
        Attachment(message=m, position=p, filename=_text(rng) or "x", content_type="a/b", size=p, sha256="b" * 64)
        for m in ours
        for p in range(rng.randint(0, 2))
    ]
    orm_attachments = [
        Attachment(
            message=orm[ours.index(a.message)],
            position=a.position,
            filename=a.filename,
            content_type=a.content_type,
            size=a.size,
            sha256=a.sha256,
        )
        for a in ours_attachments
    ]
    rows_insert(ours_attachments)
    Attachment.objects.bulk_create(orm_attachments)
    assert _columns(Attachment, [a.pk for a in ours_attachments]) == _columns(
        Attachment, [a.pk for a in orm_attachments]
    )


def test_no_rows_send_no_statement():
    with CaptureQueriesContext(connection) as queries:
        assert rows_insert([]) == []
    assert len(queries) == 0
