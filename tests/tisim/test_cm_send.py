"""The simulated CM's send side with the Fachdienst behind it: outside drop, DSNs, 553/451, faults."""

from __future__ import annotations

import email
import json
import smtplib
import subprocess
import sys
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from tests.tisim.support import ALICE, BOB, CAROL, PASSWORDS, REPO, smtp_connect, smtp_user
from tisim.cm import CMSimulator
from tisim.cm.sendrules import SendRules

OUTSIDE = "praxis@praxis-x.kim.telematik"
OUTSIDE2 = "labor@labor-y.kim.telematik"


def kim_message(
    *, sender: str = ALICE, to: list[str] | None = None, subject: str = "Befund", extra: str = "", msgid: str = ""
) -> tuple[bytes, str]:
    """A mail that follows every client-system rule; returns (bytes, Message-ID)."""
    msgid = msgid or f"<{uuid.uuid4()}@kim.local>"
    raw = (
        f"From: {sender}\r\nTo: {', '.join(to or [BOB])}\r\nSubject: {subject}\r\n"
        f"Date: Thu, 06 Oct 2022 11:27:22 +0200\r\nMessage-ID: {msgid}\r\n"
        "X-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\nX-KIM-Sendersystem: KIM-Portal;1.0.0\r\n"
        "X-KIM-Support: support@kimportal.example\r\nX-TI-User-Agent: KIMPortal-Test/1.0.0\r\n"
        f"{extra}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHallo\r\n"
    ).encode()
    return raw, msgid


def submit(
    sim: CMSimulator,
    recipients: list[str],
    raw: bytes,
    *,
    sender: str = ALICE,
    notify: str | None = "SUCCESS,FAILURE,DELAY",
    orcpt: bool = False,
) -> dict:
    options = [f"NOTIFY={notify}"] if notify else []
    with smtp_connect(sim) as conn:
        conn.login(smtp_user(sender), PASSWORDS[sender])
        if not orcpt:
            return conn.sendmail(sender, recipients, raw, rcpt_options=options)
        assert conn.mail(sender)[0] == 250
        for rcpt in recipients:
            assert conn.rcpt(rcpt, [*options, f"ORCPT=rfc822;{rcpt}"])[0] == 250
        code, reply = conn.data(raw)
        assert code == 250, reply
        return {}


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def mails(sim: CMSimulator, address: str) -> list[EmailMessage]:
    return [parse(sim.maildrop_read(address, u)) for u in sim.maildrop_uidls(address)]


def dsn_blocks(report: EmailMessage) -> tuple[EmailMessage, list[EmailMessage]]:
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    _text, status, headers = report.iter_parts()
    assert status.get_content_type() == "message/delivery-status"
    assert headers.get_content_type() == "text/rfc822-headers"
    per_message, *per_recipient = status.get_payload()
    return per_message, per_recipient


@pytest.fixture
def fd(make_cm: Callable[..., CMSimulator]) -> CMSimulator:
    return make_cm(fachdienst=True)


# --- routing ------------------------------------------------------------------------------------


def test_mail_to_an_address_not_hosted_lands_in_the_outside_drop(fd: CMSimulator) -> None:
    raw, _ = kim_message(to=[OUTSIDE, OUTSIDE2])
    assert submit(fd, [OUTSIDE, OUTSIDE2], raw, notify=None) == {}

    [(envelope_from, recipients, stored)] = fd.outside_messages()
    assert envelope_from == ALICE
    assert recipients == [OUTSIDE, OUTSIDE2]
    assert stored == raw, "kept byte for byte as it reached the CM"
    files = sorted(p.suffix for p in (fd.data_dir / "outside").iterdir())
    assert files == [".eml", ".json"]
    assert (fd.data_dir / "outside" / next(p.name for p in (fd.data_dir / "outside").glob("*.eml"))).read_bytes() == raw
    assert fd.maildrop_uidls(ALICE) == [], "no NOTIFY: no success DSN"


