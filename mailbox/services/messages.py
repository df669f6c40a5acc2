from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from mailbox.models import KimAccount, Mailbox, Message, MessageRead
from mailbox.services.audit import audit_record


@transaction.atomic
def message_open(*, user, message: Message, claim_page: str | None = None) -> None:
    """Opening a message is access to patient data: audited, and it marks the message read for this user.

    With `claim_page` the user opens it to work on it: the read-lock is taken in the same transaction
    (one commit per page view).
    """
    MessageRead.objects.get_or_create(message=message, user=user)
    audit_record(actor=user, action="message.viewed", message=message)
    if claim_page is not None:
        from mailbox.services.work import message_claim

        message_claim(user=user, message=message, page=claim_page)


def message_access_record(*, user, message: Message, action: str, **details) -> None:
    audit_record(actor=user, action=action, message=message, **details)


@transaction.atomic
def mailbox_fetch_request(*, user, mailbox: Mailbox) -> bool:
    """'Jetzt abrufen': make the account due now and queue a fetch."""
    from mailbox.tasks import mailbox_fetch

    try:
        account = mailbox.account
    except KimAccount.DoesNotExist:
        return False
    if not account.is_active:
        return False
    KimAccount.objects.filter(pk=account.pk).update(next_fetch_at=timezone.now())
    audit_record(actor=user, action="mailbox.fetch_requested", mailbox=mailbox)
    mailbox_fetch.delay_on_commit(account.pk)
    return True
