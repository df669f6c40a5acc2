"""Storing fetched mail in batches: one transaction and one live update per batch, and a row the
database refuses costs no other message its place — nor is it deleted on the server.

The database refuses rows here for real: a PostgreSQL trigger raises for one UIDL, as a
constraint or a value the column cannot hold would.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction
from django.utils import timezone

from mailbox.models import Attachment, FetchFailure, KimAccount, Message
from mailbox.services.fetch import account_fetch
from mailbox.services.ingest import message_ingest, message_stage, messages_store
from mailbox.storage import BlobBatch, blob_get
from tests.mailbox.conftest import HOSPITAL, simple_mail
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db(transaction=True)

Refuse = Callable[[str, str], None]


@pytest.fixture
def refuse() -> Iterator[Refuse]:
    """refuse(uidl, sqlstate): inserting that UIDL's full row fails with that SQLSTATE.

    A raw-only row (empty subject, the ingest's last resort) is refused only for the integrity
    SQLSTATE, so "check_violation" refuses the message for good and "string_data_right_truncation"
    only its parsed fields.
    """
    created = False

    def install(uidl: str, sqlstate: str) -> None:
        nonlocal created
        assert re.fullmatch(r"[0-9a-f.~]+", uidl) and re.fullmatch(r"[a-z_]+", sqlstate)
        condition = f"NEW.uidl = '{uidl}'"
        if sqlstate != "check_violation":
            condition += " AND NEW.subject <> ''"
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE OR REPLACE FUNCTION test_refuse_message() RETURNS trigger AS $$ BEGIN "
                f"IF {condition} THEN RAISE EXCEPTION 'refused by test' USING ERRCODE = '{sqlstate}'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute("DROP TRIGGER IF EXISTS test_refuse_message ON mailbox_message")
            cursor.execute(
                "CREATE TRIGGER test_refuse_message BEFORE INSERT ON mailbox_message "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse_message()"
            )
        created = True

    if connection.vendor != "postgresql":
        pytest.fail("these tests need PostgreSQL (DATABASE_URL)")
    try:
        yield install
    finally:
        if created:
            with connection.cursor() as cursor:
                cursor.execute("DROP TRIGGER IF EXISTS test_refuse_message ON mailbox_message")
                cursor.execute("DROP FUNCTION IF EXISTS test_refuse_message()")


def test_a_batch_with_a_row_the_database_refuses_stores_the_others_and_deletes_only_those(cm, account, refuse):
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Brief {i}")) for i in range(4)]
    refuse(uidls[2], "check_violation")

    result = account_fetch(account_id=account.pk)

    assert "konnten nicht gespeichert werden" in result.error
    stored = dict(Message.objects.values_list("uidl", "subject"))
    assert stored == {uidls[0]: "Brief 0", uidls[1]: "Brief 1", uidls[3]: "Brief 3"}
    assert sorted(result.stored) == sorted(Message.objects.values_list("pk", flat=True))
    assert cm.maildrop_uidls(HOSPITAL) == [uidls[2]], "only the stored ones are deleted; the refused one stays"
    account.refresh_from_db()
    assert account.status == KimAccount.Status.ERROR

    # The refused one waits with its own backoff (it would be refused again at once), then comes.
    assert FetchFailure.objects.get().uidl == uidls[2]
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER test_refuse_message ON mailbox_message")
    FetchFailure.objects.update(next_try_at=timezone.now())
    again = account_fetch(account_id=account.pk)
    assert again.error == ""
    assert Message.objects.get(uidl=uidls[2]).subject == "Brief 2"
    assert cm.maildrop_uidls(HOSPITAL) == []


def test_a_value_the_database_refuses_keeps_that_message_raw_and_the_batch_whole(cm, account, refuse):
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Befund {i}")) for i in range(3)]
    refuse(uidls[1], "string_data_right_truncation")

    result = account_fetch(account_id=account.pk)

    assert result.error == ""
    assert len(result.stored) == 3
    raw_only = Message.objects.get(uidl=uidls[1])
    assert raw_only.is_malformed and raw_only.subject == ""
    assert b"Subject: Befund 1" in blob_get(raw_only.raw_sha256)
    assert sorted(Message.objects.exclude(pk=raw_only.pk).values_list("subject", flat=True)) == [
        "Befund 0",
        "Befund 2",
    ]
    assert cm.maildrop_uidls(HOSPITAL) == []


def test_a_batch_goes_in_with_one_insert_per_table(account):
    from django.test.utils import CaptureQueriesContext

    # Two letters with the same PDF (one blob, written once) and one without attachments.
    raws = [MAIL_WITH_PDF, simple_mail("Ohne Anhang"), MAIL_WITH_PDF.replace(b"Subject: ", b"Subject: Kopie ")]
    with BlobBatch() as blobs:
        staged = [message_stage(uidl=f"u{i}", raw=raw, pop3_size=len(raw), blobs=blobs) for i, raw in enumerate(raws)]
        with CaptureQueriesContext(connection) as queries:
            messages = messages_store(mailbox=account.mailbox, staged=staged, blobs=blobs)

    assert [m.attachment_count for m in messages] == [1, 0, 1]
    inserts = [q["sql"].split("(")[0] for q in queries if q["sql"].startswith("INSERT")]
    assert inserts == ['INSERT INTO "mailbox_message" ', 'INSERT INTO "mailbox_attachment" '], "one per table"
    for message, raw in zip(messages, raws, strict=True):
        assert blob_get(message.raw_sha256) == raw
    pdfs = Attachment.objects.filter(message__in=messages).values_list("message_id", "filename", "sha256")
    assert sorted(pdfs) == [
        (messages[0].pk, "Entlassbrief Müller.pdf", staged[0].attachment_shas[0]),
        (messages[2].pk, "Entlassbrief Müller.pdf", staged[0].attachment_shas[0]),
    ]
    assert blob_get(staged[0].attachment_shas[0]).startswith(b"%PDF")


def test_rows_are_committed_when_messages_store_returns(account):
    # The fetch DELEs what messages_store returned: those rows must already be committed.
    raw = simple_mail("Festgeschrieben")
    with BlobBatch() as blobs:
        staged = [message_stage(uidl="c1", raw=raw, pop3_size=len(raw), blobs=blobs)]
        [message] = messages_store(mailbox=account.mailbox, staged=staged, blobs=blobs)
    assert not connection.in_atomic_block
    with transaction.atomic():
        # A new transaction sees the row, so it was committed, not merely inserted.
        assert Message.objects.filter(pk=message.pk, uidl="c1").exists()


def test_a_uidl_stored_meanwhile_by_another_worker_is_returned_not_duplicated(account):
    raw = simple_mail("Schon da")
    earlier = message_ingest(mailbox=account.mailbox, uidl="dup", raw=raw, pop3_size=len(raw))
    fresh = simple_mail("Neu")
    with BlobBatch() as blobs:
        staged = [
            message_stage(uidl="dup", raw=raw, pop3_size=len(raw), blobs=blobs),
            message_stage(uidl="new", raw=fresh, pop3_size=len(fresh), blobs=blobs),
        ]
        messages = messages_store(mailbox=account.mailbox, staged=staged, blobs=blobs)

    assert messages[0] is not None and messages[0].pk == earlier.pk
    assert messages[1] is not None and messages[1].subject == "Neu"
    assert Message.objects.count() == 2
