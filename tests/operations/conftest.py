"""The operations checks against the real systems: the simulated Konnektor (with an SMC-B and an eHBA), the
simulated Clientmodul, a small real slapd, PostgreSQL and Redis.

``ops`` sets everything up green: a KIM account whose fetch just succeeded, the Konnektor's cards in the
account's workplace, a directory that answers and fresh Celery heartbeat stamps.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

from mailbox.models import KimAccount
from operations.services import health, heartbeat
from operations.services.health import LOCK_KEY, REPORT_KEY
from operations.services.store import store
from signing.models import Workplace
from tests.fixtures.konnektor_sim import CLIENT_SYSTEM, MANDANT, WORKPLACE
from tests.mailbox.factories import KimAccountFactory
from tisim.cm import CMSimulator
from tisim.konnektor import KonnektorSimulator
from tisim.tls import certificate_issue
from tisim.vzd.generate import generate_file
from tisim.vzd.slapd import SlapdServer

ADDRESS = "kardiologie@klinikum-test.kim.telematik-test"
PASSWORD = "kim-secret"
SMCB_HOLDER = "Klinikum Test"
SMCB_TELEMATIK_ID = "5-2-123456789"


@pytest.fixture
def fresh_store() -> Iterator[None]:
    """No report, lock or heartbeat left from an earlier test (the store is Redis: it outlives a test)."""
    keys = [REPORT_KEY, LOCK_KEY, heartbeat.BEAT_KEY, heartbeat.WORKER_KEY]
    shared = store()  # the one of this test's start, even if the test points REDIS_URL elsewhere
    shared.delete_many(keys)
    health._local_report = None  # the per-process fallback of a test that took Redis away
    yield
    shared.delete_many(keys)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    data_dir = tmp_path_factory.mktemp("ops-vzd")
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, 50, seed=3)
    with SlapdServer(data_dir / "slapd", ldif) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


def write_cm_certificate(data_dir: Path, *, days_left: float) -> None:
    """The Clientmodul simulator keeps the certificate it finds in <data_dir>/tls: one that ends soon."""
    tls = data_dir / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "KIM-Clientmodul-Test")])
    now = dt.datetime.now(dt.UTC)
    ends = now + dt.timedelta(days=days_left)
    cert = certificate_issue(name, name, key.public_key(), key, not_before=now - dt.timedelta(days=300), not_after=ends)
    (tls / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tls / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


@dataclass
class Ops:
    konnektor: KonnektorSimulator
    cm: CMSimulator
    account: KimAccount
    slapd: SlapdServer

    def stamp_heartbeats(self, age: float = 0.0) -> None:
        heartbeat.stamp_beat(time.time() - age)
        heartbeat.stamp_worker("worker@test", time.time() - age)


@pytest.fixture
def cm_factory(tmp_path: Path) -> Iterator[Callable[..., CMSimulator]]:
    started: list[CMSimulator] = []

    def make(*, cert_days_left: float | None = None) -> CMSimulator:
        data_dir = tmp_path / f"cm{len(started)}"
        if cert_days_left is not None:
            write_cm_certificate(data_dir, days_left=cert_days_left)
        sim = CMSimulator(data_dir, accounts={ADDRESS: PASSWORD}, tls=True)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def kim_account(cm: CMSimulator, **kwargs: object) -> KimAccount:
    account: KimAccount = KimAccountFactory(
        mailbox__address=ADDRESS,
        mailbox__display_name="Kardiologie",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        mandant_id=MANDANT,
        client_system_id=CLIENT_SYSTEM,
        workplace_id=WORKPLACE,
        password=kwargs.pop("password", PASSWORD),
        **kwargs,
    )
    # As the worker records a successful fetch.
    KimAccount.objects.filter(pk=account.pk).update(status=KimAccount.Status.OK, last_success_at=timezone.now())
    account.refresh_from_db()
    return account


@pytest.fixture
def ops(
    settings,
    db,
    fresh_store: None,
    konnektor_sim: KonnektorSimulator,
    cm_factory: Callable[..., CMSimulator],
    slapd: SlapdServer,
) -> Ops:
    konnektor_sim.add_smcb(SMCB_HOLDER, SMCB_TELEMATIK_ID)
    settings.KIMPORTAL_KONNEKTOR_URL = konnektor_sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MODE = "plain"
    settings.KIMPORTAL_KONNEKTOR_MANDANT = MANDANT
    settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = CLIENT_SYSTEM
    settings.KIMPORTAL_VZD_URL = slapd.url
    settings.KIMPORTAL_VZD_CA_FILE = ""
    settings.KIMPORTAL_VZD_TLS_PIN = ""
    settings.KIMPORTAL_VZD_CLIENT_CERT_FILE = ""
    settings.KIMPORTAL_VZD_CLIENT_KEY_FILE = ""
    settings.KIMPORTAL_HEALTH_TIMEOUT = 3.0
    Workplace.objects.create(workplace_id=WORKPLACE, label="Station 3, Arztzimmer", ct_id="CT-1")
    cm = cm_factory()
    result = Ops(konnektor_sim, cm, kim_account(cm), slapd)
    result.stamp_heartbeats()
    return result
