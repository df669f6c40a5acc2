"""Drafts: created with their document stored first, changed as new versions, refused with nothing half-stored."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from kimportal.errors import Conflict, NotAllowed, PortalError
from mailbox.models import Notification
from mailbox.storage import blob_get
from signing.models import Draft
from signing.services.documents import document_check
from signing.services.drafts import DraftData, draft_create, draft_update
from tests.mailbox.factories import MailboxFactory
from tests.signing.documents import LETTER_TEXT, make_pdf

pytestmark = pytest.mark.django_db


def _data(physician, mailbox, **overrides) -> DraftData:
    values = {
        "document_type": "earztbrief",
        "patient_reference": "Muster, Erika 1950",
        "signer": physician,
        "mailbox": mailbox,
        "subject": "Entlassbrief Muster",
        "body": "Anbei der Brief.",
        "recipients": ["praxis@praxis-test.kim.telematik-test"],
    }
    values.update(overrides)
    return DraftData(**values)


def test_create_stores_document_audits_and_notifies_the_signer(assistant, physician, mailbox):
    pdf = make_pdf("Entlassbrief")
    draft = draft_create(author=assistant, data=_data(physician, mailbox), document=document_check(pdf, "brief.pdf"))
    assert (draft.state, draft.version, draft.mime_type, draft.size) == ("draft", 1, "application/pdf", len(pdf))
    assert blob_get(draft.sha256) == pdf
    event = AuditEvent.objects.get(action="signing.draft_created")
    assert event.details["draft"] == draft.pk and event.details["patient"] == "Muster, Erika 1950"
    note = Notification.objects.get(user=physician)
    assert "bittet um Ihre Signatur" in note.text and "Entlassbrief Muster" in note.text


def test_create_refuses_a_mailbox_the_author_may_not_send_from(assistant, physician):
    foreign = MailboxFactory()
    with pytest.raises(NotAllowed):
        draft_create(author=assistant, data=_data(physician, foreign), document=document_check(LETTER_TEXT, "a.txt"))
    assert not Draft.objects.exists()
    assert not AuditEvent.objects.filter(action="signing.draft_created").exists()


def test_create_refuses_a_signer_without_ehba(assistant, mailbox):
    with pytest.raises(PortalError) as caught:
        draft_create(author=assistant, data=_data(assistant, mailbox), document=document_check(LETTER_TEXT, "a.txt"))
    assert "keinen eHBA" in caught.value.message
    assert not Draft.objects.exists()


def test_update_makes_a_new_version_and_refuses_stale_and_signing_drafts(assistant, physician, mailbox):
    draft = draft_create(
        author=assistant, data=_data(physician, mailbox), document=document_check(LETTER_TEXT, "brief.txt")
    )
    changed = draft_update(
        user=assistant,
        draft=draft,
        version=1,
        data=_data(physician, mailbox, subject="Entlassbrief Muster (korrigiert)"),
        document=document_check(b"Neue Fassung\n", "brief.txt"),
    )
    assert changed.version == 2 and blob_get(changed.sha256) == b"Neue Fassung\n"
    assert {"sha256", "subject"} <= set(AuditEvent.objects.get(action="signing.draft_changed").details["fields"])
    # The physician saw version 1: their change is refused, the draft stays as it is.
    with pytest.raises(Conflict):
        draft_update(user=physician, draft=draft, version=1, data=_data(physician, mailbox, subject="x"))
    assert Draft.objects.get(pk=draft.pk).subject == "Entlassbrief Muster (korrigiert)"
    Draft.objects.filter(pk=draft.pk).update(state=Draft.State.SIGNING)
    with pytest.raises(NotAllowed):
        draft_update(user=assistant, draft=draft, version=2, data=_data(physician, mailbox, subject="y"))


def test_only_author_and_signer_may_change_a_draft(assistant, physician, mailbox, stranger):
    document = document_check(LETTER_TEXT, "a.txt")
    draft = draft_create(author=assistant, data=_data(physician, mailbox), document=document)
    with pytest.raises(NotAllowed):
        draft_update(user=stranger, draft=draft, version=1, data=_data(physician, mailbox, subject="x"))
