"""Drafts, replies, forwards, permissions, the eArztbrief acknowledgement and live updates of the outbox."""

from __future__ import annotations

import email
from email.policy import default

import pytest
from django.http import Http404
from django.utils import translation

from audit.models import AuditEvent
from kimportal.errors import Conflict, NotAllowed
from mailbox import events
from mailbox.models import Membership, Message, OutgoingMessage
from mailbox.selectors.outbox import (
    drafts_for_user,
    outgoing_get_for_user,
    outgoing_list_for_user,
    sendable_mailboxes_for_user,
    thread_for_user,
)
from mailbox.services.compose import (
    DraftInvalid,
    OutgoingData,
    build_mime,
    outgoing_attachment_add,
    outgoing_discard,
    outgoing_draft_save,
    outgoing_reply_start,
)
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import (
    acknowledgement_auto,
    acknowledgement_offered,
    outgoing_acknowledge,
    outgoing_deliver,
    outgoing_send,
)
from mailbox.storage import blob_path
from tests.mailbox.conftest import HOSPITAL, PRAXIS, simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
OTHER = "kollegin@praxis-test.kim.telematik-test"


def _fetched(cm, account, raw: bytes) -> Message:
    cm.deliver(HOSPITAL, raw)
    assert account_fetch(account_id=account.pk).error == ""
    return Message.objects.filter(mailbox=account.mailbox).latest("id")


def test_reply_all_answers_the_sender_and_copies_the_others_but_not_ourselves(cm, account, sender):
    message = _fetched(
        cm,
        account,
        simple_mail("AW: Befund", to=f"{HOSPITAL}, {OTHER}", Cc=f"{OTHER}, Station <{HOSPITAL.upper()}>"),
    )
    draft = outgoing_reply_start(user=sender, message=message, reply_all=True)
    assert (draft.to, draft.cc) == ([PRAXIS], [OTHER])
    assert draft.subject == "AW: Befund"  # no "AW: AW:"
    assert draft.in_reply_to_header == message.message_id
    assert draft.references == message.message_id
    assert draft.kind == OutgoingMessage.Kind.REPLY_ALL and draft.state == OutgoingMessage.State.DRAFT
    assert "> Hallo" in draft.body


def test_autosave_is_guarded_by_the_version(account, sender):
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="A"))
    saved = outgoing_draft_save(
        user=sender,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject="B\r\nBcc: x@evil.example", to=["  Praxis@Praxis-Test.kim.telematik-test ; "]),
        draft=draft,
        version=draft.version,
    )
    assert saved.subject == "B Bcc: x@evil.example"  # a line break cannot add a header
    assert saved.to == [PRAXIS]
    with pytest.raises(Conflict):
        outgoing_draft_save(
            user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(), draft=draft, version=draft.version
        )


def test_who_may_send_and_who_sees_what(account, sender):
    reader = UserFactory(username="leser")
    MembershipFactory(mailbox=account.mailbox, user=reader, role=Membership.Role.READER)
    colleague = UserFactory(username="kollege")
    MembershipFactory(mailbox=account.mailbox, user=colleague)
    stranger = UserFactory(username="fremd")
    MembershipFactory(mailbox=MailboxFactory(), user=stranger)

    assert list(sendable_mailboxes_for_user(sender)) == [account.mailbox]
    assert list(sendable_mailboxes_for_user(reader)) == []
    with pytest.raises(NotAllowed):
        outgoing_draft_save(user=reader, mailbox_id=account.mailbox_id, data=OutgoingData(subject="x"))
    with pytest.raises(NotAllowed):
        outgoing_draft_save(user=stranger, mailbox_id=account.mailbox_id, data=OutgoingData(subject="x"))

    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="x"))
    assert outgoing_get_for_user(sender, draft.pk).pk == draft.pk
    # A draft is its author's; a stranger learns nothing about the mailbox's mail.
    for other in (colleague, stranger):
        with pytest.raises(Http404):
            outgoing_get_for_user(other, draft.pk)
    assert list(drafts_for_user(sender)) == [draft]
    assert list(drafts_for_user(colleague)) == []
    with pytest.raises(NotAllowed):
        outgoing_discard(user=reader, outgoing=draft)
    outgoing_discard(user=sender, outgoing=draft)
    assert not OutgoingMessage.objects.filter(pk=draft.pk).exists()


def test_a_sent_message_is_visible_to_every_member_but_not_to_strangers(cm, account, sender, vzd, sent_tasks):
    stranger = UserFactory(username="fremd")
    colleague = UserFactory(username="kollege")
    MembershipFactory(mailbox=account.mailbox, user=colleague, role=Membership.Role.OBSERVER)
    draft = outgoing_draft_save(
        user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="x", to=[PRAXIS])
    )
    sent = outgoing_send(user=sender, draft=draft, version=draft.version)
    assert [o.pk for o in outgoing_list_for_user(colleague, mailbox=account.mailbox)] == [sent.pk]
    assert list(outgoing_list_for_user(stranger)) == []
    with pytest.raises(Http404):
        outgoing_get_for_user(stranger, sent.pk)
    with pytest.raises(NotAllowed):
        outgoing_discard(user=sender, outgoing=sent)


