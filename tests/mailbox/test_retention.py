"""Retention: content of done messages deleted N days after "erledigt"; legal hold; dry run equals the real run."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.utils import timezone

from kimportal.errors import NotAllowed
from mailbox.models import Attachment, Membership, Message, Note, Notification
from mailbox.services.audit import AuditEvent  # whichever app holds the table
from mailbox.services.ingest import message_ingest
from mailbox.services.retention import DELETED_SUBJECT, message_legal_hold_set, retention_run
from mailbox.storage import blob_path
from tests.mailbox.conftest import simple_mail
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def _done(message: Message, days_ago: float) -> Message:
    Message.objects.filter(pk=message.pk).update(state=Message.State.DONE, done_at=NOW - timedelta(days=days_ago))
    # It came before it was done: its bytes have been idle since (retention leaves bytes stored lately alone).
    idle_since = time.time() - days_ago * 86400
    for sha in [message.raw_sha256, *message.attachments.values_list("sha256", flat=True)]:
        os.utime(blob_path(sha), (idle_since, idle_since))
    return Message.objects.get(pk=message.pk)


def _blobs(message: Message) -> list[str]:
    return [message.raw_sha256, *message.attachments.values_list("sha256", flat=True)]


def _exists(sha: str) -> bool:
    return blob_path(sha).exists()


def _manager():
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def test_dry_run_equals_the_real_run_and_the_blobs_are_really_gone():
    box = MailboxFactory(retention_days_after_done=30)
    other_box = MailboxFactory(retention_days_after_done=30)
    # Due: a letter with a PDF whose bytes a second, still open message shares (same mail twice).
    shared_due = _done(message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF), 40)
    still_open = message_ingest(mailbox=box, uidl="b", raw=MAIL_WITH_PDF)
    # Due, its blobs its own; with a note and a notification that quote the patient.
    schmidt = simple_mail("Befund Schmidt", body="Hb 9,1")
    alone = _done(message_ingest(mailbox=box, uidl="c", raw=schmidt), 31)
    author = UserFactory()
    Note.objects.create(message=alone, author=author, body="Patient Schmidt angerufen")
    Notification.objects.create(user=author, kind="assigned", message=alone, text="„Befund Schmidt“")
    # Past the period but under legal hold; and one done too recently.
    held = message_ingest(mailbox=box, uidl="d", raw=simple_mail("Gutachten"))
    Message.objects.filter(pk=held.pk).update(legal_hold=True)
    held = _done(held, 100)
    recent = _done(message_ingest(mailbox=box, uidl="e", raw=simple_mail("Neu")), 29)
    # The same mail in another mailbox, not yet due there: the run of `box` must not take its bytes.
    foreign = _done(message_ingest(mailbox=other_box, uidl="x", raw=schmidt), 1)
    assert foreign.raw_sha256 == alone.raw_sha256
    alone_blobs, shared_blobs = _blobs(alone), _blobs(shared_due)
    pdf_size = shared_due.attachments.get().size

    dry = retention_run(mailbox=box, dry_run=True, now=NOW)
    # Nothing changed by the dry run.
    assert all(_exists(sha) for sha in alone_blobs + shared_blobs)
    assert Message.objects.filter(content_deleted_at__isnull=False).count() == 0
    assert not AuditEvent.objects.filter(action__startswith="retention.").exists()

    real = retention_run(mailbox=box, dry_run=False, now=NOW)

    assert dry.figures() == real.figures()
    assert real.message_ids == sorted([shared_due.pk, alone.pk])
    assert (real.messages, real.attachments, real.notes, real.held) == (2, 1, 1, 1)
    assert real.bytes == shared_due.size + pdf_size + alone.size
    # Shared with the open message and with the other mailbox: every blob stays, so none is counted.
    assert real.blobs == 0
    assert all(_exists(sha) for sha in alone_blobs + shared_blobs)

    for message in (shared_due, alone):
        message.refresh_from_db()
        assert (message.subject, message.text_body, message.html_body) == (DELETED_SUBJECT, "", "")
        assert message.content_deleted_at == NOW
        assert not message.attachments.exists() and message.attachment_count == 0
        # Metadata for the audit and the lists stays.
        assert message.from_address == "praxis@praxis-test.kim.telematik-test"
        assert message.raw_sha256 and message.state == Message.State.DONE
    assert not Note.objects.filter(message=alone).exists()
    assert not Notification.objects.filter(message=alone).exists()
    assert AuditEvent.objects.filter(action="retention.deleted").count() == 2
    event = AuditEvent.objects.get(action="retention.deleted", message_id=shared_due.pk)
    assert event.details["attachments"] == 1 and event.details["raw_sha256"] == shared_due.raw_sha256
    assert AuditEvent.objects.filter(action="retention.run", mailbox_id=box.pk).count() == 1
    for untouched in (still_open, held, recent, foreign):
        fresh = Message.objects.get(pk=untouched.pk)
        assert fresh.content_deleted_at is None and fresh.subject == untouched.subject

    # Once the open message and the other mailbox's copy go the same way, the shared bytes go too.
    _done(still_open, 45)
    Message.objects.filter(pk=foreign.pk).update(done_at=NOW - timedelta(days=60))
    dry = retention_run(mailbox=box, dry_run=True, now=NOW)
    real = retention_run(mailbox=box, dry_run=False, now=NOW)
    assert dry.figures() == real.figures()
    assert real.message_ids == [still_open.pk]
    # The raw mail and the PDF: no row keeping content names them any more.
    assert real.blobs == 2
    assert not any(_exists(sha) for sha in shared_blobs)
    assert all(_exists(sha) for sha in alone_blobs)  # still the other mailbox's until its own run
    other = retention_run(mailbox=other_box, dry_run=False, now=NOW)
    assert other.blobs == 1 and not _exists(alone.raw_sha256)
    # A second run finds nothing left to do.
    assert retention_run(mailbox=box, dry_run=False, now=NOW).messages == 0


def test_a_mailbox_without_a_period_keeps_everything():
    box = MailboxFactory()
    message = _done(message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF), 3650)
    report = retention_run(mailbox=box, dry_run=False, now=NOW)
    assert report.messages == 0 and report.days is None
    assert _exists(message.raw_sha256)


def test_reopening_stops_the_clock_and_a_hold_set_between_plan_and_run_wins():
    box = MailboxFactory(retention_days_after_done=7)
    user = UserFactory()
    MembershipFactory(mailbox=box, user=user, role=Membership.Role.OWNER)
    message = _done(message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF), 8)
    assert retention_run(mailbox=box, dry_run=True, now=NOW).message_ids == [message.pk]
    message_legal_hold_set(user=user, message=message, hold=True, reason="Az. 12/26")
    report = retention_run(mailbox=box, dry_run=False, now=NOW)
    assert (report.messages, report.held) == (0, 1)
    assert Attachment.objects.filter(message=message).exists() and _exists(message.raw_sha256)


def test_legal_hold_is_for_owners_and_managers_and_audited():
    box = MailboxFactory()
    owner, processor, manager = UserFactory(), UserFactory(), _manager()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=box, user=processor, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF)

    with pytest.raises(NotAllowed):
        message_legal_hold_set(user=processor, message=message, hold=True)
    assert not Message.objects.get(pk=message.pk).legal_hold

    message_legal_hold_set(user=owner, message=message, hold=True, reason="Klage")
    assert Message.objects.get(pk=message.pk).legal_hold
    message_legal_hold_set(user=manager, message=message, hold=False)
    assert not Message.objects.get(pk=message.pk).legal_hold
    actions = list(
        AuditEvent.objects.filter(message_id=message.pk).order_by("at", "id").values_list("action", "actor_id")
    )
    assert actions == [("message.legal_hold_set", owner.pk), ("message.legal_hold_released", manager.pk)]


def test_done_at_follows_the_state():
    from mailbox.services.states import message_set_state

    box = MailboxFactory()
    user = UserFactory()
    MembershipFactory(mailbox=box, user=user, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF)
    done = message_set_state(user=user, message=message, version=message.version, state=Message.State.DONE)
    assert Message.objects.get(pk=message.pk).done_at is not None
    message_set_state(user=user, message=done, version=done.version, state=Message.State.IN_PROGRESS)
    assert Message.objects.get(pk=message.pk).done_at is None


def test_the_command_dry_runs_by_default(capsys):
    box = MailboxFactory(retention_days_after_done=1, display_name="Aufnahme")
    message = _done(message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF), 2)
    call_command("retention_run")
    assert "Aufnahme" in capsys.readouterr().out
    assert Message.objects.get(pk=message.pk).content_deleted_at is None
    call_command("retention_run", "--delete")
    assert Message.objects.get(pk=message.pk).content_deleted_at is not None
    assert not _exists(message.raw_sha256)


# --- pages -----------------------------------------------------------------------------------------------------


def test_the_manager_page_shows_the_dry_run_and_deletes_only_what_was_confirmed(client):
    from django.urls import reverse

    box = MailboxFactory(retention_days_after_done=30, display_name="Aufnahme")
    message = _done(message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF), 40)
    owner, manager = UserFactory(), _manager()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    page_url = reverse("manage:retention")
    delete_url = reverse("manage:retention-delete", args=[box.pk])

    client.force_login(owner)
    assert client.get(page_url).status_code == 404

    client.force_login(manager)
    page = client.get(page_url).content.decode()
    assert "Aufnahme" in page and "Inhalt von 1 Nachricht jetzt löschen" in page
    plan = page.split('name="plan" value="')[1].split('"')[0]

    # Something changed since the report was shown: a second message became due. Nothing is deleted.
    later = _done(message_ingest(mailbox=box, uidl="b", raw=simple_mail("Neu")), 31)
    assert client.post(delete_url, {"plan": plan}).status_code == 302
    assert Message.objects.filter(content_deleted_at__isnull=False).count() == 0

    plan = client.get(page_url).content.decode().split('name="plan" value="')[1].split('"')[0]
    client.post(delete_url, {"plan": plan})
    assert set(Message.objects.filter(content_deleted_at__isnull=False).values_list("pk", flat=True)) == {
        message.pk,
        later.pk,
    }
    assert AuditEvent.objects.filter(action="retention.deleted", actor=manager).count() == 2
    assert not _exists(message.raw_sha256)

    # The period itself: set, audited; bad input refused in German with nothing changed.
    client.post(reverse("manage:retention-days", args=[box.pk]), {"days": "90"})
    box.refresh_from_db()
    assert box.retention_days_after_done == 90
    response = client.post(reverse("manage:retention-days", args=[box.pk]), {"days": "-3"}, follow=True)
    box.refresh_from_db()
    assert box.retention_days_after_done == 90
    assert "muss größer oder gleich 1 sein" in response.content.decode()
    client.post(reverse("manage:retention-days", args=[box.pk]), {"days": ""})
    box.refresh_from_db()
    assert box.retention_days_after_done is None
    assert AuditEvent.objects.filter(action="mailbox.retention_changed", mailbox=box).count() == 2


def test_the_message_page_offers_the_hold_to_owners_and_tells_when_content_is_gone(client):
    from django.urls import reverse

    box = MailboxFactory(retention_days_after_done=1)
    owner, reader = UserFactory(), UserFactory()
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=box, user=reader, role=Membership.Role.READER)
    message = message_ingest(mailbox=box, uidl="a", raw=MAIL_WITH_PDF)
    detail = reverse("mailbox:message-detail", args=[message.pk])

    client.force_login(reader)
    assert "legal-hold-heading" not in client.get(detail).content.decode()
    assert client.post(reverse("mailbox:message-legal-hold", args=[message.pk]), {"hold": "on"}).status_code == 403

    client.force_login(owner)
    assert "Aufbewahrungssperre setzen" in client.get(detail).content.decode()
    client.post(reverse("mailbox:message-legal-hold", args=[message.pk]), {"hold": "on", "reason": "Az. 7"})
    assert Message.objects.get(pk=message.pk).legal_hold
    assert "Aufbewahrungssperre aufheben" in client.get(detail).content.decode()
    client.post(reverse("mailbox:message-legal-hold", args=[message.pk]), {"reason": "erledigt"})
    assert not Message.objects.get(pk=message.pk).legal_hold

    _done(message, 2)
    retention_run(mailbox=box, dry_run=False, now=NOW)
    page = client.get(detail).content.decode()
    assert 'id="content-deleted"' in page and "Entlassbrief" not in page and "legal-hold-heading" not in page
    assert client.get(reverse("mailbox:message-raw", args=[message.pk])).status_code == 410
    assert client.get(reverse("mailbox:attachment-download", args=[message.pk, 1])).status_code == 404


def test_bytes_that_sent_mail_or_a_draft_still_names_are_kept():
    """A forward draft carries the original's bytes as its attachment; the sent copy keeps its own bytes."""
    from mailbox.services.compose import outgoing_forward_start

    box = MailboxFactory(retention_days_after_done=30)
    sender = UserFactory()
    MembershipFactory(mailbox=box, user=sender, role=Membership.Role.PROCESSOR)
    letter = message_ingest(mailbox=box, uidl="f", raw=simple_mail("Befund Weber", body="Kalium 5,9"))
    forward = outgoing_forward_start(user=sender, message=letter)
    assert letter.raw_sha256 in set(forward.attachments.values_list("sha256", flat=True))
    letter = _done(letter, 40)

    retention_run(mailbox=box, dry_run=False, now=NOW)
    letter.refresh_from_db()
    assert letter.content_deleted_at is not None  # the message's own content went as due
    assert _exists(letter.raw_sha256)  # but the draft still needs the bytes