def test_hosted_and_outside_recipients_each_get_one_copy(fd: CMSimulator) -> None:
    raw, _ = kim_message(to=[BOB, OUTSIDE])
    submit(fd, [BOB, OUTSIDE, BOB.upper()], raw, notify=None)
    assert len(fd.maildrop_uidls(BOB)) == 1
    [outside] = fd.outside_messages()
    assert outside.recipients == [OUTSIDE]


def test_without_the_fachdienst_an_unhosted_address_is_still_removed(make_cm: Callable[..., CMSimulator]) -> None:
    sim = make_cm()
    raw, _ = kim_message(to=[OUTSIDE])
    with pytest.raises(smtplib.SMTPDataError) as exc:
        submit(sim, [OUTSIDE], raw)
    assert exc.value.smtp_code == 451
    assert sim.outside_messages() == []


def test_the_fachdienst_can_be_switched_on_through_the_data_dir(make_cm: Callable[..., CMSimulator]) -> None:
    sim = make_cm()
    # What another process (the demo's seeding, a test) does: write send.json next to the simulator.
    (sim.data_dir / "send.json").write_text(json.dumps({"fachdienst": True}))
    assert sim.fachdienst
    raw, _ = kim_message(to=[OUTSIDE])
    submit(sim, [OUTSIDE], raw)
    assert len(sim.outside_messages()) == 1


# --- DSNs ---------------------------------------------------------------------------------------


def test_success_dsn_for_every_recipient_that_asked(fd: CMSimulator) -> None:
    raw, msgid = kim_message(to=[BOB, OUTSIDE], subject="Entlassbrief")
    submit(fd, [BOB, OUTSIDE], raw, orcpt=True)

    [dsn] = mails(fd, ALICE)
    assert dsn["In-Reply-To"] == msgid
    assert dsn["References"] == msgid
    assert dsn["To"].addresses[0].addr_spec == ALICE
    assert dsn["X-KIM-Fehlermeldung"] is None, "a DSN is not a CM error mail"
    per_message, blocks = dsn_blocks(dsn)
    assert per_message["Reporting-MTA"].startswith("dns;")
    assert per_message["Arrival-Date"]
    assert [(b["Final-Recipient"], b["Action"], b["Status"]) for b in blocks] == [
        (f"rfc822; {BOB}", "delivered", "2.0.0"),
        (f"rfc822; {OUTSIDE}", "delivered", "2.0.0"),
    ]
    assert blocks[0]["Original-Recipient"] == f"rfc822;{BOB}"
    assert "Entlassbrief" in dsn["Subject"]


def test_notify_is_honoured_per_recipient(fd: CMSimulator) -> None:
    fd.set_recipient_state(CAROL, "unknown")
    raw, _ = kim_message(to=[BOB, OUTSIDE, CAROL])
    with smtp_connect(fd) as conn:
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
        conn.mail(ALICE)
        assert conn.rcpt(BOB, ["NOTIFY=SUCCESS"])[0] == 250
        assert conn.rcpt(OUTSIDE, ["NOTIFY=NEVER"])[0] == 250
        assert conn.rcpt(CAROL, ["NOTIFY=SUCCESS"])[0] == 250  # failed, but no FAILURE asked for
        assert conn.data(raw)[0] == 250
    [dsn] = mails(fd, ALICE)
    _, blocks = dsn_blocks(dsn)
    assert [(b["Final-Recipient"], b["Action"]) for b in blocks] == [(f"rfc822; {BOB}", "delivered")]
    assert fd.maildrop_uidls(CAROL) == [], "an unknown recipient gets nothing"


def test_unknown_recipient_gets_a_failure_dsn_by_default(fd: CMSimulator) -> None:
    fd.set_recipient_state(OUTSIDE2, "unknown")
    raw, msgid = kim_message(to=[OUTSIDE, OUTSIDE2])
    # No NOTIFY: RFC 3461 says failures are reported, successes not.
    assert submit(fd, [OUTSIDE, OUTSIDE2], raw, notify=None) == {}
    [dsn] = mails(fd, ALICE)
    assert dsn["In-Reply-To"] == msgid
    _, [block] = dsn_blocks(dsn)
    assert block["Final-Recipient"] == f"rfc822; {OUTSIDE2}"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert "550 5.1.1" in block["Diagnostic-Code"]
    [outside] = fd.outside_messages()
    assert outside.recipients == [OUTSIDE]


