"""Helpers for the Clientmodul tests: real clients that pin the fingerprint like the portal does."""

from __future__ import annotations

import hashlib
import poplib
import smtplib
import ssl
from pathlib import Path

from tisim.cm import CMSimulator

REPO = Path(__file__).resolve().parents[2]

ALICE = "alice@praxis-a.kim.telematik"
BOB = "bob@klinik-b.kim.telematik"
CAROL = "carol@klinik-b.kim.telematik"
PASSWORDS = {ALICE: "alice-pw", BOB: "bob-pw", CAROL: "carol-pw"}


def smtp_user(address: str) -> str:
    return f"{address}#{address.split('@')[1]}:465#1#KIM#7"


def pop3_user(address: str) -> str:
    return f"{address}#{address.split('@')[1]}:995#1#KIM#7"


def _client_context() -> ssl.SSLContext:
    # What a KIM client does with a self-signed CM certificate: no CA check, pin the fingerprint.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _assert_pinned(sock: object, sim: CMSimulator) -> None:
    assert isinstance(sock, ssl.SSLSocket)
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    assert hashlib.sha256(der).hexdigest() == sim.fingerprint


def smtp_connect(sim: CMSimulator) -> smtplib.SMTP:
    if sim.tls:
        conn: smtplib.SMTP = smtplib.SMTP_SSL("127.0.0.1", sim.smtp_port, context=_client_context(), timeout=30)
        _assert_pinned(conn.sock, sim)
    else:
        conn = smtplib.SMTP("127.0.0.1", sim.smtp_port, timeout=30)
    conn.ehlo("test-client")
    return conn


def pop3_connect(sim: CMSimulator) -> poplib.POP3:
    if sim.tls:
        conn: poplib.POP3 = poplib.POP3_SSL("127.0.0.1", sim.pop3_port, context=_client_context(), timeout=30)
        _assert_pinned(conn.sock, sim)
    else:
        conn = poplib.POP3("127.0.0.1", sim.pop3_port, timeout=30)
    return conn


def pop3_login(sim: CMSimulator, address: str) -> poplib.POP3:
    conn = pop3_connect(sim)
    conn.user(pop3_user(address))
    conn.pass_(PASSWORDS[address])
    return conn


def send(sim: CMSimulator, sender: str, recipients: list[str], raw: bytes, **kwargs: object) -> dict:
    with smtp_connect(sim) as conn:
        conn.login(smtp_user(sender), PASSWORDS[sender])
        return conn.sendmail(sender, recipients, raw, **kwargs)


def message(
    sender: str = ALICE, to: str = BOB, subject: str = "Befund", extra: str = "", body: str = "Hallo\r\n"
) -> bytes:
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Thu, 06 Oct 2022 11:27:22 +0200\r\n"
        f"Message-ID: <test-{subject}@praxis-a.kim.telematik>\r\n{extra}MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    ).encode()
