"""What happens after DATA: delivery as a KIM 1.5 CM (and, when simulated, the Fachdienst) would do it.

Recipients the CM removes (state ``no-certificate``; without the Fachdienst also every address it
does not host) play the part of "no valid encryption certificate in the VZD": they are dropped, the
sender gets an error mail (4004 or the state's code), and if nobody is left the submission fails
with 451 (KOM-LE-A_2176-01, A_2024). With the Fachdienst simulated (``SendPolicy.fachdienst``),
recipients it does not host go to the outside drop, ``unknown`` ones fail at the Fachdienst, and a
DSN per RCPT NOTIFY goes to the sender (see tisim.cm.sendrules and docs/tisim-send.md).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from tisim.cm.autoreply import answer_absences
from tisim.cm.held import HeldStore
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
    delayed: list[str] = field(default_factory=list)  # held by the Fachdienst until released


def _wants(notify: frozenset[str] | None, action: str) -> bool:
    if notify is None:
        # RFC 3461 §4.1: without NOTIFY the MTA behaves as for NOTIFY=FAILURE,DELAY.
        return action in ("failed", "delayed")
    return {"delivered": "SUCCESS", "failed": "FAILURE", "delayed": "DELAY"}[action] in notify


@dataclass(frozen=True)
class Held:
    """Where the Fachdienst keeps what it holds back (None: nothing is ever held)."""

    messages: HeldStore  # mail for recipients in state "delayed"
    dsns: HeldStore  # DSNs while SendPolicy.hold_dsns is on


UNKNOWN_DIAGNOSTIC = "550 5.1.1 <{r}>: Recipient address rejected: User unknown"
DELAYED_DIAGNOSTIC = "451 4.4.1 <{r}>: Delivery delayed, the Fachdienst keeps trying"


def _result(submission: Submission, recipient: str, action: str) -> RecipientResult:
    status, diagnostic = {
        "delivered": ("2.0.0", None),
        "failed": ("5.1.1", UNKNOWN_DIAGNOSTIC.format(r=recipient)),
        "delayed": ("4.4.1", DELAYED_DIAGNOSTIC.format(r=recipient)),
    }[action]
    return RecipientResult(recipient, action, status, diagnostic, submission.original_recipients.get(recipient))


def _hand_out_dsn(
    submission: Submission,
    content: bytes,
    results: list[RecipientResult],
    *,
    store: MaildropStore,
    hold: HeldStore | None,
) -> str | None:
    """Into the sender's maildrop, or kept back while DSNs are held; the maildrop UIDL if delivered."""
    if not results:
        return None
    sender = submission.envelope.sender
    dsn = delivery_status_notification(
        content, sender=sender, results=results, arrived=submission.envelope.arrived, envid=submission.envid
    )
    if hold is not None:
        hold.put({"sender": sender}, dsn)
        return None
    return store.deliver(sender, dsn)


def _hold(held: Held | None, policy: SendPolicy) -> HeldStore | None:
    return held.dsns if held is not None and policy.hold_dsns else None


def _held_meta(submission: Submission, recipient: str, fault: str | None) -> dict[str, Any]:
    envelope = submission.envelope
    notify = submission.notify.get(recipient)
    return {
        "recipient": recipient,
        "sender": envelope.sender,
        "helo": envelope.helo,
        "peer": envelope.peer,
        "arrived": envelope.arrived.isoformat(),
        "fault": fault,
        "notify": sorted(notify) if notify is not None else None,
        "orcpt": submission.original_recipients.get(recipient),
        "envid": submission.envid,
    }