def test_only_unknown_recipients_is_accepted_and_reported_by_dsn(fd: CMSimulator) -> None:
    fd.set_recipient_state(OUTSIDE, "unknown")
    raw, _ = kim_message(to=[OUTSIDE])
    assert submit(fd, [OUTSIDE], raw) == {}
    [dsn] = mails(fd, ALICE)
    _, [block] = dsn_blocks(dsn)
    assert block["Action"] == "failed"
    assert fd.outside_messages() == []


# --- recipients the CM removes; 451 -------------------------------------------------------------


def test_recipient_without_certificate_is_removed_with_a_4004_error_mail(fd: CMSimulator) -> None:
    fd.set_recipient_state(OUTSIDE2, "no-certificate")
    raw, msgid = kim_message(to=[OUTSIDE, OUTSIDE2])
    with smtp_connect(fd) as conn:
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
        conn.mail(ALICE)
        conn.rcpt(OUTSIDE, ["NOTIFY=SUCCESS,FAILURE"])
        conn.rcpt(OUTSIDE2, ["NOTIFY=SUCCESS,FAILURE"])
        code, reply = conn.data(raw)
    assert code == 250
    assert OUTSIDE2.encode() in reply
    error, dsn = mails(fd, ALICE)
    assert error["X-KIM-Fehlermeldung"] == "4004"
    assert error["In-Reply-To"] == msgid
    _, [removed] = dsn_blocks(error)
    assert (removed["Final-Recipient"], removed["Action"]) == (f"rfc822; {OUTSIDE2}", "failed")
    assert dsn["X-KIM-Fehlermeldung"] is None
    _, [delivered] = dsn_blocks(dsn)
    assert (delivered["Final-Recipient"], delivered["Action"]) == (f"rfc822; {OUTSIDE}", "delivered")


def test_a_recipient_outside_the_kim_domains_is_removed_as_without_certificate(fd: CMSimulator) -> None:
    raw, _ = kim_message(to=[OUTSIDE, "jemand@example.org"])
    submit(fd, [OUTSIDE, "jemand@example.org"], raw, notify="NEVER")
    [(_, recipients, _)] = fd.outside_messages()
    assert recipients == [OUTSIDE]
    [error] = mails(fd, ALICE)
    assert error["X-KIM-Fehlermeldung"] == "4004"
    assert "jemand@example.org" in error.get_body(("plain",)).get_content()


def test_removal_with_another_cm_code(fd: CMSimulator) -> None:
    fd.set_recipient_state(CAROL, "no-certificate", code="4005")
    raw, _ = kim_message(to=[BOB, CAROL])
    submit(fd, [BOB, CAROL], raw, notify="NEVER")
    [error] = mails(fd, ALICE)
    assert error["X-KIM-Fehlermeldung"] == "4005"
    assert "Telematik-IDs" in error.get_body(("plain",)).get_content()
    assert fd.maildrop_uidls(CAROL) == []


def test_no_recipient_left_is_451_and_nothing_goes_anywhere(fd: CMSimulator) -> None:
    fd.set_recipient_state(OUTSIDE, "no-certificate")
    fd.set_recipient_state(BOB, "no-certificate")
    raw, _ = kim_message(to=[OUTSIDE, BOB])
    with pytest.raises(smtplib.SMTPDataError) as exc:
        submit(fd, [OUTSIDE, BOB], raw)
    assert exc.value.smtp_code == 451
    assert exc.value.smtp_error.startswith(b"4.3.0")
    assert fd.outside_messages() == []
    assert fd.maildrop_uidls(BOB) == [] and fd.maildrop_uidls(ALICE) == []
    fd.set_recipient_state(BOB, "ok")
    assert submit(fd, [BOB], raw) == {}


