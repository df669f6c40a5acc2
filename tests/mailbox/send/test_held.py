"""Queued mail of a switched-off mailbox or KIM account is held: not sent, not lost, said in German, sent once
the switch is on again, or taken back as a draft."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.errors import Conflict
from mailbox.models import KimAccount, Mailbox, Membership, OutgoingMessage
from mailbox.selectors.outbox import drafts_for_user, outgoing_list_for_user
from mailbox.services import members
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.manage import mailbox_set_active
from mailbox.services.outbox import (
    outgoing_deliver,
    outgoing_due,
    outgoing_release_held,
    outgoing_retry,
    outgoing_send,
    outgoing_withdraw,
)
from mailbox.views.compose import OUTBOX_STATES
from tests.mailbox.conftest import PRAXIS
from tests.mailbox.factories import MembershipFactory, UserFactory
from tests.mailbox.send.conftest import OUTSIDE

pytestmark = pytest.mark.django_db(transaction=True)


def _queued(user, account, to=(PRAXIS,)) -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=user, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=list(to))
    )
    return outgoing_send(user=user, draft=draft, version=draft.version)


def _manager():
    user = UserFactory(username="leitung")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def _copies(cm, outgoing: OutgoingMessage) -> int:
    return sum(1 for r in cm.sent_messages() if r.message_id == outgoing.message_id)


def test_mail_of_a_switched_off_mailbox_is_held_and_goes_out_when_it_is_on_again(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account)
    manager = _manager()
    mailbox_set_active(user=manager, mailbox=account.mailbox, active=False)

    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.HELD
    assert "Postfach" in outgoing.last_error_text and "abgeschaltet" in outgoing.last_error_text
    # The queued task runs anyway: nothing reaches the CM, nothing is lost, the beat does not pick it up.
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.HELD
    assert _copies(cm, outgoing) == 0
    assert outgoing.pk not in outgoing_due()
    assert outgoing.attempts.count() == 0
    assert AuditEvent.objects.filter(action="outgoing.held").count() == 1

    mailbox_set_active(user=manager, mailbox=account.mailbox, active=True)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.QUEUED and outgoing.last_error_text == ""
    assert sent_tasks[-1] == ("mailbox.tasks.outgoing_deliver", (outgoing.pk,))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _copies(cm, outgoing) == 1
    assert AuditEvent.objects.filter(action="outgoing.released_held").count() == 1


def test_mail_of_a_switched_off_account_is_held_at_the_next_try_and_the_author_sees_why(
    cm, account, sender, vzd, sent_tasks
):
    outgoing = _queued(sender, account)
    # Switched off elsewhere (the admin, another process): the delivery itself notices.
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)

    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.HELD
    assert _copies(cm, outgoing) == 0
    shown = outgoing_list_for_user(sender, states=OUTBOX_STATES).get(pk=outgoing.pk)
    assert shown.get_state_display() == "zurückgehalten"
    assert "KIM-Konto" in shown.last_error_text and "als Entwurf" in shown.last_error_text

    # Still off: the beat leaves it held.
    assert outgoing_release_held() == []
    KimAccount.objects.filter(pk=account.pk).update(is_active=True)
    assert outgoing_release_held() == [outgoing.pk]
    assert outgoing.pk in outgoing_due()
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _copies(cm, outgoing) == 1


def test_a_held_message_can_be_taken_back_as_a_draft_and_sent_later(cm, account, sender, vzd, sent_tasks, client):
    outgoing = _queued(sender, account)
    first_id = outgoing.message_id
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)
    outgoing_deliver(outgoing_id=outgoing.pk)

    client.force_login(sender)
    response = client.post(reverse("mailbox:outgoing-withdraw", args=[outgoing.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("mailbox:draft-edit", args=[outgoing.pk])
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DRAFT and outgoing.author == sender
    assert outgoing.message_id == "" and not outgoing.recipient_rows.exists()
    assert AuditEvent.objects.filter(action="outgoing.withdrawn", actor=sender).count() == 1
    # Nothing runs for it any more, also when the account is switched on.
    KimAccount.objects.filter(pk=account.pk).update(is_active=True)
    assert outgoing_release_held() == []
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.DRAFT

    again = outgoing_send(user=sender, draft=outgoing, version=outgoing.version)
    assert again.message_id != first_id
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _copies(cm, again) == 1


def test_a_message_some_recipients_already_got_is_not_taken_back(cm, account, sender, vzd, sent_tasks):
    cm.arm_rcpt_fault(OUTSIDE, "450")
    outgoing = _queued(sender, account, to=(PRAXIS, OUTSIDE))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(next_try_at=None)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.HELD

    with pytest.raises(Conflict):
        outgoing_withdraw(user=sender, outgoing=outgoing)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.HELD


def test_only_a_held_message_is_taken_back(cm, account, sender, vzd, sent_tasks):
    outgoing = _queued(sender, account)
    with pytest.raises(Conflict):
        outgoing_withdraw(user=sender, outgoing=outgoing)
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.QUEUED


def test_a_held_message_of_a_former_member_taken_back_is_the_draft_of_who_took_it(
    cm, account, sender, vzd, sent_tasks, client
):
    # The author leaves the mailbox while their letter is held; a colleague takes it back as a draft. It must not
    # become a draft of the former member that nobody sees.
    owner = UserFactory(username="chefin")
    MembershipFactory(mailbox=account.mailbox, user=owner, role=Membership.Role.OWNER)
    colleague = UserFactory(username="kollegin")
    MembershipFactory(mailbox=account.mailbox, user=colleague, role=Membership.Role.PROCESSOR)
    outgoing = _queued(sender, account)
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.HELD
    leaving = Membership.objects.get(mailbox=account.mailbox, user=sender)
    members.membership_remove(user=owner, mailbox=account.mailbox, membership_id=leaving.pk)

    client.force_login(colleague)
    response = client.post(reverse("mailbox:outgoing-withdraw", args=[outgoing.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("mailbox:draft-edit", args=[outgoing.pk])
    outgoing.refresh_from_db()
    assert outgoing.state == OutgoingMessage.State.DRAFT and outgoing.author == colleague
    assert list(drafts_for_user(colleague)) == [outgoing]
    event = AuditEvent.objects.get(action="outgoing.withdrawn")
    assert event.actor == colleague and event.details["former_author"] == sender.pk


def test_a_send_now_while_the_mailbox_is_being_switched_does_not_wait_for_the_switch(
    cm, account, sender, vzd, sent_tasks
):
    # The switch locks the mailbox, then each of its queued messages (to hold them). "Jetzt senden" or a delivery
    # task for one of them, meanwhile, locks the message: if that also waited for the mailbox, each would wait for
    # the other (PostgreSQL ends one of them with a deadlock error). It locks the message only.
    outgoing = _queued(sender, account)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(next_try_at=timezone.now() + timedelta(hours=1))
    errors: list[BaseException] = []
    states: list[str] = []

    def colleague() -> None:
        try:
            with connection.cursor() as cursor:
                # Bounds the wait of a lock this path must not take; the switch holds it until the end.
                cursor.execute("SET lock_timeout = '5s'")
            states.append(outgoing_deliver(outgoing_id=outgoing.pk))
            states.append(outgoing_retry(user=sender, outgoing=outgoing).state)
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        Mailbox.objects.select_for_update().get(pk=account.mailbox_id)
        thread = threading.Thread(target=colleague)
        thread.start()
        thread.join(timeout=60)
    assert not errors, errors
    assert states == [OutgoingMessage.State.QUEUED, OutgoingMessage.State.QUEUED]


def test_a_held_message_nobody_got_is_taken_back_even_with_a_recipient_refused_for_good(
    cm, account, sender, vzd, sent_tasks
):
    # PRAXIS refused for good, OUTSIDE for the moment: nobody got the letter, so it can still be taken back.
    cm.arm_rcpt_fault(PRAXIS, "550")
    cm.arm_rcpt_fault(OUTSIDE, "450")
    outgoing = _queued(sender, account, to=(PRAXIS, OUTSIDE))
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.QUEUED
    KimAccount.objects.filter(pk=account.pk).update(is_active=False)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(next_try_at=None)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.HELD

    draft = outgoing_withdraw(user=sender, outgoing=outgoing)

    assert draft.state == OutgoingMessage.State.DRAFT and not draft.recipient_rows.exists()
    assert sorted(draft.to) == sorted([PRAXIS, OUTSIDE])
    assert _copies(cm, outgoing) == 0
