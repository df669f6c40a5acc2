"""Retention and the shared blob store: what signing keeps there (a draft's document, an earlier version's
document, the signed result) outlives a deleted message that carried the same bytes; a blob nobody names goes."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from email.message import EmailMessage

import pytest
from django.utils import timezone

from mailbox import extensions
from mailbox.models import Membership, Message
from mailbox.services.ingest import message_ingest
from mailbox.services.retention import retention_run
from mailbox.storage import blob_get, blob_path, blob_put
from signing.models import Draft, DraftVersion, Signature
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create, draft_update
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.signing.documents import make_pdf
from tests.signing.factories import SignerCardFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _mail(subject: str, attachments: dict[str, bytes]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Praxis Test <praxis@praxis-test.kim.telematik-test>"
    msg["To"] = "aufnahme@klinikum-test.kim.telematik-test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@praxis-test.kim.telematik-test>"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    msg.set_content("Anbei.")
    for name, data in attachments.items():
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return msg.as_bytes()


def _done(message: Message, days_ago: float) -> Message:
    Message.objects.filter(pk=message.pk).update(state=Message.State.DONE, done_at=NOW - timedelta(days=days_ago))
    # It came before it was done: its bytes have been idle since (retention leaves bytes stored lately alone).
    idle_since = time.time() - days_ago * 86400
    for sha in [message.raw_sha256, *message.attachments.values_list("sha256", flat=True)]:
        os.utime(blob_path(sha), (idle_since, idle_since))
    return Message.objects.get(pk=message.pk)


def _exists(sha: str) -> bool:
    return blob_path(sha).exists()


def _signing_world(box):
    """A draft at version 2 (version 1 had another document) with a signed result, all through the services."""
    author, signer = UserFactory(), UserFactory()
    MembershipFactory(mailbox=box, user=author, role=Membership.Role.PROCESSOR)
    MembershipFactory(mailbox=box, user=signer, role=Membership.Role.PROCESSOR)
    SignerCardFactory(user=signer)
    first, current, signed = make_pdf("Brief erste Fassung"), make_pdf("Brief zweite Fassung"), make_pdf("signiert")
    data = DraftData(
        document_type="earztbrief",
        patient_reference="Muster",
        signer=signer,
        mailbox=box,
        subject="Entlassbrief Muster",
        recipients=["praxis@praxis-test.kim.telematik-test"],
    )
    draft = draft_create(author=author, data=data, document=document_check(first, "brief.pdf"))
    draft = draft_update(
        user=author, draft=draft, version=draft.version, data=data, document=document_check(current, "brief.pdf")
    )
    # The signed PDF as the batch worker stores it (the Konnektor's part is tested in tests/signing).
    signature = Signature.objects.create(
        draft=draft,
        format=Signature.Format.PADES,
        sha256=blob_put(signed),
        size=len(signed),
        document_version=draft.version,
        document_sha256=draft.sha256,
        signer_certificate=b"\x30\x00",
    )
    return draft, first, current, signed, signature


def test_signings_documents_survive_the_deletion_of_a_message_with_the_same_bytes():
    box = MailboxFactory(retention_days_after_done=30)
    draft, first, current, signed, signature = _signing_world(box)
    old_version = DraftVersion.objects.get(draft=draft, number=1)
    assert draft.version == 2 and old_version.sha256 != draft.sha256  # version 1's document is only in the history
    orphan = make_pdf("Befund, den niemand sonst hat")
    # An old, done message carrying all four files (e.g. the letter came back, or was sent to the house itself).
    message = message_ingest(
        mailbox=box,
        uidl="a",
        raw=_mail("Ruecklauf", {"v1.pdf": first, "v2.pdf": current, "signiert.pdf": signed, "befund.pdf": orphan}),
    )
    message = _done(message, 40)
    shas = dict(message.attachments.values_list("filename", "sha256"))
    assert shas["v1.pdf"] == old_version.sha256 and shas["v2.pdf"] == draft.sha256
    assert shas["signiert.pdf"] == signature.sha256

    dry = retention_run(mailbox=box, dry_run=True, now=NOW)
    real = retention_run(mailbox=box, dry_run=False, now=NOW)

    assert dry.figures() == real.figures()
    assert real.message_ids == [message.pk]
    # Only the raw message and the orphaned PDF go: nothing else names them.
    assert real.blobs == 2
    assert not _exists(message.raw_sha256) and not _exists(shas["befund.pdf"])
    # Signing's files are all there, intact (blob_get verifies the checksum).
    assert blob_get(draft.sha256) == current
    assert blob_get(old_version.sha256) == first
    assert blob_get(signature.sha256) == signed
    assert Message.objects.get(pk=message.pk).content_deleted_at == NOW


def test_a_draft_document_survives_a_run_that_deletes_an_unrelated_message():
    """The draft is in one mailbox, the deleted message in another one: the store is shared across mailboxes."""
    box, other = MailboxFactory(), MailboxFactory(retention_days_after_done=7)
    draft, _first, current, _signed, _sig = _signing_world(box)
    message = _done(message_ingest(mailbox=other, uidl="x", raw=_mail("Kopie", {"brief.pdf": current})), 8)
    report = retention_run(mailbox=other, dry_run=False, now=NOW)
    assert report.message_ids == [message.pk] and report.blobs == 1  # the raw message only
    assert blob_get(draft.sha256) == current
    # Once signing no longer names the document (the draft is deleted) a later copy's deletion takes it.
    Draft.objects.filter(pk=draft.pk).delete()
    again = _done(message_ingest(mailbox=other, uidl="y", raw=_mail("Noch eine Kopie", {"brief.pdf": current})), 8)
    report = retention_run(mailbox=other, dry_run=False, now=NOW)
    assert report.message_ids == [again.pk] and report.blobs == 2
    assert not _exists(draft.sha256)


def test_a_failing_keeper_keeps_every_blob_of_the_run(monkeypatch):
    box = MailboxFactory(retention_days_after_done=1)
    message = _done(message_ingest(mailbox=box, uidl="a", raw=_mail("Alt", {"a.pdf": make_pdf("allein")})), 2)
    blobs = [message.raw_sha256, *message.attachments.values_list("sha256", flat=True)]
    calls = {"n": 0}

    def flaky(shas: list[str]) -> list[str]:
        # Answers while the run plans, fails when it is about to delete (e.g. the database went away meanwhile).
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("keeper down")
        return []

    monkeypatch.setitem(extensions._blob_keepers, "flaky", flaky)
    report = retention_run(mailbox=box, dry_run=False, now=NOW)
    assert report.message_ids == [message.pk] and report.blobs == 0
    assert all(_exists(sha) for sha in blobs)
    assert Message.objects.get(pk=message.pk).content_deleted_at == NOW


def test_the_keeper_asks_once_per_chunk_not_per_blob(django_assert_max_num_queries):
    from signing.services.blobs import blobs_still_needed

    box = MailboxFactory()
    draft, _first, *_rest = _signing_world(box)
    unknown = [f"{n:064x}" for n in range(300)]
    old = DraftVersion.objects.get(draft=draft, number=1).sha256
    with django_assert_max_num_queries(1):
        kept = blobs_still_needed([*unknown, draft.sha256, old])
    assert kept == {draft.sha256, old}