def test_unknown_state_or_code_is_refused() -> None:
    # Refused before anything is written: the path is never touched.
    rules = SendRules(Path("/nonexistent"))
    with pytest.raises(ValueError, match="unknown recipient state"):
        rules.set_recipient_state(BOB, "gone")
    with pytest.raises(ValueError, match="code only"):
        rules.set_recipient_state(BOB, "unknown", code="4005")


# --- 553 ----------------------------------------------------------------------------------------


def test_sender_without_certificate_is_553_at_mail_from(fd: CMSimulator) -> None:
    fd.set_sender_without_certificate(ALICE)
    raw, _ = kim_message()
    with pytest.raises(smtplib.SMTPSenderRefused) as exc:
        submit(fd, [BOB], raw)
    assert exc.value.smtp_code == 553
    assert b"encryption certificate" in exc.value.smtp_error
    assert fd.maildrop_uidls(BOB) == []
    fd.set_sender_without_certificate(ALICE, on=False)
    assert submit(fd, [BOB], raw, notify=None) == {}


def test_sender_without_certificate_at_rcpt_or_after_data(fd: CMSimulator) -> None:
    raw, _ = kim_message()
    fd.set_sender_without_certificate(ALICE, stage="rcpt")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        submit(fd, [BOB], raw)
    assert refused.value.recipients[BOB][0] == 553
    fd.set_sender_without_certificate(ALICE, stage="data")
    with pytest.raises(smtplib.SMTPDataError) as data_error:
        submit(fd, [BOB], raw)
    assert data_error.value.smtp_code == 553
    assert fd.maildrop_uidls(BOB) == []


# --- faults -------------------------------------------------------------------------------------


def test_421_at_mail_from_closes_the_connection_and_counts_down(fd: CMSimulator) -> None:
    fd.arm_smtp_fault(ALICE, "421")
    raw, _ = kim_message()
    conn = smtp_connect(fd)
    conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
    code, _ = conn.mail(ALICE)
    assert code == 421
    with pytest.raises(smtplib.SMTPServerDisconnected):
        conn.noop()
    conn.close()
    assert fd.maildrop_uidls(BOB) == []
    assert submit(fd, [BOB], raw, notify=None) == {}, "times=1: the next submission goes through"


@pytest.mark.parametrize(("code", "enhanced"), [("450", b"4.2.1"), ("452", b"4.2.2"), ("550", b"5.1.1")])
def test_one_recipient_refused_at_rcpt_the_others_get_the_mail(fd: CMSimulator, code: str, enhanced: bytes) -> None:
    fd.arm_rcpt_fault(CAROL, code)
    raw, _msgid = kim_message(to=[BOB, CAROL])
    refused = submit(fd, [BOB, CAROL], raw, notify=None)
    assert refused == {CAROL: (int(code), refused[CAROL][1])}
    assert refused[CAROL][1].startswith(enhanced)
    assert len(fd.maildrop_uidls(BOB)) == 1 and fd.maildrop_uidls(CAROL) == []
    # times=1: the next RCPT of that recipient is accepted.
    raw, _ = kim_message(to=[CAROL])
    assert submit(fd, [CAROL], raw, notify=None) == {}
    assert len(fd.maildrop_uidls(CAROL)) == 1


def test_an_rcpt_fault_is_armed_from_the_cli_and_unknown_codes_are_refused(fd: CMSimulator) -> None:
    cli = [sys.executable, "-m", "tisim", "fault", "rcpt", "--data-dir", str(fd.data_dir), "--address", CAROL]
    assert subprocess.run([*cli, "--code", "451", "--times", "0"], cwd=REPO, check=False).returncode == 0
    for _ in range(2):
        raw, _ = kim_message(to=[CAROL])
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            submit(fd, [CAROL], raw, notify=None)
        assert refused.value.recipients[CAROL][0] == 451
    bad = subprocess.run([*cli, "--code", "250"], cwd=REPO, check=False, capture_output=True)
    assert bad.returncode != 0
    with pytest.raises(ValueError, match="unknown RCPT code"):
        fd.arm_rcpt_fault(CAROL, "250")


