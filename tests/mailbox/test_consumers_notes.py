"""A message page's socket sends the note list again when a note is added: read once, for the user's eyes only."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from mailbox import selectors
from mailbox.consumers import MessageConsumer
from mailbox.models import Membership
from mailbox.services.ingest import message_ingest
from mailbox.services.notes import note_add
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db


def _page(user, message_id: int) -> MessageConsumer:
    """A message page's consumer as connect() leaves it, for calling its rendering step directly."""
    socket = MessageConsumer()
    socket.user, socket.message_id, socket.language, socket.page_token = user, message_id, "de", ""
    return socket


@pytest.fixture
def ward():
    box = MailboxFactory()
    anna = UserFactory(username="anna", first_name="Anna", last_name="Alt")
    bert = UserFactory(username="bert", first_name="Bert", last_name="Bauer")
    for user in (anna, bert):
        MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="notes-1", raw=MAIL_WITH_PDF)
    note_add(user=bert, message=message, body="Befund liegt vor.")
    return box, anna, bert, message


def test_a_note_event_reads_the_message_once(ward):
    _box, anna, _bert, message = ward
    page = _page(anna, message.pk)
    page._render_lock("processor")  # whatever is read once per process is read now
    with CaptureQueriesContext(connection) as panel_only:
        page._render_lock("processor")
    with CaptureQueriesContext(connection) as with_notes:
        html = page._render_lock("processor", notes=True)
    assert '<div id="note-list" hx-swap-oob="true">' in html
    assert "Befund liegt vor." in html
    # The notes cost one query on top of the panel: the message's visibility was asked by the panel's read.
    assert len(with_notes) == len(panel_only) + 1


def test_an_ex_member_gets_no_notes(ward):
    box, anna, _bert, message = ward
    page = _page(anna, message.pk)
    Membership.objects.filter(mailbox=box, user=anna).delete()
    # The role the socket checked a moment before may still say "processor": the read itself refuses.
    assert page._render_lock("processor", notes=True) == ""


def test_the_notes_are_read_for_the_user_alone(ward):
    # The selector asks itself whether the user sees the message, whoever calls it with whichever message.
    box, anna, bert, message = ward
    outsider = UserFactory(username="extern")
    MembershipFactory(mailbox=MailboxFactory(), user=outsider, role=Membership.Role.OWNER)
    assert [note.body for note in selectors.note_list_for_user(anna, message.pk)] == ["Befund liegt vor."]
    assert selectors.note_list_for_user(outsider, message.pk) == []
    Membership.objects.filter(mailbox=box, user=bert).delete()
    assert selectors.note_list_for_user(bert, message.pk) == []  # their own note, in a mailbox they left


def test_the_sent_list_says_whose_each_note_is_in_the_pages_language(ward):
    # What portal.js writes into the page's live region when a colleague's note arrives (and whose it is, so that
    # the author's own page leaves it unsaid).
    _box, anna, bert, message = ward
    page = _page(anna, message.pk)
    german = page._render_lock("processor", notes=True)
    page.language = "en"
    english = page._render_lock("processor", notes=True)
    assert f'data-author="{bert.pk}" data-announce="Neue Notiz von Bert Bauer"' in german
    assert f'data-author="{bert.pk}" data-announce="New note from Bert Bauer"' in english
