"""What the simulated Fachdienst reports later: delayed recipients (Action: delayed, then delivered or
failed) and DSNs held back until released."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.tisim.support import ALICE, BOB
from tests.tisim.test_cm_send import OUTSIDE, dsn_blocks, kim_message, mails, submit
from tisim.cm import CMSimulator


@pytest.fixture
def fd(make_cm: Callable[..., CMSimulator]) -> CMSimulator:
    return make_cm(fachdienst=True)


def test_a_delayed_recipient_gets_a_delay_dsn_then_the_mail_and_a_success_dsn(fd: CMSimulator) -> None:
    fd.set_recipient_state(OUTSIDE, "delayed")
    raw, msgid = kim_message(to=[BOB, OUTSIDE])
    assert submit(fd, [BOB, OUTSIDE], raw) == {}

    [first] = mails(fd, ALICE)
    assert first["In-Reply-To"] == msgid
    _, blocks = dsn_blocks(first)
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks] == [
        (f"rfc822; {BOB}", "delivered", "2.0.0"),
        (f"rfc822; {OUTSIDE}", "delayed", "4.4.1"),
    ]
    assert fd.outside_messages() == []
    [held] = fd.delayed_messages()
    assert held.meta["recipient"] == OUTSIDE

    assert fd.release_delayed(OUTSIDE) == [OUTSIDE]
    [(_, recipients, stored)] = fd.outside_messages()
    assert (recipients, stored) == ([OUTSIDE], raw)
    _, second = mails(fd, ALICE)
    assert second["In-Reply-To"] == msgid
    _, [block] = dsn_blocks(second)
    assert (block["Final-Recipient"], block["Action"]) == (f"rfc822; {OUTSIDE}", "delivered")
    assert fd.delayed_messages() == []
    assert fd.release_delayed() == [], "released once only"


def test_a_delay_that_ends_in_failure(fd: CMSimulator) -> None:
    fd.set_recipient_state(BOB, "delayed")
    raw, _ = kim_message()
    submit(fd, [BOB], raw, notify="FAILURE")  # no DELAY asked for: nothing now
    assert mails(fd, ALICE) == []
    assert fd.release_delayed(outcome="failed") == [BOB]
    assert fd.maildrop_uidls(BOB) == []
    [dsn] = mails(fd, ALICE)
    _, [block] = dsn_blocks(dsn)
    assert (block["Action"], block["Status"]) == ("failed", "5.1.1")


def test_hosted_delayed_recipient_gets_the_receiving_cms_copy_on_release(fd: CMSimulator) -> None:
    fd.set_recipient_state(BOB, "delayed")
    raw, _ = kim_message()
    submit(fd, [BOB], raw, notify="NEVER")
    assert fd.maildrop_uidls(BOB) == []
    fd.release_delayed()
    [uidl] = fd.maildrop_uidls(BOB)
    delivered = fd.maildrop_read(BOB, uidl)
    assert delivered.startswith(f"Return-Path: <{ALICE}>".encode())
    assert b"X-KIM-DecryptionResult: 00" in delivered
    assert mails(fd, ALICE) == []


def test_release_refuses_an_unknown_outcome(fd: CMSimulator) -> None:
    with pytest.raises(ValueError):
        fd.release_delayed(outcome="maybe")


def test_held_dsns_come_out_on_release(fd: CMSimulator) -> None:
    fd.set_hold_dsns(True)
    raw, msgid = kim_message(to=[OUTSIDE])
    submit(fd, [OUTSIDE], raw)
    assert len(fd.outside_messages()) == 1, "the mail itself went out"
    assert mails(fd, ALICE) == []
    [held] = fd.held_dsns()
    assert held.meta["sender"] == ALICE

    [uidl] = fd.release_dsns()
    [dsn] = mails(fd, ALICE)
    assert dsn["In-Reply-To"] == msgid
    assert fd.maildrop_uidls(ALICE) == [uidl]
    assert fd.held_dsns() == [] and fd.release_dsns() == []

    fd.set_hold_dsns(False)
    submit(fd, [OUTSIDE], kim_message(to=[OUTSIDE])[0])
    assert len(mails(fd, ALICE)) == 2


def test_holding_can_be_switched_by_another_process(fd: CMSimulator) -> None:
    path = fd.data_dir / "send.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**data, "hold_dsns": True}))
    submit(fd, [BOB], kim_message()[0])
    assert mails(fd, ALICE) == []
    assert len(fd.held_dsns()) == 1
