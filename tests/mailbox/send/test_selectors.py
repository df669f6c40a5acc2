"""Reads of sent mail: constant queries for lists, claims of sent messages, timelines."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.errors import Conflict
from mailbox.models import Membership, OutgoingMessage, OutgoingRecipient
from mailbox.selectors.outbox import outgoing_list_for_user, outgoing_timeline
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.members import membership_remove
from mailbox.services.outbox import outgoing_claim, outgoing_release
from tests.mailbox.conftest import PRAXIS
from tests.mailbox.factories import MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def _sent(user, account, n: int) -> list[OutgoingMessage]:
    out = []
    for i in range(n):
        draft = outgoing_draft_save(
            user=user,
            mailbox_id=account.mailbox_id,
            data=OutgoingData(subject=f"S{i}", to=[PRAXIS, f"x{i}@a.kim.telematik"]),
        )
        OutgoingMessage.objects.filter(pk=draft.pk).update(
            state=OutgoingMessage.State.SENT, message_id=f"<{draft.pk}@kim.local>"
        )
        OutgoingRecipient.objects.bulk_create([OutgoingRecipient(outgoing=draft, address=a) for a in draft.recipients])
        out.append(draft)
    return out


def _queries(user, account) -> int:
    with CaptureQueriesContext(connection) as ctx:
        rows = list(outgoing_list_for_user(user, mailbox=account.mailbox, states=["sent"]))
        for row in rows:
            _ = [r.address for r in row.recipient_rows.all()], row.mailbox.address, row.author
    return len(ctx.captured_queries)


def test_the_sent_list_costs_the_same_queries_for_2_and_20_messages(account, sender):
    _sent(sender, account, 2)
    few = _queries(sender, account)
    _sent(sender, account, 18)
    assert _queries(sender, account) == few <= 4


def test_a_failed_send_is_claimed_by_one_person(account, sender):
    colleague = UserFactory(username="kollege")
    MembershipFactory(mailbox=account.mailbox, user=colleague)
    (outgoing,) = _sent(sender, account, 1)
    claimed = outgoing_claim(user=sender, outgoing=outgoing)
    assert claimed.claimed_by == sender
    with pytest.raises(Conflict):
        outgoing_claim(user=colleague, outgoing=outgoing)
    outgoing_release(user=sender, outgoing=outgoing)
    assert outgoing_claim(user=colleague, outgoing=outgoing).claimed_by == colleague


def test_a_removed_members_claim_on_a_failed_send_goes_and_a_colleague_can_take_it(account, sender):
    # Else the page names an ex-member as responsible and offers nobody "Ich kümmere mich": the send is stuck.
    owner = UserFactory(username="leitung")
    MembershipFactory(mailbox=account.mailbox, user=owner, role=Membership.Role.OWNER)
    colleague = UserFactory(username="kollege")
    MembershipFactory(mailbox=account.mailbox, user=colleague)
    (outgoing,) = _sent(sender, account, 1)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(state=OutgoingMessage.State.FAILED)
    outgoing_claim(user=sender, outgoing=outgoing)
    membership = Membership.objects.get(mailbox=account.mailbox, user=sender)
    membership_remove(user=owner, mailbox=account.mailbox, membership_id=membership.pk)
    outgoing.refresh_from_db()
    assert outgoing.claimed_by is None
    event = AuditEvent.objects.get(action="outgoing.released")
    assert (event.actor_id, event.details["reason"]) == (owner.pk, "membership_ended")
    assert outgoing_claim(user=colleague, outgoing=outgoing).claimed_by == colleague


def test_timeline_of_a_queued_message_says_so_per_recipient(account, sender):
    (outgoing,) = _sent(sender, account, 1)
    OutgoingRecipient.objects.filter(outgoing=outgoing, address=PRAXIS).update(
        state="failed", reason="Empfängeradresse unbekannt", status_code="5.1.1"
    )
    timeline = outgoing_timeline(OutgoingMessage.objects.get(pk=outgoing.pk))
    by_address = {r.address: r for r in timeline.recipients}
    assert by_address[PRAXIS].state == "failed" and by_address[PRAXIS].steps[-1].reason == "Empfängeradresse unbekannt"
    assert timeline.state_label == "versendet"


def test_timeline_says_why_a_recipient_still_waits_after_a_temporary_refusal(account, sender):
    (outgoing,) = _sent(sender, account, 1)
    OutgoingMessage.objects.filter(pk=outgoing.pk).update(state="queued", queued_at=timezone.now())
    OutgoingRecipient.objects.filter(outgoing=outgoing, address=PRAXIS).update(
        reason="Vom Clientmodul vorübergehend abgelehnt: 452 4.2.2 Postfach voll", status_code="452"
    )
    OutgoingRecipient.objects.filter(outgoing=outgoing).exclude(address=PRAXIS).update(state="sent")
    timeline = outgoing_timeline(OutgoingMessage.objects.get(pk=outgoing.pk))
    by_address = {r.address: r for r in timeline.recipients}
    waiting = by_address[PRAXIS]
    assert waiting.state == "queued"
    assert [s.reason for s in waiting.steps] == ["Vom Clientmodul vorübergehend abgelehnt: 452 4.2.2 Postfach voll"]
    other = next(r for a, r in by_address.items() if a != PRAXIS)
    assert [(s.state, s.reason) for s in other.steps] == [("queued", ""), ("sent", "")]
