"""What happens after DATA: delivery as a KIM 1.5 CM (and, when simulated, the Fachdienst) would do it.

Recipients the CM removes (state ``no-certificate``; without the Fachdienst also every address it
does not host) play the part of "no valid encryption certificate in the VZD": they are dropped, the
sender gets an error mail (4004 or the state's code), and if nobody is left the submission fails
with 451 (KOM-LE-A_2176-01, A_2024). With the Fachdienst simulated (``SendPolicy.fachdienst``),
recipients it does not host go to the outside drop, ``unknown`` ones fail at the Fachdienst, and a
DSN per RCPT NOTIFY goes to the sender (see tisim.cm.sendrules and docs/tisim-send.md).
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
from tisim.cm.outside import OutsideDrop
from tisim.cm.reports import RecipientResult, delivery_status_notification
from tisim.cm.sendrules import SendPolicy

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
    # RCPT NOTIFY= values by lower-cased recipient; absent = not given (RFC 3461: failures only).
    notify: dict[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryReport:
    delivered: list[str]
    removed: list[str]
    error_mail_uidl: str | None
    outside: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # sent, but the Fachdienst could not deliver
    dsn_uidl: str | None = None


def _wants(notify: frozenset[str] | None, action: str) -> bool:
    if notify is None:
        return action == "failed"  # RFC 3461 §4.1: no NOTIFY means failures (and delays) only
    return ("SUCCESS" if action == "delivered" else "FAILURE") in notify


def deliver_submission(
    submission: Submission,
    *,
    store: MaildropStore,
    accounts: Container[str],
    policy: SendPolicy | None = None,
    outside: OutsideDrop | None = None,
) -> DeliveryReport:
    policy = policy or SendPolicy()
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
    states = {r: policy.recipient(r, hosted=r in accounts) for r in recipients}
    removed = [r for r in recipients if states[r].state == "no-certificate"]
    remaining = [r for r in recipients if r not in removed]
    if not remaining:
        raise SubmissionRejected(
            "451 4.3.0 Message not sent: no valid encryption certificate for any recipient (" + ", ".join(removed) + ")"
        )
    unknown = [r for r in remaining if states[r].state == "unknown"]
    delivered = [r for r in remaining if r not in unknown and r in accounts]
    outside_rcpts = [r for r in remaining if r not in unknown and r not in accounts]
    if outside_rcpts and outside is None:
        raise SubmissionRejected("451 4.3.0 Local error in processing (no outside drop)")

    payload, with_results = received_payload(content, fault)
    for recipient in delivered:
        store.deliver(recipient, delivered_copy(payload, submission.envelope, recipient, with_results=with_results))
    if outside_rcpts and outside is not None:
        # As it reached the CM: what the portal wrote is what the other side's tests look at.
        outside.store(submission.envelope.sender, outside_rcpts, content)

    sender = submission.envelope.sender
    error_uidl = None
    by_code: dict[str, list[str]] = {}
    for r in removed:
        by_code.setdefault(states[r].code, []).append(r)
    for code, addresses in by_code.items():
        report = recipients_removed_report(
            content,
            sender=sender,
            removed=[RemovedRecipient(r, submission.original_recipients.get(r)) for r in addresses],
            arrived=submission.envelope.arrived,
            envid=submission.envid,
            code=code,
        )
        error_uidl = store.deliver(sender, report)

    dsn_uidl = None
    if policy.fachdienst:
        results = [
            RecipientResult(r, "delivered", "2.0.0", None, submission.original_recipients.get(r))
            for r in remaining
            if r not in unknown and _wants(submission.notify.get(r), "delivered")
        ] + [
            RecipientResult(
                r,
                "failed",
                "5.1.1",
                f"550 5.1.1 <{r}>: Recipient address rejected: User unknown",
                submission.original_recipients.get(r),
            )
            for r in unknown
            if _wants(submission.notify.get(r), "failed")
        ]
        results.sort(key=lambda result: recipients.index(result.address))
        if results:
            dsn = delivery_status_notification(
                content, sender=sender, results=results, arrived=submission.envelope.arrived, envid=submission.envid
            )
            dsn_uidl = store.deliver(sender, dsn)
    return DeliveryReport(
        delivered=delivered,
        removed=removed,
        error_mail_uidl=error_uidl,
        outside=outside_rcpts,
        failed=unknown,
        dsn_uidl=dsn_uidl,
    )
