"""Helpers for the work-service tests: sample mail, members, a held lease, a snapshot of what an action changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from zoneinfo import ZoneInfo

from audit.models import AuditEvent
from mailbox.models import (
    AssignmentPeriod,
    Membership,
    Message,
    Note,
    Notification,
)
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MembershipFactory, UserFactory

BERLIN = ZoneInfo("Europe/Berlin")
Role = Membership.Role


def raw_mail(
    subject: str = "Befund",
    *,
    body: str = "Hallo",
    sender: str = "Praxis Test <praxis@praxis-test.kim.telematik-test>",
    dienstkennung: str = "Arztbrief;VHitG-Versand;V1.2",
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "station@klinikum-test.kim.telematik-test"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="praxis-test.kim.telematik-test")
    msg["X-KIM-Dienstkennung"] = dienstkennung
    msg.set_content(body)
    return msg.as_bytes()


_uidl = iter(range(1_000_000))


def ingest(box, **kwargs) -> Message:
    return message_ingest(mailbox=box, uidl=f"w{next(_uidl)}", raw=raw_mail(**kwargs))


def add_member(box, username: str, role: str, first: str, last: str):
    user = UserFactory(username=username, first_name=first, last_name=last)
    MembershipFactory(mailbox=box, user=user, role=role)
    return user


def hold(message: Message, user, *, expires: datetime, since: datetime | None = None) -> None:
    Message.objects.filter(pk=message.pk).update(
        claimed_by=user, claimed_at=since or expires - timedelta(minutes=10), claim_expires_at=expires
    )


def snapshot(message: Message) -> dict:
    """Everything an action could change, to prove a refused action changed nothing."""
    m = Message.objects.get(pk=message.pk)
    return {
        "state": m.state,
        "due_at": m.due_at,
        "assignee": m.assignee_id,
        "version": m.version,
        "claimed_by": m.claimed_by_id,
        "claim_expires_at": m.claim_expires_at,
        "notes": Note.objects.filter(message=message).count(),
        "periods": list(AssignmentPeriod.objects.filter(message=message).values_list("user_id", "ended_at")),
        "audit": AuditEvent.objects.filter(message_id=message.pk).count(),
        "notifications": Notification.objects.count(),
    }
