"""ORCPT (RFC 3461): every RCPT names the address as the user entered it, and reports are matched by it.

The Fachdienst may deliver to another address than the one we sent to (an alias, a forwarding, another case); its
DSN then names the final address in Final-Recipient and ours, as we gave it with ORCPT, in Original-Recipient. The
DSNs here are the simulated Fachdienst's own, held back and then changed the way such a Fachdienst (or a broken or
hostile one) would write them.
"""

from __future__ import annotations

import pytest

from mailbox.clients.smtp import MessageSource, smtp_send, xtext
from mailbox.models import DeliveryReport, Message, OutgoingMessage
from mailbox.services.accounts import account_endpoint
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.dsn import parse_report, xtext_decode
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver, outgoing_send
from tests.mailbox.conftest import HOSPITAL, PRAXIS
from tests.mailbox.send.conftest import OUTSIDE

pytestmark = pytest.mark.django_db(transaction=True)

ALL = ["DELAY", "FAILURE", "SUCCESS"]
FORWARDED = "vertretung@praxis-test.kim.telematik-test"
STRANGER = "fremd@praxis-test.kim.telematik-test"


def _sent(account, sender, to: list[str], *, request_dsn: bool = True) -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=sender,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject="Befund", body="Text", to=to, request_dsn=request_dsn),
    )
    outgoing = outgoing_send(user=sender, draft=draft, version=draft.version)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    return outgoing


def _held_dsn(cm) -> bytes:
    (held,) = cm.held_dsns()
    return held.raw


def _original(address: str) -> str:
    return f"Original-Recipient: rfc822;{xtext(address)}"


def _final(address: str) -> str:
    return f"Final-Recipient: rfc822; {address}"


def _rewritten(raw: bytes, changes: dict[str, str | None]) -> bytes:
    """The DSN with each field line named in *changes* replaced by its value (None: removed), all at once."""
    lines, used = [], []
    for line in raw.split(b"\r\n"):
        text = line.decode("ascii")
        if text in changes:
            used.append(text)
            if changes[text] is not None:
                lines.append(str(changes[text]).encode())
        else:
            lines.append(line)
    assert sorted(used) == sorted(changes), f"not each of {list(changes)} once in the DSN"
    return b"\r\n".join(lines)


def _fetch(cm, account, raw: bytes) -> Message:
    cm.deliver(HOSPITAL, raw)
    assert account_fetch(account_id=account.pk).error == ""
    return Message.objects.filter(mailbox=account.mailbox).latest("id")


def _rows(outgoing: OutgoingMessage) -> dict[str, str]:
    return dict(outgoing.recipient_rows.values_list("address", "state"))


# --- what goes over the wire ------------------------------------------------------------------------------------


@pytest.mark.parametrize("request_dsn", [True, False], ids=["notify", "no-notify"])
def test_every_rcpt_carries_orcpt_with_the_address_as_entered(cm, account, sender, vzd, sent_tasks, request_dsn):
    # The Fachdienst holds the letter for both: its record keeps the RCPT parameters the simulated CM received.
    cm.set_recipient_state(PRAXIS, "delayed")
    cm.set_recipient_state(OUTSIDE, "delayed")
    _sent(account, sender, [PRAXIS.upper(), OUTSIDE], request_dsn=request_dsn)

    received = {item.meta["recipient"]: (item.meta["orcpt"], item.meta["notify"]) for item in cm.delayed_messages()}
    notify = ALL if request_dsn else None
    assert received == {PRAXIS: (f"rfc822;{PRAXIS}", notify), OUTSIDE: (f"rfc822;{OUTSIDE}", notify)}


