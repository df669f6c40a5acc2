"""What happens after DATA: local delivery between simulated addresses, as a KIM 1.5 CM would report it.

Recipients that are not simulated accounts play the part of "no valid encryption certificate in the
VZD": they are dropped, the sender gets an error mail (4004), and if nobody is left the submission
fails with 451 (KOM-LE-A_2176-01, A_2024).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field

from tisim.cm.maildrop import MaildropStore
from tisim.cm.messages import (
    RECEIVE_FAULTS,
    Envelope,
    RemovedRecipient,
    delivered_copy,
    get_header,
    received_payload,
    recipients_removed_report,
    remove_headers,
)

FAULT_HEADER = "X-Tisim-Fault"
FAULTS = RECEIVE_FAULTS


class SubmissionRejected(Exception):
    """The CM refuses the whole message; ``reply`` is the SMTP reply line."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class Submission:
    envelope: Envelope
    recipients: list[str]
    content: bytes
    # RCPT ORCPT= values by recipient, and MAIL ENVID=, for the DSN.
    original_recipients: dict[str, str] = field(default_factory=dict)
    envid: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    delivered: list[str]
    removed: list[str]
    error_mail_uidl: str | None


def deliver_submission(submission: Submission, *, store: MaildropStore, accounts: Container[str]) -> DeliveryReport:
    content = submission.content
    fault = get_header(content, FAULT_HEADER)
    if fault is not None:
        fault = fault.strip().lower()
        if fault not in FAULTS:
            # A typo in a test's fault header should fail loudly, not deliver a normal mail.
            raise SubmissionRejected(f"554 5.6.0 Unknown {FAULT_HEADER} value; known: {', '.join(FAULTS)}")
        content = remove_headers(content, FAULT_HEADER)

    recipients: list[str] = []
    for address in submission.recipients:
        if address.lower() not in recipients:
            recipients.append(address.lower())
    delivered = [r for r in recipients if r in accounts]
    removed = [r for r in recipients if r not in accounts]
    if not delivered:
        raise SubmissionRejected(
            "451 4.3.0 Message not sent: no valid encryption certificate for any recipient (" + ", ".join(removed) + ")"
        )

    payload, with_results = received_payload(content, fault)
    for recipient in delivered:
        store.deliver(recipient, delivered_copy(payload, submission.envelope, recipient, with_results=with_results))

    error_uidl = None
    if removed:
        report = recipients_removed_report(
            content,
            sender=submission.envelope.sender,
            removed=[RemovedRecipient(r, submission.original_recipients.get(r)) for r in removed],
            arrived=submission.envelope.arrived,
            envid=submission.envid,
        )
        error_uidl = store.deliver(submission.envelope.sender, report)
    return DeliveryReport(delivered=delivered, removed=removed, error_mail_uidl=error_uidl)
