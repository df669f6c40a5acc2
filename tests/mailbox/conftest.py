from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid

import pytest

from mailbox.models import KimAccount
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tisim.cm import CMSimulator

HOSPITAL = "station-kardio@klinikum-test.kim.telematik-test"
PRAXIS = "praxis@praxis-test.kim.telematik-test"
PASSWORD = "kim-secret"


@pytest.fixture
def cm(tmp_path) -> Iterator[CMSimulator]:
    sim = CMSimulator(tmp_path / "cm", accounts={HOSPITAL: PASSWORD, PRAXIS: PASSWORD}, tls=True)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def account(cm) -> KimAccount:
    """A portal account at the simulated CM, TLS with the pinned certificate."""
    return KimAccountFactory(
        mailbox__address=HOSPITAL,
        mailbox__display_name="Station Kardiologie",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        password=PASSWORD,
    )


@pytest.fixture
def member(account):
    user = UserFactory(username="station")
    MembershipFactory(mailbox=account.mailbox, user=user)
    return user


def send_as_practice(cm, raw: bytes, *, sender: str = PRAXIS, to: str = HOSPITAL) -> None:
    """The practice (or *sender*) submits *raw* to the hospital's address (or *to*) through the simulated CM's SMTP,
    as any participant can."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL("127.0.0.1", cm.smtp_port, context=ctx, timeout=10) as smtp:
        smtp.login(f"{sender}#kim.telematik-test:465#M1#CS1#WP1", PASSWORD)
        smtp.sendmail(sender, [to], raw)


def simple_mail(subject: str = "Befund", *, to: str = HOSPITAL, body: str = "Hallo", **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Praxis Test <{PRAXIS}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="praxis-test.kim.telematik-test")
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()