def test_attachment_names_and_types_are_cleaned(account, sender):
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    one = outgoing_attachment_add(user=sender, draft=draft, filename="C:\\Befunde\\Röntgen.pdf", content=b"%PDF")
    two = outgoing_attachment_add(
        user=sender, draft=draft, filename="x.eml", content=b"From: a", content_type="message/rfc822"
    )
    assert (one.filename, one.content_type) == ("Röntgen.pdf", "application/pdf")
    # Only a forward's original is a message/rfc822 part.
    assert two.content_type == "application/octet-stream"
    raw = build_mime(draft, message_id="<test@kim.local>")
    parsed = email.message_from_bytes(raw, policy=default)
    names = [p.get_filename() for p in parsed.iter_attachments()]
    assert names == ["Röntgen.pdf", "x.eml"]
    assert b"filename*=utf-8''R%C3%B6ntgen.pdf" in raw


def test_earztbrief_acknowledgement_is_offered_and_sent_once(cm, account, sender, vzd, sent_tasks):
    letter = _fetched(cm, account, simple_mail("Arztbrief", X_KIM_Dienstkennung="Arztbrief;VHitG-Versand;V1.2"))
    plain = _fetched(cm, account, simple_mail("Frage"))
    assert acknowledgement_offered(letter) and not acknowledgement_offered(plain)
    ack = outgoing_acknowledge(user=sender, message=letter)
    assert ack.state == OutgoingMessage.State.QUEUED
    assert ack.kind == OutgoingMessage.Kind.ACKNOWLEDGEMENT
    assert outgoing_acknowledge(user=sender, message=letter).pk == ack.pk
    assert not acknowledgement_offered(letter)
    assert outgoing_deliver(outgoing_id=ack.pk) == OutgoingMessage.State.SENT
    wire = email.message_from_bytes(cm.sent_messages()[-1].raw, policy=default)
    assert wire["X-KIM-Dienstkennung"] == "Arztbrief;Eingangsbestaetigung;V1.2"
    assert wire["In-Reply-To"] == letter.message_id and wire["To"] == PRAXIS
    assert cm.header_violations() == []
    assert AuditEvent.objects.filter(action="outgoing.acknowledged", actor_id=sender.pk).count() == 1
    # Shown in the letter's conversation.
    assert [(i.is_sent, (i.outgoing or i.message).pk) for i in thread_for_user(sender, letter)] == [
        (False, letter.pk),
        (True, ack.pk),
    ]
    with pytest.raises(NotAllowed):
        outgoing_acknowledge(user=sender, message=plain)


def test_an_acknowledgement_is_written_in_german_whatever_language_the_sender_reads(
    cm, account, sender, vzd, sent_tasks
):
    letter = _fetched(cm, account, simple_mail("Arztbrief", X_KIM_Dienstkennung="Arztbrief;VHitG-Versand;V1.2"))
    with translation.override("en"):
        ack = outgoing_acknowledge(user=sender, message=letter)
    assert ack.subject.startswith("Eingangsbestätigung")
    assert ack.body.startswith("Eingangsbestätigung: Ihr eArztbrief")


def test_automatic_acknowledgement_per_mailbox(cm, account, sender, vzd, sent_tasks):
    type(account.mailbox).objects.filter(pk=account.mailbox_id).update(auto_acknowledge_arztbrief=True)
    letter = _fetched(cm, account, simple_mail("Arztbrief", X_KIM_Dienstkennung="Arztbrief;VHitG-Versand;V1.0"))
    assert ("mailbox.tasks.outgoing_acknowledge_auto", (letter.pk,)) in sent_tasks
    ack = acknowledgement_auto(message_id=letter.pk)
    assert ack is not None and ack.author is None and ack.state == OutgoingMessage.State.QUEUED
    assert ack.dienstkennung == "Arztbrief;Eingangsbestaetigung;V1.0"
    assert AuditEvent.objects.get(action="outgoing.acknowledged").details["automatic"] is True


def test_outbox_changes_are_broadcast_after_commit_with_ids_only(cm, account, sender, vzd, sent_tasks, monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "send_to_group", lambda group, event: sent.append((group, event)))
    draft = outgoing_draft_save(
        user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="x", to=[PRAXIS])
    )
    outgoing = outgoing_send(user=sender, draft=draft, version=draft.version)
    outgoing_deliver(outgoing_id=outgoing.pk)
    changes = [e for g, e in sent if e["type"] == "outgoing.changed"]
    assert {g for g, e in sent if e["type"] == "outgoing.changed"} == {f"mailbox.{account.mailbox_id}"}
    assert set(changes[-1]) == {"type", "mailbox_id", "outgoing_id", "seq"}
    # draft, queued, sending, sent
    assert len(changes) >= 4 and all(e["outgoing_id"] == outgoing.pk for e in changes)


def test_a_draft_whose_attachment_bytes_are_gone_is_not_queued(cm, account, sender, vzd, sent_tasks):
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    attachment = outgoing_attachment_add(user=sender, draft=draft, filename="a.pdf", content=b"%PDF-weg")
    blob_path(attachment.sha256).unlink()
    draft.refresh_from_db()
    with pytest.raises(DraftInvalid):
        outgoing_send(user=sender, draft=draft, version=draft.version)
    draft.refresh_from_db()
    assert draft.state == OutgoingMessage.State.DRAFT and sent_tasks == []
