"""Text a person pastes or a stranger sends that must neither stop a send nor change what the headers say.

A subject pasted from a word processor carries a vertical tab for a manual line break. Python's email package
refuses every character str.splitlines breaks at in a header value, so without cleaning such a draft could be
saved but never sent (a server error at "Senden"). Attachment names come from other programs too (the upload
form cleans them; the service must not rely on every caller doing so).
"""

from __future__ import annotations

import email
from email.policy import default

import pytest

from mailbox.forms_compose import DraftForm
from mailbox.models import Message, OutgoingMessage
from mailbox.services.compose import (
    MAX_BODY,
    MAX_SUBJECT,
    OutgoingData,
    build_mime,
    outgoing_attachment_add,
    outgoing_draft_save,
    outgoing_reply_start,
)
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver, outgoing_send
from tests.mailbox.conftest import HOSPITAL, PRAXIS

pytestmark = pytest.mark.django_db(transaction=True)

# Vertical tab (Word's manual line break), form feed, file separator, NEL, line and paragraph separator.
BREAKS = ["\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\u2029"]


def _wire(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=default)  # type: ignore[return-value]


@pytest.mark.parametrize("brk", BREAKS, ids=[f"U+{ord(c):04X}" for c in BREAKS])
def test_a_pasted_line_break_in_the_subject_is_sent_as_a_space(account, sender, brk):
    draft = outgoing_draft_save(
        user=sender,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject=f"Befund{brk}Kardiologie\r\nBcc: x@evil.example", to=[PRAXIS]),
    )
    assert draft.subject == "Befund Kardiologie Bcc: x@evil.example"
    wire = _wire(build_mime(draft, message_id="<t@kim.local>"))
    assert wire["Subject"] == "Befund Kardiologie Bcc: x@evil.example"
    assert wire["Bcc"] is None


def test_a_draft_stored_with_a_line_separator_is_still_sent(cm, account, sender, vzd, sent_tasks):
    # Drafts saved before the subject was cleaned, and the mailbox's own name, reach the MIME as they are.
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    OutgoingMessage.objects.filter(pk=draft.pk).update(subject="Befund\u2028Kardiologie")
    type(account.mailbox).objects.filter(pk=account.mailbox_id).update(display_name="Station\x0bKardiologie")
    draft.refresh_from_db()
    queued = outgoing_send(user=sender, draft=draft, version=draft.version)
    assert outgoing_deliver(outgoing_id=queued.pk) == OutgoingMessage.State.SENT
    wire = _wire(cm.sent_messages()[-1].raw)
    assert wire["Subject"] == "Befund Kardiologie"
    assert wire["From"].addresses[0].display_name == "Station Kardiologie"


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("Befund\u202efdp.exe", "Befundfdp.exe"),  # the override would show it as "Befundexe.pdf"
        ("Bef\u2066und\u2069.pdf", "Befund.pdf"),
        ("Brief\r\nX-Evil: 1.pdf", "BriefX-Evil: 1.pdf"),
        ("Röntgen\x00.pdf", "Röntgen.pdf"),
        ("C:\\Befunde\\..", "Anhang"),
        ("../../etc/passwd", "passwd"),
        ("\u202e", "Anhang"),
    ],
)
def test_attachment_names_lose_controls_and_direction_overrides(account, sender, typed, kept):
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    attachment = outgoing_attachment_add(user=sender, draft=draft, filename=typed, content=b"%PDF-1.7")
    assert attachment.filename == kept
    (part,) = _wire(build_mime(draft, message_id="<t@kim.local>")).iter_attachments()
    assert part.get_filename() == kept


def test_a_name_of_a_thousand_characters_keeps_its_extension(account, sender):
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    attachment = outgoing_attachment_add(user=sender, draft=draft, filename="B" * 1000 + ".pdf", content=b"%PDF")
    assert len(attachment.filename) == 255 and attachment.filename.endswith("B.pdf")
    assert attachment.content_type == "application/pdf"


def test_a_reply_to_a_huge_letter_is_a_draft_the_form_can_save(cm, account, sender):
    # Quoted whole, a long text (a pasted lab export) and a long subject made a draft whose every autosave and
    # "Senden" the form refused: the reply could not be sent without first cutting the quote by hand.
    raw = (
        f"From: Praxis Test <{PRAXIS}>\r\nTo: {HOSPITAL}\r\nSubject: {'Laborwerte ' * 600}\r\n"
        "Message-ID: <lang-1@praxis-test.kim.telematik-test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode() + b"Natrium 140 mmol/l; Kalium 4,1 mmol/l\r\n" * 40_000
    cm.deliver(HOSPITAL, raw)
    assert account_fetch(account_id=account.pk).error == ""
    letter = Message.objects.get(mailbox=account.mailbox)
    assert len(letter.text_body) > MAX_BODY
    draft = outgoing_reply_start(user=sender, message=letter)
    assert len(draft.subject) <= MAX_SUBJECT and len(draft.body) <= MAX_BODY
    assert draft.body.rstrip().endswith("(Zitat gekürzt; die vollständige Nachricht steht im Postfach.)")
    form = DraftForm(
        {
            "mailbox": account.mailbox_id,
            "subject": draft.subject,
            "body": draft.body,
            "to": draft.to,
            "dienstkennung": draft.dienstkennung,
        },
        mailboxes=[account.mailbox],
    )
    assert form.is_valid(), form.errors