def release_delayed(
    *,
    store: MaildropStore,
    accounts: Container[str],
    outside: OutsideDrop | None,
    held: Held,
    policy: SendPolicy,
    recipient: str | None = None,
    outcome: str = "delivered",
) -> list[str]:
    """End the delay of held mail (all, or one recipient's): deliver it (``outcome="delivered"``) or
    give up (``"failed"``), with the DSN its NOTIFY asked for. Returns the recipients released."""
    if outcome not in ("delivered", "failed"):
        raise ValueError("outcome must be 'delivered' or 'failed'")
    released = []
    for item in held.messages.items():
        meta = item.meta
        if recipient is not None and meta["recipient"] != recipient.lower():
            continue
        if not held.messages.remove(item.uid):
            continue
        notify = frozenset(meta["notify"]) if meta["notify"] is not None else None
        submission = Submission(
            envelope=Envelope(
                sender=meta["sender"],
                helo=meta["helo"],
                peer=meta["peer"],
                arrived=dt.datetime.fromisoformat(meta["arrived"]),
            ),
            recipients=[meta["recipient"]],
            content=item.raw,
            original_recipients={meta["recipient"]: meta["orcpt"]} if meta["orcpt"] else {},
            envid=meta["envid"],
            notify={meta["recipient"]: notify} if notify is not None else {},
        )
        if outcome == "delivered":
            _deliver_to(
                [meta["recipient"]],
                item.raw,
                meta["fault"],
                submission.envelope,
                store=store,
                accounts=accounts,
                outside=outside,
            )
        results = [_result(submission, meta["recipient"], outcome)] if _wants(notify, outcome) else []
        _hand_out_dsn(submission, item.raw, results, store=store, hold=_hold(held, policy))
        released.append(meta["recipient"])
    return released


def release_dsns(*, store: MaildropStore, held: Held) -> list[str]:
    """Hand out every held DSN, oldest first; returns their maildrop UIDLs."""
    uidls = []
    for item in held.dsns.items():
        if held.dsns.remove(item.uid):
            uidls.append(store.deliver(item.meta["sender"], item.raw))
    return uidls


def _deliver_to(
    recipients: list[str],
    content: bytes,
    fault: str | None,
    envelope: Envelope,
    *,
    store: MaildropStore,
    accounts: Container[str],
    outside: OutsideDrop | None,
) -> tuple[list[str], list[str]]:
    """(hosted, outside) recipients the mail went to."""
    hosted = [r for r in recipients if r in accounts]
    outer = [r for r in recipients if r not in accounts]
    if outer and outside is None:
        raise SubmissionRejected("451 4.3.0 Local error in processing (no outside drop)")
    if hosted:
        payload, with_results = received_payload(content, fault)
        for recipient in hosted:
            store.deliver(recipient, delivered_copy(payload, envelope, recipient, with_results=with_results))
    if outer and outside is not None:
        # As it reached the CM: what the portal wrote is what the other side's tests look at.
        outside.store(envelope.sender, outer, content)
    return hosted, outer


def deliver_submission(
    submission: Submission,
    *,
    store: MaildropStore,
    accounts: Container[str],
    policy: SendPolicy | None = None,
    outside: OutsideDrop | None = None,
    held: Held | None = None,
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
    delayed = [r for r in remaining if states[r].state == "delayed"] if held is not None else []
    reachable = [r for r in remaining if r not in unknown and r not in delayed]
    delivered, outside_rcpts = _deliver_to(
        reachable, content, fault, submission.envelope, store=store, accounts=accounts, outside=outside
    )
    # The Fachdienst's out-of-office replies (set through the Account Manager; tisim.cm.autoreply).
    answer_absences(
        content,
        envelope_sender=submission.envelope.sender,
        delivered=delivered,
        store=store,
        accounts=accounts,
        outside=outside,
    )
    if held is not None:
        for recipient in delayed:
            held.messages.put(_held_meta(submission, recipient, fault), content)

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
        outcome = {r: "delivered" for r in reachable} | {r: "failed" for r in unknown} | {r: "delayed" for r in delayed}
        results = [
            _result(submission, r, outcome[r])
            for r in recipients
            if r in outcome and _wants(submission.notify.get(r), outcome[r])
        ]
        dsn_uidl = _hand_out_dsn(submission, content, results, store=store, hold=_hold(held, policy))
    return DeliveryReport(
        delivered=delivered,
        removed=removed,
        error_mail_uidl=error_uidl,
        outside=outside_rcpts,
        failed=unknown,
        dsn_uidl=dsn_uidl,
        delayed=delayed,
    )
