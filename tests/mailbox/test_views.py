from __future__ import annotations

import re

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.dienstkennung import dienstkennung_badges
from mailbox.models import MessageRead, Presence
from mailbox.services.assignment import message_assign
from mailbox.services.claims import message_release
from mailbox.services.ingest import message_ingest
from mailbox.services.notes import note_add
from tests.mailbox.corpus import HOSTILE_CORPUS
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

# What every attachment is served under: an opaque origin, nothing loaded but itself, never framed.
ATTACHMENT_CSP = "sandbox; default-src 'none'; img-src 'self' data:; frame-ancestors 'none'"

pytestmark = pytest.mark.django_db


@pytest.fixture
def member():
    return UserFactory(username="station")


@pytest.fixture
def mailbox(member):
    box = MailboxFactory(display_name="Station Kardiologie")
    MembershipFactory(mailbox=box, user=member)
    return box


@pytest.fixture
def message(mailbox):
    return message_ingest(mailbox=mailbox, uidl="u1", raw=MAIL_WITH_PDF)


def test_login_required(client):
    response = client.get(reverse("mailbox:inbox"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_is_german(client):
    response = client.get(reverse("login"))
    assert "Anmelden" in response.content.decode()


def test_inbox_lists_messages_of_my_mailboxes(client, member, message, django_assert_max_num_queries):
    other_box = MailboxFactory()
    message_ingest(mailbox=other_box, uidl="x", raw=MAIL_WITH_PDF.replace(b"Entlassbrief", b"Geheim"))
    client.force_login(member)
    # Session, user, the user's roles (read once per request, in place of a subquery in each of the others),
    # page, labels, reads, presence, navigation, counters, the managers' link.
    with django_assert_max_num_queries(10):
        response = client.get(reverse("mailbox:inbox"))
    html = response.content.decode()
    assert "Entlassbrief Müller" in html
    assert "Geheim" not in html
    assert "eArztbrief" in html
    assert 'class="msg-row unread state-new"' in html


def test_list_query_count_does_not_grow_with_messages(client, member, mailbox, django_assert_max_num_queries):
    for i in range(30):
        message_ingest(mailbox=mailbox, uidl=f"n{i}", raw=MAIL_WITH_PDF)
    client.force_login(member)
    cache.clear()  # the worst case: the Dienstkennung labels are read too
    # Session, user, the user's roles (read once per request), mailbox, page, labels, reads, presence,
    # navigation, counters, the managers' link.
    with django_assert_max_num_queries(11):
        client.get(reverse("mailbox:mailbox-messages", args=[mailbox.pk]))


def test_htmx_page_request_returns_only_the_list(client, member, message, mailbox):
    client.force_login(member)
    response = client.get(
        reverse("mailbox:mailbox-messages", args=[mailbox.pk]), HTTP_HX_REQUEST="true", HTTP_HX_TARGET="message-list"
    )
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="message-list">')
    assert "<html" not in html


def test_unknown_dienstkennung_is_shown_as_is(client, member, mailbox):
    raw = MAIL_WITH_PDF.replace(b"Arztbrief;VHitG-Versand;V1.2", b"Neuartig;Test;V9.9")
    message_ingest(mailbox=mailbox, uidl="u2", raw=raw)
    client.force_login(member)
    assert "Neuartig;Test;V9.9" in client.get(reverse("mailbox:inbox")).content.decode()


def test_message_detail_marks_read_and_audits(client, member, message):
    client.force_login(member)
    response = client.get(reverse("mailbox:message-detail", args=[message.pk]))
    html = response.content.decode()
    assert "Sicher empfangen" in html
    assert "Entlassbrief Müller.pdf" in html
    assert MessageRead.objects.filter(user=member, message=message).exists()
    assert AuditEvent.objects.filter(actor_id=member.pk, action="message.viewed", message_id=message.pk).exists()


def _detail_queries(client, pk):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("mailbox:message-detail", args=[pk]))
    assert response.status_code == 200
    return [q["sql"] for q in queries.captured_queries], response.content.decode()


def test_message_detail_reads_the_row_once_and_skips_empty_lists(client, member, message):
    client.force_login(member)
    dienstkennung_badges()  # cached across requests: not this page's query
    sql, html = _detail_queries(client, message.pk)
    # Session, user (with the managers' flag), the user's roles; the message's row (with its mailbox, assignee,
    # lock holder, its attachments and which other lists have rows); opening: the read (returning the readers),
    # the claim (UPDATE … RETURNING its row), both audit events with one INSERT; then navigation (with the header's
    # counters), members to assign to, the signature panel's rows — no notes, responsibility history or presence
    # while the row says there are none. (In a test's transaction each atomic block adds a savepoint and its
    # release.)
    statements = [s for s in sql if "SAVEPOINT" not in s]
    assert len(statements) == 10, "\n".join(statements)
    assert not any(s.startswith(('SELECT "mailbox_attachment".', 'SELECT "mailbox_messageread".')) for s in sql)
    assert sum(s.startswith('SELECT "mailbox_message".') for s in statements) == 1  # the row; the claim returns its
    lists = ('SELECT "mailbox_note".', 'SELECT "mailbox_assignmentperiod".', 'SELECT "mailbox_presence".')
    assert not any(s.startswith(lists) for s in statements)
    assert "Sie bearbeiten diese Nachricht." in html  # the lock the claim took, without reading the row again
    assert "Entlassbrief Müller.pdf" in html

    # With a note, a responsibility and someone else's open page, those lists are read and shown.
    other = UserFactory(username="kollegin", first_name="Karla", last_name="Kollegin")
    MembershipFactory(mailbox=message.mailbox, user=other)
    message_release(user=member, message=message)
    note_add(user=other, message=message, body="Bitte Befund prüfen")
    message.refresh_from_db()
    message_assign(user=other, message=message, version=message.version, assignee_id=other.pk, note="")
    Presence.objects.create(message=message, user=other, channel_name="c1", page_token="p")
    sql, html = _detail_queries(client, message.pk)
    statements = [s for s in sql if "SAVEPOINT" not in s]
    assert len(statements) == 13, "\n".join(statements)
    assert "Bitte Befund prüfen" in html
    assert 'id="work-assignee">Karla Kollegin<' in html
    assert "Geöffnet von:" in html


def test_the_detail_rows_attachments_are_those_the_orm_loads_in_order(member, message):
    from mailbox import selectors
    from mailbox.models import Attachment

    Attachment.objects.create(
        message=message,
        position=7,
        filename="Bild ä.png",
        content_type="image/png",
        size=2**40,
        sha256="a" * 64,
        content_id="<bild@klinik>",
    )
    Attachment.objects.create(
        message=message, position=3, filename="b.txt", content_type="text/plain", size=0, sha256="b"
    )
    # An image the HTML shows is not listed.
    Attachment.objects.create(
        message=message, position=5, filename="logo.png", content_type="image/png", size=1, sha256="c" * 64,
        content_id="<logo@klinik>", is_inline=True,
    )  # fmt: skip
    fields = [f.attname for f in Attachment._meta.concrete_fields]
    shown = selectors.message_detail_for_user(member, message.pk).attachment_list
    expected = list(Attachment.objects.filter(message=message, is_inline=False).order_by("position"))
    assert [[getattr(a, f) for f in fields] for a in shown] == [[getattr(a, f) for f in fields] for a in expected]
    assert [a.position for a in shown] == sorted(a.position for a in shown) and len(shown) == 3
    Attachment.objects.filter(message=message).delete()
    assert selectors.message_detail_for_user(member, message.pk).attachment_list == []


def test_someone_elses_message_is_404(client, message):
    stranger = UserFactory(username="fremd")
    MembershipFactory(user=stranger)  # member of another mailbox
    client.force_login(stranger)
    for name, args in [
        ("mailbox:message-detail", [message.pk]),
        ("mailbox:message-html", [message.pk]),
        ("mailbox:message-raw", [message.pk]),
        ("mailbox:attachment-download", [message.pk, 1]),
        ("mailbox:mailbox-messages", [message.mailbox_id]),
    ]:
        assert client.get(reverse(name, args=args)).status_code == 404, name
    assert client.post(reverse("mailbox:mailbox-fetch", args=[message.mailbox_id])).status_code == 404
    # Nothing but the sign-in itself: no access to the message was recorded, because there was none.
    assert not AuditEvent.objects.filter(actor_id=stranger.pk).exclude(action__startswith="signin.").exists()


def test_attachment_download_has_safe_disposition_and_is_audited(client, member, message):
    client.force_login(member)
    att = message.attachments.get()
    response = client.get(reverse("mailbox:attachment-download", args=[message.pk, att.position]))
    assert response["Content-Disposition"].startswith("attachment;")
    assert "filename*=utf-8''Entlassbrief%20M%C3%BCller.pdf" in response["Content-Disposition"]
    assert b"".join(response.streaming_content).startswith(b"%PDF")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert AuditEvent.objects.filter(action="attachment.downloaded", message_id=message.pk).exists()


def test_pdf_is_shown_inline_on_request(client, member, message):
    client.force_login(member)
    att = message.attachments.get()
    url = reverse("mailbox:attachment-download", args=[message.pk, att.position]) + "?inline=1"
    response = client.get(url)
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith("inline;")
    # Sandboxed like every attachment: Chromium's viewer renders it all the same (tests/e2e/test_attachments.py).
    assert response["Content-Security-Policy"] == ATTACHMENT_CSP
    assert response["X-Content-Type-Options"] == "nosniff"
    assert AuditEvent.objects.get(action="attachment.downloaded", message_id=message.pk).details["inline"] is True


@pytest.mark.parametrize(
    ("filename", "content_type", "served"),
    [
        ("werte.txt", "text/plain", "text/plain; charset=utf-8"),
        ("roentgen.png", "image/png", "image/png"),
        ("foto.jpg", "image/jpeg", "image/jpeg"),
        ("skizze.gif", "image/gif", "image/gif"),
        ("befund.pdf", "application/pdf", "application/pdf"),
        ("seite.html", "text/html", "application/octet-stream"),
        ("bild.svg", "image/svg+xml", "application/octet-stream"),
    ],
)
def test_every_attachment_is_served_sandboxed_and_unsniffed(client, member, message, filename, content_type, served):
    from mailbox.models import Attachment
    from mailbox.storage import blob_put

    data = b"<script>alert(1)</script>"
    Attachment.objects.create(
        message=message, position=9, filename=filename, content_type=content_type, size=len(data), sha256=blob_put(data)
    )
    client.force_login(member)
    for query in ("", "?inline=1"):
        response = client.get(reverse("mailbox:attachment-download", args=[message.pk, 9]) + query)
        assert response["Content-Type"] == served
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Content-Security-Policy"] == ATTACHMENT_CSP
        shown = query and served != "application/octet-stream"
        assert response["Content-Disposition"].startswith("inline;" if shown else "attachment;")
        assert b"".join(response.streaming_content) == data


def test_html_attachment_is_never_served_as_html(client, member, mailbox):
    raw = MAIL_WITH_PDF.replace(b"application/pdf", b"text/html").replace(b".pdf", b".html")
    msg = message_ingest(mailbox=mailbox, uidl="h", raw=raw)
    client.force_login(member)
    att = msg.attachments.get()
    response = client.get(reverse("mailbox:attachment-download", args=[msg.pk, att.position]) + "?inline=1")
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Disposition"].startswith("attachment;")


def test_hostile_html_is_sanitized_and_sandboxed(client, member, mailbox):
    name = next(n for n in HOSTILE_CORPUS if "html" in n)
    msg = message_ingest(mailbox=mailbox, uidl="evil", raw=HOSTILE_CORPUS[name]())
    client.force_login(member)
    detail = client.get(reverse("mailbox:message-detail", args=[msg.pk])).content.decode()
    assert 'sandbox=""' in detail
    response = client.get(reverse("mailbox:message-html", args=[msg.pk]))
    assert AuditEvent.objects.filter(actor_id=member.pk, action="message.html_viewed", message_id=msg.pk).exists()
    body = response.content.decode().lower()
    assert "<script" not in body and "onerror" not in body and "javascript:" not in body
    assert response["Content-Security-Policy"].startswith("sandbox;")


def test_integrity_failure_is_stated_plainly(client, member, mailbox):
    raw = MAIL_WITH_PDF.replace(b"X-KIM-IntegrityCheckResult: 01", b"X-KIM-IntegrityCheckResult: 08")
    msg = message_ingest(mailbox=mailbox, uidl="bad", raw=raw)
    client.force_login(member)
    inbox = client.get(reverse("mailbox:inbox")).content.decode()
    assert "Sicherheitswarnung" in inbox
    detail = client.get(reverse("mailbox:message-detail", args=[msg.pk])).content.decode()
    assert "Integritätsprüfung ist fehlgeschlagen" in detail
    assert "Sicher empfangen" not in detail


def test_malformed_message_is_flagged_and_raw_is_available(client, member, mailbox):
    name = next(n for n in HOSTILE_CORPUS if "boundary" in n)
    raw = HOSTILE_CORPUS[name]()
    msg = message_ingest(mailbox=mailbox, uidl="broken", raw=raw)
    assert msg.is_malformed
    client.force_login(member)
    detail = client.get(reverse("mailbox:message-detail", args=[msg.pk])).content.decode()
    assert "fehlerhaft aufgebaut" in detail
    source = client.get(reverse("mailbox:message-raw", args=[msg.pk]))
    assert source.content == raw


def test_english_is_available(client, member, message):
    client.force_login(member)
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    html = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    assert 'lang="en"' in html
    assert "Attachments" in html and "Anhänge" not in html
    assert "Received securely" in html


def test_pages_send_a_content_security_policy(client, member, message):
    client.force_login(member)
    csp = client.get(reverse("mailbox:inbox"))["Content-Security-Policy"]
    assert "script-src 'self' 'nonce-" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]