def test_orcpt_is_xtext_encoded_and_comes_back_as_the_original_recipient(cm, account):
    # "+" and "=" are xtext's own characters: sent as +2B and +3D (RFC 3461 §4), read back decoded.
    address = "dr+herz=1@praxis-test.kim.telematik-test"
    cm.set_recipient_state(address, "delayed")
    raw = f"From: {HOSPITAL}\r\nTo: {address}\r\nSubject: x\r\nMessage-ID: <orcpt-1@kim.local>\r\n\r\nText\r\n"
    smtp_send(account_endpoint(account, "smtp"), mail_from=HOSPITAL, recipients=[address], raw=raw.encode())

    (held,) = cm.delayed_messages()
    assert held.meta["orcpt"] == "rfc822;dr+2Bherz+3D1@praxis-test.kim.telematik-test"
    (uidl,) = cm.maildrop_uidls(HOSPITAL)  # the Fachdienst's "delayed" DSN
    report = parse_report(cm.maildrop_read(HOSPITAL, uidl))
    assert report is not None
    assert [(r.original, r.action) for r in report.recipients] == [(address, "delayed")]


def test_no_orcpt_and_no_notify_to_a_cm_without_dsn(cm, account, monkeypatch):
    # RFC 3461 parameters only to a server that offers the extension: the client goes by EHLO, not by a setting.
    from tisim.cm import smtp as cm_smtp

    async def ehlo_without_dsn(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        return responses

    monkeypatch.setattr(cm_smtp.KimSMTPHandler, "handle_EHLO", ehlo_without_dsn)
    cm.set_recipient_state(PRAXIS, "delayed")
    raw = f"From: {HOSPITAL}\r\nTo: {PRAXIS}\r\nSubject: x\r\nMessage-ID: <orcpt-2@kim.local>\r\n\r\nText\r\n"
    source = MessageSource.of_bytes(raw.encode())
    assert smtp_send(account_endpoint(account, "smtp"), mail_from=HOSPITAL, recipients=[PRAXIS], raw=source).code == 250

    (held,) = cm.delayed_messages()
    assert (held.meta["recipient"], held.meta["orcpt"], held.meta["notify"]) == (PRAXIS, None, None)


@pytest.mark.parametrize(
    ("text", "decoded"),
    [
        ("praxis@x", "praxis@x"),
        ("dr+2Bherz+3D1@x", "dr+herz=1@x"),
        ("a+20b@x", "a b@x"),
        ("a+2bb@x", None),  # lower-case hex is no xtext
        ("a+b@x", None),
        ("a=b@x", None),
        ("a b@x", None),
        ("a@x+", None),
        ("a@x+4", None),
        ("ä@x", None),
    ],
)
def test_xtext(text, decoded):
    assert xtext_decode(text) == decoded
    if decoded is not None:
        assert xtext(decoded) == text


def _report(field: str | None) -> bytes:
    original = f"Original-Recipient: {field}\r\n" if field is not None else ""
    return (
        "Return-Path: <>\r\nMessage-ID: <r@fd>\r\nIn-Reply-To: <m@kim.local>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; fd\r\n\r\n"
        f"{original}Final-Recipient: rfc822; a@x\r\nAction: delivered\r\nStatus: 2.0.0\r\n\r\n--b--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("field", "original"),
    [
        ("rfc822;dr+2Bherz@x", "dr+herz@x"),
        ("RFC822; <DR+2BHERZ@X>", "dr+herz@x"),
        ("rfc822;dr+herz@x", "dr+herz@x"),  # written decoded, as some MTAs do: no xtext, taken as it stands
        ("rfc822;pr+00x@x", ""),
        ("rfc822;" + "a" * 1001, ""),
        ("x400;a@x", ""),
        (None, None),
    ],
)
def test_original_recipient_as_read_from_a_report(field, original):
    report = parse_report(_report(field))
    assert report is not None
    assert [(r.address, r.original) for r in report.recipients] == [("a@x", original)]


# --- matching reports --------------------------------------------------------------------------------------------


def test_a_dsn_for_a_forwarded_recipient_is_matched_by_its_original_recipient(cm, account, sender, vzd, sent_tasks):
    # The Fachdienst forwarded the letter to the practice's substitute and says so in Final-Recipient.
    cm.set_hold_dsns(True)
    outgoing = _sent(account, sender, [PRAXIS])
    # Written in another case by that MTA: the address is compared without it.
    dsn = _rewritten(
        _held_dsn(cm),
        {_final(PRAXIS): _final(FORWARDED), _original(PRAXIS): f"Original-Recipient: RFC822; {PRAXIS.upper()}"},
    )

    report = _fetch(cm, account, dsn)
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "delivered"}
    assert outgoing.state == OutgoingMessage.State.DELIVERED
    assert DeliveryReport.objects.get(outgoing=outgoing).message == report
    assert report.is_delivery_report and report.state == Message.State.DONE