def test_a_fault_for_another_sender_does_not_fire(fd: CMSimulator) -> None:
    fd.arm_smtp_fault(BOB, "421")
    raw, _ = kim_message()
    assert submit(fd, [CAROL], raw, notify=None) == {}


def test_timeout_at_mail_from_answers_nothing_and_delivers_nothing(fd: CMSimulator) -> None:
    fd.arm_smtp_fault("*", "timeout")
    conn = smtp_connect(fd)
    conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
    assert conn.sock is not None
    conn.sock.settimeout(0.5)  # the client's own read timeout is what ends this
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        conn.mail(ALICE)
    conn.close()
    assert fd.maildrop_uidls(BOB) == []
    raw, _ = kim_message()
    assert submit(fd, [BOB], raw, notify=None) == {}


def test_drop_after_data_delivers_but_never_answers(fd: CMSimulator) -> None:
    fd.arm_smtp_fault(ALICE, "drop-after-data")
    raw, msgid = kim_message(to=[BOB, OUTSIDE])
    with pytest.raises(smtplib.SMTPServerDisconnected, match=r"unexpectedly closed$"):
        submit(fd, [BOB, OUTSIDE], raw)
    # The message went out anyway (the "worker died after DATA" case seen from the client), once.
    assert len(fd.maildrop_uidls(BOB)) == 1
    assert len(fd.outside_messages()) == 1
    [dsn] = mails(fd, ALICE)
    assert dsn["In-Reply-To"] == msgid


def test_timeout_after_data_delivers_and_stays_silent(fd: CMSimulator) -> None:
    fd.arm_smtp_fault(ALICE, "timeout-after-data")
    raw, _ = kim_message()
    conn = smtp_connect(fd)
    conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
    conn.mail(ALICE)
    conn.rcpt(BOB)
    assert conn.sock is not None
    conn.putcmd("data")
    assert conn.getreply()[0] == 354
    conn.send(raw + b".\r\n")
    conn.sock.settimeout(0.5)
    # smtplib turns the read timeout into "disconnected"; it was a timeout, not a closed connection.
    with pytest.raises(smtplib.SMTPServerDisconnected, match="timed out"):
        conn.getreply()
    conn.close()
    assert len(fd.maildrop_uidls(BOB)) == 1


def test_451_fault_is_the_cm_internal_error_and_delivers_nothing(fd: CMSimulator) -> None:
    fd.arm_smtp_fault(ALICE, "451", times=2)
    raw, _ = kim_message()
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as exc:
            submit(fd, [BOB], raw)
        assert exc.value.smtp_code == 451
    assert fd.maildrop_uidls(BOB) == []
    assert submit(fd, [BOB], raw, notify=None) == {}


def test_unknown_fault_mode_is_refused(fd: CMSimulator) -> None:
    with pytest.raises(ValueError, match="unknown SMTP fault mode"):
        fd.arm_smtp_fault(ALICE, "explode")


# --- CM error mails on demand -------------------------------------------------------------------


def test_error_mail_on_demand_for_a_sent_message(fd: CMSimulator) -> None:
    raw, msgid = kim_message(to=[BOB, OUTSIDE], subject="Arztbrief")
    submit(fd, [BOB, OUTSIDE], raw, notify=None)
    uidl = fd.send_error_mail(msgid, "4002", recipients=[OUTSIDE])
    error = parse(fd.maildrop_read(ALICE, uidl))
    assert error["X-KIM-Fehlermeldung"] == "4002"
    assert error["In-Reply-To"] == msgid
    text, embedded = error.iter_parts()
    assert OUTSIDE in text.get_content() and "[4002]" in text.get_content()
    assert embedded.get_content_type() == "message/rfc822"
    assert embedded.get_content()["Message-ID"] == msgid
    with pytest.raises(KeyError):
        fd.send_error_mail("<never@kim.local>", "4004")
    with pytest.raises(ValueError):
        fd.send_error_mail(msgid, "boom")
