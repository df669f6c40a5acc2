"""Client-system rules (kim-protocol §9.1) checked on the bytes that reached the simulated CM,
sender integrity refused as the Fachdienst does, and ``python -m tisim fault smtp``."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import make_msgid
from pathlib import Path

import pytest

from tests.tisim.support import ALICE, BOB, CAROL, REPO
from tests.tisim.test_cm_send import OUTSIDE, kim_message, submit
from tisim.cm import CMSimulator

GOOD_HEADERS = (
    "X-KIM-Dienstkennung: KIM-Mail;Default;V1.0\r\nX-KIM-Sendersystem: KIM-Portal;1.0.0\r\n"
    "X-KIM-Support: support@kimportal.example\r\nX-TI-User-Agent: KIMPortal-Test/1.0.0\r\n"
)


@pytest.fixture
def fd(make_cm: Callable[..., CMSimulator]) -> CMSimulator:
    return make_cm(fachdienst=True)


def rules(sim: CMSimulator, message_id: str | None = None) -> list[tuple[str, str]]:
    return [(v.rule, v.header) for v in sim.header_violations(message_id)]


def test_a_mail_that_follows_the_rules_has_no_violations(fd: CMSimulator) -> None:
    raw, msgid = kim_message(to=[BOB, OUTSIDE])
    submit(fd, [BOB, OUTSIDE], raw)
    assert fd.header_violations() == []
    assert [r.message_id for r in fd.sent_messages()] == [msgid]


def test_from_other_than_the_authenticated_address_is_refused_by_the_fachdienst(fd: CMSimulator) -> None:
    raw, msgid = kim_message()
    forged = raw.replace(f"From: {ALICE}".encode(), f"From: Praxis <{CAROL}>".encode())
    with pytest.raises(smtplib.SMTPDataError) as exc:
        submit(fd, [BOB], forged)
    assert exc.value.smtp_code == 550
    assert exc.value.smtp_error.startswith(b"5.7.1")
    assert fd.maildrop_uidls(BOB) == []
    [violation] = fd.header_violations(msgid)
    assert (violation.rule, violation.refused, violation.sender) == ("from-mismatch", True, ALICE)


def test_without_the_fachdienst_a_forged_from_is_only_noted(make_cm: Callable[..., CMSimulator]) -> None:
    sim = make_cm()
    raw, _ = kim_message()
    submit(sim, [BOB], raw.replace(f"From: {ALICE}".encode(), f"From: {CAROL}".encode()))
    assert len(sim.maildrop_uidls(BOB)) == 1
    [violation] = sim.header_violations()
    assert (violation.rule, violation.refused) == ("from-mismatch", False)


def test_a_display_name_and_other_case_are_fine(fd: CMSimulator) -> None:
    raw, _ = kim_message()
    named = raw.replace(f"From: {ALICE}".encode(), f'From: "Praxis A, Dr. Mustermann" <{ALICE.upper()}>'.encode())
    submit(fd, [BOB], named + b"", notify=None)
    assert fd.header_violations() == []


@pytest.mark.parametrize(
    ("extra", "rule"),
    [
        (f"Sender: {CAROL}\r\n", "sender-mismatch"),
        ("Reply-To: someone@example.org\r\n", "reply-to-domain"),
    ],
)
def test_sender_and_reply_to_rules_are_refused(fd: CMSimulator, extra: str, rule: str) -> None:
    raw, msgid = kim_message(extra=extra)
    with pytest.raises(smtplib.SMTPDataError) as exc:
        submit(fd, [BOB], raw)
    assert exc.value.smtp_code == 550
    assert rules(fd, msgid) == [(rule, rule.split("-")[0].title() if rule != "reply-to-domain" else "Reply-To")]


@pytest.mark.parametrize("extra", [f"Sender: {ALICE}\r\n", "Reply-To: sekretariat@praxis-a.kim.telematik-test\r\n", ""])
def test_allowed_sender_and_reply_to(fd: CMSimulator, extra: str) -> None:
    raw, _ = kim_message(extra=extra)
    assert submit(fd, [BOB], raw, notify=None) == {}
    assert fd.header_violations() == []


def test_sending_to_oneself_is_the_exception(fd: CMSimulator) -> None:
    raw, _ = kim_message(to=[ALICE], extra="Reply-To: someone@example.org\r\n")
    assert submit(fd, [ALICE], raw, notify=None) == {}
    [violation] = fd.header_violations()
    assert (violation.rule, violation.refused) == ("reply-to-domain", False)


def test_message_id_with_the_machine_host_name_is_noted(fd: CMSimulator) -> None:
    # What Python's make_msgid() does without a domain: the local host's FQDN on the right.
    raw, msgid = kim_message(msgid=make_msgid())
    submit(fd, [BOB], raw, notify=None)
    assert rules(fd, msgid) == [("message-id-host", "Message-ID")]
    raw, msgid = kim_message(msgid="<abc@127.0.0.1>")
    submit(fd, [BOB], raw, notify=None)
    assert rules(fd, msgid) == [("message-id-host", "Message-ID")]
    # Also on disk, for other processes (the demo, a test driving `python -m tisim run`).
    logged = [json.loads(line) for line in (fd.data_dir / "violations.jsonl").read_text().splitlines()]
    assert [(v["message_id"], v["rule"]) for v in logged][-1] == (msgid, "message-id-host")


def test_message_id_with_personal_data_is_noted(fd: CMSimulator) -> None:
    raw, msgid = kim_message(msgid="<alice.20221006@kim.local>")
    submit(fd, [BOB], raw, notify=None)
    assert rules(fd, msgid) == [("message-id-personal", "Message-ID")]


def test_a_short_hex_local_part_inside_a_uuid_is_chance_not_personal_data(fd: CMSimulator) -> None:
    cafe = "cafe@praxis-c.kim.telematik"
    raw, msgid = kim_message(to=[cafe], msgid="<0f3cafe1-77aa-4b2b-9c1e-2d0c5e9b1a11@kim.local>")
    submit(fd, [cafe], raw)
    assert rules(fd, msgid) == []


def test_a_message_id_submitted_twice_is_noted_and_delivered_twice(fd: CMSimulator) -> None:
    # The simulator does not deduplicate: two copies at the recipient are what the portal must avoid.
    raw, msgid = kim_message()
    submit(fd, [BOB], raw, notify=None)
    submit(fd, [BOB], raw, notify=None)
    assert len(fd.maildrop_uidls(BOB)) == 2
    assert rules(fd, msgid) == [("message-id-reused", "Message-ID")]


def test_missing_message_id_date_and_recipients_headers(fd: CMSimulator) -> None:
    raw = (f"From: {ALICE}\r\nSubject: x\r\n{GOOD_HEADERS}\r\nHallo\r\n").encode()
    submit(fd, [BOB], raw, notify=None)
    assert set(rules(fd)) == {("message-id-missing", "Message-ID"), ("missing", "Date"), ("missing", "To")}


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("X-KIM-Dienstkennung", "KIM-Mail Default V1.0"),
        ("X-KIM-Dienstkennung", "KIM-Mail;Default"),
        ("X-KIM-Sendersystem", "KIM-Portal"),
        ("X-KIM-Sendersystem", "KIM-Portal;eins"),
        ("X-KIM-Support", "Support-Hotline 0800 123"),
        ("X-TI-User-Agent", "KIM Portal 1.0"),
    ],
)
def test_value_patterns(fd: CMSimulator, header: str, value: str) -> None:
    raw, msgid = kim_message()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(header.encode() + b":")]
    submit(fd, [BOB], b"\r\n".join([*lines, f"{header}: {value}".encode()]) + b"\r\n\r\n" + body, notify=None)
    assert rules(fd, msgid) == [("pattern", header)]


@pytest.mark.parametrize("header", ["X-KIM-Dienstkennung", "X-KIM-Sendersystem", "X-KIM-Support", "X-TI-User-Agent"])
def test_mandatory_headers(fd: CMSimulator, header: str) -> None:
    raw, msgid = kim_message()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.startswith(header.encode() + b":")]
    submit(fd, [BOB], b"\r\n".join(lines) + b"\r\n\r\n" + body, notify=None)
    assert rules(fd, msgid) == [("missing", header)]


@pytest.mark.parametrize(
    "dienstkennung", ["Arztbrief;VHitG-Versand;V1.2", "EBZ;PAR;1.1.0", "eDokumentation-QSHLT;Lieferung;V2.0"]
)
def test_registry_dienstkennungen_fit_the_pattern(fd: CMSimulator, dienstkennung: str) -> None:
    raw, _ = kim_message()
    submit(fd, [BOB], raw.replace(b"KIM-Mail;Default;V1.0", dienstkennung.encode()), notify=None)
    assert fd.header_violations() == []


def _mail(dienstkennung: str, *, html_alternative: bool = False, html_attachment: bool = False) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, "Befund"
    msg["Date"], msg["Message-ID"] = "Thu, 06 Oct 2022 11:27:22 +0200", make_msgid(domain="kim.local")
    for line in GOOD_HEADERS.strip().split("\r\n"):
        name, _, value = line.partition(": ")
        msg[name] = value
    del msg["X-KIM-Dienstkennung"]
    msg["X-KIM-Dienstkennung"] = dienstkennung
    msg.set_content("Hallo")
    if html_alternative:
        msg.add_alternative("<p>Hallo</p>", subtype="html")
    if html_attachment:
        msg.add_attachment("<p>Befund</p>", subtype="html", filename="befund.html")
    return msg


def test_kim_mail_must_be_plain_text_but_attachments_may_be_anything(fd: CMSimulator) -> None:
    alternative = _mail("KIM-Mail;Default;V1.0", html_alternative=True)
    submit(fd, [BOB], alternative.as_bytes(policy=SMTP), notify=None)
    assert rules(fd, alternative["Message-ID"]) == [("kim-mail-not-plain", "Content-Type")]
    forward = _mail("KIM-Mail;Default;V1.0")
    # A forward embeds the original whole (message/rfc822, inline); its HTML is not the forward's body.
    forward.add_attachment(_mail("KIM-Mail;Default;V1.0", html_alternative=True), disposition="inline")
    for mail in (
        _mail("KIM-Mail;Default;V1.0", html_attachment=True),
        _mail("Arztbrief;VHitG-Versand;V1.2", html_alternative=True),
        forward,
    ):
        submit(fd, [BOB], mail.as_bytes(policy=SMTP), notify=None)
        assert rules(fd, mail["Message-ID"]) == []


def test_reset_forgets_what_was_seen(fd: CMSimulator) -> None:
    raw, _ = kim_message(to=[OUTSIDE], msgid=make_msgid())
    submit(fd, [OUTSIDE], raw)
    fd.set_recipient_state(BOB, "unknown")
    fd.reset_send_state()
    assert fd.header_violations() == [] and fd.sent_messages() == [] and fd.outside_messages() == []
    submit(fd, [BOB], kim_message()[0], notify=None)
    assert len(fd.maildrop_uidls(BOB)) == 1


# --- python -m tisim fault smtp ----------------------------------------------------------------------


def _tisim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tisim", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_cli_arms_an_smtp_fault(fd: CMSimulator) -> None:
    result = _tisim("fault", "smtp", "--data-dir", fd.data_dir, "--address", ALICE, "--mode", "421", "--times", 2)
    assert result.returncode == 0, result.stderr
    assert json.loads(_tisim("fault", "list", "--data-dir", fd.data_dir).stdout)["smtp"] == {
        ALICE: {"mode": "421", "times": 2}
    }
    raw, _ = kim_message()
    for _ in range(2):
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:
            submit(fd, [BOB], raw)
        assert exc.value.smtp_code == 421
    assert submit(fd, [BOB], raw, notify=None) == {}


def test_cli_drop_after_data_until_cleared(fd: CMSimulator) -> None:
    armed = _tisim(
        "fault", "smtp", "--data-dir", fd.data_dir, "--address", "*", "--mode", "drop-after-data", "--times", 0
    )
    assert armed.returncode == 0, armed.stderr
    raw, _ = kim_message()
    for _ in range(2):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            submit(fd, [BOB], raw, notify=None)
    assert _tisim("fault", "clear", "--data-dir", fd.data_dir).returncode == 0
    assert submit(fd, [BOB], raw, notify=None) == {}
    assert len(fd.maildrop_uidls(BOB)) == 3


def test_cli_refuses_an_unknown_mode(fd: CMSimulator) -> None:
    result = _tisim("fault", "smtp", "--data-dir", fd.data_dir, "--address", ALICE, "--mode", "boom")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_the_simulators_own_sender_follows_the_rules(fd: CMSimulator) -> None:
    # Without --dienstkennung it leaves the header out on purpose (the CM adds the default).
    result = _tisim(
        "send",
        "--data-dir",
        fd.data_dir,
        "--from",
        CAROL,
        "--to",
        BOB,
        "--subject",
        "Hallo",
        "--dienstkennung",
        "KIM-Mail;Default;V1.0",
    )
    assert result.returncode == 0, result.stderr
    assert fd.header_violations() == []
