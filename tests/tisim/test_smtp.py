from __future__ import annotations

import email
import smtplib
from email.message import EmailMessage
from email.policy import default

import pytest

from tests.tisim.support import ALICE, BOB, CAROL, PASSWORDS, message, send, smtp_connect, smtp_user
from tisim.cm import CMSimulator
from tisim.cm.messages import DECRYPTION_NOTE
from tisim.cm.smtp import fold_reply

UNKNOWN = "nobody@elsewhere.kim.telematik"


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_ehlo_advertises_what_a_kim_cm_does(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn:
        assert conn.esmtp_features["size"] == "734003200"
        assert set(conn.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        assert "dsn" in conn.esmtp_features
        assert "enhancedstatuscodes" in conn.esmtp_features


def test_delivery_adds_the_receiving_cm_headers_and_keeps_the_bytes(any_cm: CMSimulator) -> None:
    raw = message(body="Zeile 1\r\n.Zeile mit Punkt\r\n")
    assert send(any_cm, ALICE, [BOB], raw) == {}

    [uidl] = any_cm.maildrop_uidls(BOB)
    delivered = any_cm.maildrop_read(BOB, uidl)
    note = DECRYPTION_NOTE.encode()
    assert delivered.endswith(raw + note), "the CM prepends headers and appends its Vermerk, nothing else"
    prepended = delivered[: -len(raw + note)].decode()
    lines = prepended.split("\r\n")
    assert lines[0] == f"Return-Path: <{ALICE}>"
    assert lines[1].startswith("Received: from test-client")
    assert "X-KIM-DecryptionResult: 00" in lines
    assert "X-KIM-IntegrityCheckResult: 01" in lines
    assert "X-KIM-Dienstkennung: KIM-Mail;Default;V1.0" in lines
    assert any_cm.maildrop_uidls(ALICE) == []


def test_an_existing_dienstkennung_is_not_duplicated(cm: CMSimulator) -> None:
    send(cm, ALICE, [BOB], message(extra="X-KIM-Dienstkennung: eAU;Lieferung;V1.0\r\n"))
    [uidl] = cm.maildrop_uidls(BOB)
    msg = _parse(cm.maildrop_read(BOB, uidl))
    assert msg.get_all("X-KIM-Dienstkennung") == ["eAU;Lieferung;V1.0"]


def test_auth_login_works_too(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn:
        conn.user, conn.password = smtp_user(ALICE), PASSWORDS[ALICE]
        code, _ = conn.auth("LOGIN", conn.auth_login, initial_response_ok=False)
        assert code == 235


@pytest.mark.parametrize(
    ("username", "complaint"),
    [
        (f"{ALICE}#praxis-a.kim.telematik:465#1#KIM", b"at least 5"),
        (f"{ALICE}#*#1##7", b"ClientSystemId"),
        (f"{ALICE}#*#*#KIM#7", b"MandantId"),
        ("alice-at-praxis#*#1#KIM#7", b"valid mail address"),
        (ALICE, b"no KIM call context"),
    ],
)
def test_malformed_username_is_refused_with_535(cm: CMSimulator, username: str, complaint: bytes) -> None:
    with smtp_connect(cm) as conn, pytest.raises(smtplib.SMTPAuthenticationError) as exc:
        conn.login(username, PASSWORDS[ALICE])
    assert exc.value.smtp_code == 535
    assert exc.value.smtp_error.startswith(b"5.7.8")
    assert complaint in exc.value.smtp_error


def test_placeholder_for_the_fachdienst_is_accepted(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn:
        assert conn.login(f"{ALICE}#*#1#KIM#7#*", PASSWORDS[ALICE])[0] == 235


def test_plain_username_only_when_configured(make_cm) -> None:
    sim = make_cm(allow_plain_username=True)
    with smtp_connect(sim) as conn:
        assert conn.login(ALICE, PASSWORDS[ALICE])[0] == 235


def test_wrong_password_is_refused(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn, pytest.raises(smtplib.SMTPAuthenticationError) as exc:
        conn.login(smtp_user(ALICE), "wrong")
    assert exc.value.smtp_code == 535


def test_unknown_account_is_refused(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn, pytest.raises(smtplib.SMTPAuthenticationError):
        conn.login(smtp_user(UNKNOWN), "whatever")


def test_mail_needs_authentication(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn:
        code, _ = conn.mail(ALICE)
    assert code == 530


def test_mail_from_must_be_the_authenticated_address(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn:
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
        code, reply = conn.mail(BOB)
        assert code == 550
        assert reply.startswith(b"5.7.1")
        assert conn.mail(ALICE.upper())[0] == 250  # addresses compare case-insensitively


def test_every_rcpt_is_accepted_with_dsn_parameters(cm: CMSimulator) -> None:
    with smtp_connect(cm) as conn:
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
        assert conn.mail(ALICE, ["RET=HDRS", "ENVID=abc123"])[0] == 250
        assert conn.rcpt(UNKNOWN, ["NOTIFY=SUCCESS,FAILURE"])[0] == 250
        assert conn.rcpt(BOB, ["NOTIFY=SUCCESS,FAILURE,DELAY", f"ORCPT=rfc822;{BOB}"])[0] == 250
        assert conn.rcpt(CAROL, ["NOTIFY=BOGUS"])[0] == 501
        assert conn.data(message())[0] == 250
    assert len(cm.maildrop_uidls(BOB)) == 1


def test_unknown_recipients_are_removed_and_reported_to_the_sender(cm: CMSimulator) -> None:
    raw = message(subject="Teilversand")
    send(cm, ALICE, [BOB, UNKNOWN], raw, rcpt_options=["NOTIFY=SUCCESS,FAILURE"])

    assert len(cm.maildrop_uidls(BOB)) == 1
    [uidl] = cm.maildrop_uidls(ALICE)
    report = _parse(cm.maildrop_read(ALICE, uidl))
    assert report["X-KIM-Fehlermeldung"] == "4004"
    assert report["In-Reply-To"] == "<test-Teilversand@praxis-a.kim.telematik>"
    assert report["To"].addresses[0].addr_spec == ALICE
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    text, status, headers = report.iter_parts()
    assert UNKNOWN in text.get_content()
    assert "Verschlüsselungszertifikate" in text.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"].startswith("dns;")
    assert per_recipient["Final-Recipient"] == f"rfc822; {UNKNOWN}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert headers.get_content_type() == "text/rfc822-headers"


def test_no_reachable_recipient_is_451_and_stores_nothing(cm: CMSimulator) -> None:
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(cm, ALICE, [UNKNOWN, "other@elsewhere.kim.telematik"], message())
    assert exc.value.smtp_code == 451
    assert exc.value.smtp_error.startswith(b"4.3.0")
    for address in (ALICE, BOB, CAROL):
        assert cm.maildrop_uidls(address) == []


def test_one_copy_per_recipient_even_if_named_twice(cm: CMSimulator) -> None:
    send(cm, ALICE, [BOB, CAROL, BOB.upper()], message())
    assert len(cm.maildrop_uidls(BOB)) == 1
    assert len(cm.maildrop_uidls(CAROL)) == 1


def test_unknown_fault_header_is_refused(cm: CMSimulator) -> None:
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(cm, ALICE, [BOB], message(extra="X-Tisim-Fault: integrty\r\n"))
    assert exc.value.smtp_code == 554
    assert cm.maildrop_uidls(BOB) == []


def test_server_down_and_back_on_the_same_port(cm: CMSimulator) -> None:
    port = cm.smtp_port
    cm.stop()
    with pytest.raises(ConnectionRefusedError):
        smtp_connect(cm)
    cm.start()
    assert cm.smtp_port == port
    assert send(cm, ALICE, [BOB], message()) == {}


def _raw_reply_lines(sock_file) -> list[bytes]:
    lines = []
    while True:
        line = sock_file.readline(100_000)
        lines.append(line)
        if line[3:4] != b"-":
            return lines


@pytest.mark.parametrize("known", [True, False], ids=["some-removed", "all-removed"])
def test_400_recipients_get_reply_lines_within_rfc_5321(cm: CMSimulator, known: bool) -> None:
    # 400 unknown recipients, each named in the reply after DATA: one line would be ~14,000 octets,
    # beyond smtplib's 8,192 ("line too long") and RFC 5321's 512.
    unknown = [f"empfaenger-nummer-{i:03d}@unbekannt.kim.telematik" for i in range(400)]
    recipients = [BOB, *unknown] if known else unknown
    conn = smtp_connect(cm)
    with conn:
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
        assert conn.mail(ALICE)[0] == 250
        for rcpt in recipients:
            assert conn.rcpt(rcpt)[0] == 250
        conn.putcmd("data")
        assert conn.getreply()[0] == 354
        conn.send(message(subject="Rundschreiben") + b".\r\n")
        # Read the raw reply off the socket: every line must fit, not just the joined text.
        assert conn.file is not None
        lines = _raw_reply_lines(conn.file)
        assert all(len(line) <= 512 and line.endswith(b"\r\n") for line in lines), [len(x) for x in lines]
        assert len(lines) > 1
        code = b"250" if known else b"451"
        enhanced = b"2.0.0" if known else b"4.3.0"
        assert all(line[:3] == code and line[4:9] == enhanced for line in lines)
        text = b" ".join(line[10:].strip() for line in lines).decode()
        assert all(address in text for address in unknown)
    assert len(cm.maildrop_uidls(BOB)) == (1 if known else 0)


def test_400_recipients_through_smtplib_sendmail(cm: CMSimulator) -> None:
    unknown = [f"empfaenger-nummer-{i:03d}@unbekannt.kim.telematik" for i in range(400)]
    # smtplib raised SMTPServerDisconnected("line too long") here before the reply was folded.
    assert send(cm, ALICE, [BOB, *unknown], message(subject="Rundschreiben")) == {}
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(cm, ALICE, unknown, message(subject="Rundschreiben 2"))
    assert exc.value.smtp_code == 451
    assert unknown[-1].encode() in exc.value.smtp_error


@pytest.mark.parametrize(
    "reply",
    [
        "250 2.0.0 " + ", ".join(f"r{i}@x.kim.telematik" for i in range(100)),
        "550 " + "x" * 2000,  # one word longer than a line, no enhanced code
        "451 4.3.0 short",
    ],
)
def test_fold_reply_keeps_every_line_within_512_octets(reply: str) -> None:
    folded = fold_reply(reply)
    lines = folded.split("\r\n")
    assert all(len(line) + 2 <= 512 for line in lines)
    assert all(line[3] == "-" for line in lines[:-1]) and lines[-1][3] == " "
    code, _, rest = reply.partition(" ")
    assert all(line.startswith(code) for line in lines)
    if len(reply) + 2 <= 512:
        assert folded == reply
    enhanced = rest.split(" ")[0] if rest[:1].isdigit() else ""
    strip = len(code) + 1 + (len(enhanced) + 1 if enhanced else 0)
    assert "".join(line[strip:] for line in lines).replace(" ", "") == rest[len(enhanced) :].replace(" ", "")
