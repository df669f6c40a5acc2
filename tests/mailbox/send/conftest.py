"""The send path against real parts: the simulated CM (SMTP/POP3 over TLS) and a small slapd as the VZD.

The directory holds the simulated CM's accounts with valid encryption certificates, and a few addresses that
fail pre-flight in each way (no certificate, expired, a foreign Telematik-ID, KIM 1.5 without "+").
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import current_app

from directory import certcache
from mailbox.models import KimAccount
from tests.mailbox.conftest import HOSPITAL, PASSWORD, PRAXIS
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tisim.cm import CMSimulator
from tisim.vzd.certs import make_pool
from tisim.vzd.generate import BASE_ENTRY, KIND_BY_NAME, Entry, _telematik_id, entry_ldif
from tisim.vzd.slapd import SlapdServer

OUTSIDE = "aerztin@praxis-draussen.kim.telematik-test"  # in the VZD, not hosted by the simulated CM
NO_CERT = "ohne-zertifikat@praxis-test.kim.telematik-test"
EXPIRED = "abgelaufen@praxis-test.kim.telematik-test"
FOREIGN_TID = "fremde-tid@praxis-test.kim.telematik-test"
SMALL_ONLY = "nur-klein@praxis-test.kim.telematik-test"
UNKNOWN = "unbekannt@praxis-test.kim.telematik-test"  # not in the VZD at all


def _entries() -> list[Entry]:
    pool = make_pool(7, size=3)
    valid = [p for p in pool if p.kind == "valid"]
    by_kind = {p.kind: p for p in pool}
    praxis = KIND_BY_NAME["arztpraxis"]
    spec: list[tuple[str, str, str, str | None]] = [
        # address, display name, KIM version, certificate kind (None: no certificate)
        (HOSPITAL, "Klinikum Test – Station Kardiologie", "1.5+", "valid"),
        (PRAXIS, "Praxis Test", "1.5+", "valid"),
        (OUTSIDE, "Praxis Draußen", "1.5+", "valid"),
        (NO_CERT, "Praxis ohne Zertifikat", "1.5", None),
        (EXPIRED, "Praxis abgelaufen", "1.5", "expired"),
        (FOREIGN_TID, "Praxis fremde Telematik-ID", "1.5", "mismatch"),
        (SMALL_ONLY, "Praxis nur klein", "1.5", "valid"),
    ]
    out = []
    for n, (address, name, version, cert) in enumerate(spec):
        entry = Entry(
            telematik_id=_telematik_id("1-20", 900000 + n),
            kind=praxis,
            display_name=name,
            city="Berlin",
            postal_code="10117",
            mails=[(address, version)],
        )
        if cert == "valid":
            entry.certs = [valid[n % len(valid)].for_telematik_id(entry.telematik_id)]
        elif cert is not None:
            entry.certs = [by_kind[cert].for_telematik_id(entry.telematik_id)]
        out.append(entry)
    return out


@pytest.fixture
def cm(tmp_path) -> Iterator[CMSimulator]:
    """The simulated CM with the Fachdienst behind it: DSNs, the outside drop, sender integrity."""
    sim = CMSimulator(tmp_path / "cm", accounts={HOSPITAL: PASSWORD, PRAXIS: PASSWORD}, tls=True, fachdienst=True)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="session")
def send_vzd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    data_dir = tmp_path_factory.mktemp("send-vzd")
    ldif = data_dir / "vzd.ldif"
    ldif.write_text(BASE_ENTRY + "".join(entry_ldif(e) for e in _entries()), encoding="utf-8")
    with SlapdServer(data_dir / "slapd", ldif) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def vzd(settings, send_vzd_server: SlapdServer) -> SlapdServer:
    certcache.clear()
    settings.KIMPORTAL_VZD_URL = send_vzd_server.url
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 5.0
    settings.KIMPORTAL_VZD_SEARCH_TIMEOUT = 5.0
    settings.KIMPORTAL_VZD_CA_FILE = ""
    settings.KIMPORTAL_VZD_TLS_PIN = ""
    settings.KIMPORTAL_VZD_CLIENT_CERT_FILE = ""
    settings.KIMPORTAL_VZD_CLIENT_KEY_FILE = ""
    return send_vzd_server


@pytest.fixture
def sent_tasks(monkeypatch) -> list[tuple[str, tuple]]:
    """Tasks the services queue (after commit), recorded instead of going to a broker: the tests are the worker."""
    sent: list[tuple[str, tuple]] = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args=(), **kw: sent.append((name, tuple(args))))
    return sent


@pytest.fixture
def praxis_account(cm, account) -> KimAccount:
    """The practice's own portal account at the same simulated CM (the other end of the round trip)."""
    return KimAccountFactory(
        mailbox__address=PRAXIS,
        mailbox__display_name="Praxis Test",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        password=PASSWORD,
    )


@pytest.fixture
def sender(account):
    user = UserFactory(username="station", first_name="Sabine", last_name="Sender")
    MembershipFactory(mailbox=account.mailbox, user=user)
    return user


ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def vzd_down(settings) -> str:
    from tisim.vzd.slapd import free_port

    certcache.clear()
    url = f"ldap://127.0.0.1:{free_port()}"
    settings.KIMPORTAL_VZD_URL = url
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 2.0
    return url