def test_original_recipient_wins_over_a_final_recipient_naming_another_of_ours(cm, account, sender, vzd, sent_tasks):
    # Each recipient's letter ended at the other's address (forwardings): by Final-Recipient the failure would be
    # pinned on the one who got it.
    cm.set_hold_dsns(True)
    cm.set_recipient_state(PRAXIS, "unknown")
    outgoing = _sent(account, sender, [PRAXIS, OUTSIDE])
    dsn = _rewritten(_held_dsn(cm), {_final(PRAXIS): _final(OUTSIDE), _final(OUTSIDE): _final(PRAXIS)})

    _fetch(cm, account, dsn)
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "failed", OUTSIDE: "delivered"}
    assert outgoing.recipient_rows.get(address=PRAXIS).status_code == "5.1.1"
    assert outgoing.state == OutgoingMessage.State.PARTIALLY_DELIVERED


def test_a_dsn_without_original_recipient_is_still_matched_by_final_recipient(cm, account, sender, vzd, sent_tasks):
    # A Fachdienst that got no ORCPT (or mail sent before it was given) writes none.
    cm.set_hold_dsns(True)
    outgoing = _sent(account, sender, [PRAXIS])
    _fetch(cm, account, _rewritten(_held_dsn(cm), {_original(PRAXIS): None}))
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "delivered"}


@pytest.mark.parametrize(
    "original",
    [
        f"rfc822;{STRANGER}",  # well-formed, but not ours
        f"rfc822;{xtext(STRANGER)}+",  # a "+" without hex digits
        "rfc822;praxis+ZZ@praxis-test.kim.telematik-test",
        "rfc822;pr+00axis@praxis-test.kim.telematik-test",  # decodes to a control character
        f"rfc822;{PRAXIS}" + "+41" * 40_000,  # huge
        f"x400;{PRAXIS}",  # an address type we never give
        PRAXIS,  # no address type
        "rfc822;",
    ],
    ids=["stranger", "dangling-plus", "bad-hex", "control", "huge", "x400", "no-type", "empty"],
)
def test_a_block_whose_original_recipient_is_not_ours_is_applied_to_nobody(
    cm, account, sender, vzd, sent_tasks, original
):
    # Final-Recipient names our recipient, Original-Recipient names someone else or nothing readable: the report is
    # about a letter to another address (or cannot say whose), so it fails nobody of ours, and as it concerns none of
    # our recipients it stays an ordinary message where people see it.
    cm.set_hold_dsns(True)
    cm.set_recipient_state(PRAXIS, "unknown")
    outgoing = _sent(account, sender, [PRAXIS])
    message = _fetch(cm, account, _rewritten(_held_dsn(cm), {_original(PRAXIS): f"Original-Recipient: {original}"}))

    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "sent"}
    assert outgoing.state == OutgoingMessage.State.SENT
    assert not DeliveryReport.objects.filter(message=message).exists()
    assert message.state == Message.State.NEW and not message.is_delivery_report


def test_a_foreign_block_next_to_ours_changes_only_ours(cm, account, sender, vzd, sent_tasks):
    cm.set_hold_dsns(True)
    cm.set_recipient_state(OUTSIDE, "unknown")
    outgoing = _sent(account, sender, [PRAXIS, OUTSIDE])
    dsn = _rewritten(_held_dsn(cm), {_original(OUTSIDE): _original(STRANGER)})

    _fetch(cm, account, dsn)
    outgoing.refresh_from_db()
    assert _rows(outgoing) == {PRAXIS: "delivered", OUTSIDE: "sent"}
    assert outgoing.state == OutgoingMessage.State.SENT