def test_german_is_the_default_whatever_the_browser_says(client, member, message):
    client.force_login(member)
    html = client.get(reverse("mailbox:inbox"), HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert 'lang="de"' in html
    assert "Posteingang" in html


def test_mine_lists_my_open_messages_across_mailboxes(client, member, mailbox):
    from mailbox.models import Message

    other_box = MailboxFactory(display_name="Aufnahme")
    MembershipFactory(mailbox=other_box, user=member)
    open_one = message_ingest(mailbox=mailbox, uidl="o1", raw=MAIL_WITH_PDF.replace(b"Entlassbrief", b"Offen"))
    done_one = message_ingest(mailbox=other_box, uidl="d1", raw=MAIL_WITH_PDF.replace(b"Entlassbrief", b"Fertig"))
    message_ingest(mailbox=other_box, uidl="n1", raw=MAIL_WITH_PDF.replace(b"Entlassbrief", b"Fremd"))
    Message.objects.filter(pk=open_one.pk).update(assignee=member, state="in_progress")
    Message.objects.filter(pk=done_one.pk).update(assignee=member, state="done")
    client.force_login(member)

    def listed(url: str) -> set[int]:
        return {int(pk) for pk in re.findall(r'id="msg-(\d+)"', client.get(url).content.decode())}

    # Exactly the open work assigned to me: not the finished one, not a colleague's, not an unassigned one.
    assert listed(reverse("mailbox:mine")) == {open_one.pk}
    assert listed(reverse("mailbox:mine") + "?state=done") == {done_one.pk}


def test_a_mail_dated_beyond_year_9999_does_not_break_the_inbox(client, member, mailbox):
    from tests.mailbox.corpus import make_extreme_dates

    msg = message_ingest(mailbox=mailbox, uidl="far-future", raw=make_extreme_dates())
    assert msg.date is None
    assert any("Datum" in p for p in msg.parse_problem_texts)
    client.force_login(member)
    response = client.get(reverse("mailbox:inbox"))
    assert response.status_code == 200
    assert "Datum am Ende der Zeit" in response.content.decode()


def test_private_pages_are_not_cached_and_fragments_vary(client, member, mailbox):
    client.force_login(member)
    response = client.get(reverse("mailbox:inbox"))
    assert response["Cache-Control"] == "no-store, private"
    assert "HX-Request" in response["Vary"]


def test_mention_at_the_end_of_a_sentence_notifies(member, mailbox):
    from mailbox.models import Notification
    from mailbox.services.notes import note_add

    anna = UserFactory(username="anna")
    MembershipFactory(mailbox=mailbox, user=anna)
    msg = message_ingest(mailbox=mailbox, uidl="mention", raw=MAIL_WITH_PDF)
    note_add(user=member, message=msg, body="Bitte prüfen, @anna.")
    assert Notification.objects.filter(user=anna, kind="mention").exists()


def test_notifications_are_shown_in_the_readers_language(client, member, mailbox):
    from mailbox.services.assignment import message_assign

    boss = UserFactory(username="chefin", first_name="Clara", last_name="Chef")
    MembershipFactory(mailbox=mailbox, user=boss, role="owner")
    msg = message_ingest(mailbox=mailbox, uidl="lang", raw=MAIL_WITH_PDF)
    message_assign(user=boss, message=msg, version=msg.version, assignee_id=member.pk, note="bitte heute")
    client.force_login(member)
    german = client.get(reverse("mailbox:notifications")).content.decode()
    assert "Clara Chef hat Ihnen „Entlassbrief Müller“ zugewiesen. – bitte heute" in german
    client.post(reverse("set_language"), {"language": "en", "next": "/"})
    english = client.get(reverse("mailbox:notifications")).content.decode()
    assert "Clara Chef assigned “Entlassbrief Müller” to you. – bitte heute" in english
    assert "hat Ihnen" not in english


def test_inline_cid_images_are_shown_in_the_html_body(client, member, mailbox):
    from tests.mailbox.corpus import make_html_with_inline_image

    msg = message_ingest(mailbox=mailbox, uidl="inline", raw=make_html_with_inline_image())
    client.force_login(member)
    body = client.get(reverse("mailbox:message-html", args=[msg.pk])).content.decode()
    assert 'src="data:image/png;base64,iVBORw0KGgo' in body
    assert "cid:" not in body
