"""A real slapd with ~20,000 generated VZD entries, shared by the directory tests (and the e2e test).

``vzd_server`` (session): generates the LDIF (seed 7), slapadds it into a fresh mdb in a temporary directory and
starts slapd on a free 127.0.0.1 port (≈ 5 s). ``vzd`` (function) points the portal's settings at it.
``vzd_ldaps`` (module): a small slapd that also speaks LDAPS with a self-signed certificate.
"""

from __future__ import annotations

import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import ldap3
import pytest

from directory import certcache
from tisim.vzd.certs import KonnektorTls, make_konnektor_tls
from tisim.vzd.generate import generate_file
from tisim.vzd.slapd import ROOT_DN, ROOT_PW, SlapdServer, free_port

ENTRIES = 20_000
SEED = 7
REPO = Path(__file__).resolve().parents[2]
SPEC_DIR = REPO.parent / "shared" / "spec" / "vzd"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"


@pytest.fixture(scope="session")
def vzd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    data_dir = tmp_path_factory.mktemp("vzd")
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, ENTRIES, seed=SEED)
    server = SlapdServer(data_dir / "slapd", ldif).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)  # pytest would keep the last three 20,000-entry databases


@pytest.fixture(scope="module")
def vzd_demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """The demo's data set (5,000 entries, seed 1: what `vzd-serve` loads by default), small enough that a
    search stays under the VZD's 100-entry cap and whole results can be compared."""
    data_dir = tmp_path_factory.mktemp("vzd-demo")
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, 5000, seed=1)
    with SlapdServer(data_dir / "slapd", ldif) as server:
        yield server
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def vzd_demo(settings, vzd_demo_server: SlapdServer) -> SlapdServer:
    certcache.clear()
    settings.KIMPORTAL_VZD_URL = vzd_demo_server.url
    settings.KIMPORTAL_VZD_CA_FILE = ""
    return vzd_demo_server


@pytest.fixture(scope="module")
def konnektor_tls(tmp_path_factory: pytest.TempPathFactory) -> KonnektorTls:
    return make_konnektor_tls(tmp_path_factory.mktemp("konnektor-tls"))


@pytest.fixture(scope="module")
def vzd_konnektor(tmp_path_factory: pytest.TempPathFactory, konnektor_tls: KonnektorTls) -> Iterator[SlapdServer]:
    """LDAPS like a Konnektor's LDAP proxy: a certificate naming the card, not the host, and client certificates
    demanded (TLSVerifyClient demand)."""
    data_dir = tmp_path_factory.mktemp("vzd-konnektor")
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, 50, seed=SEED)
    with SlapdServer(data_dir / "slapd", ldif, konnektor_tls=konnektor_tls, verify_client="demand") as server:
        yield server


@pytest.fixture(scope="module")
def vzd_ldaps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    data_dir = tmp_path_factory.mktemp("vzd-ldaps")
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, 50, seed=SEED)
    with SlapdServer(data_dir / "slapd", ldif, ldaps=True) as server:
        yield server


@pytest.fixture
def vzd(settings, vzd_server: SlapdServer) -> SlapdServer:
    certcache.clear()
    settings.KIMPORTAL_VZD_URL = vzd_server.url
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 5.0
    settings.KIMPORTAL_VZD_SEARCH_TIMEOUT = 5.0
    settings.KIMPORTAL_VZD_CA_FILE = ""
    settings.KIMPORTAL_VZD_TLS_PIN = ""
    settings.KIMPORTAL_VZD_CLIENT_CERT_FILE = ""
    settings.KIMPORTAL_VZD_CLIENT_KEY_FILE = ""
    return vzd_server


@pytest.fixture
def vzd_admin(vzd_server: SlapdServer) -> Iterator[ldap3.Connection]:
    """A root connection to the test slapd, to add, modify and delete entries."""
    conn = ldap3.Connection(ldap3.Server(vzd_server.url), user=ROOT_DN, password=ROOT_PW, auto_bind=True)
    yield conn
    conn.unbind()


@pytest.fixture
def vzd_down(settings) -> str:
    """Settings pointing at a port where nothing listens."""
    url = f"ldap://127.0.0.1:{free_port()}"
    settings.KIMPORTAL_VZD_URL = url
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 2.0
    return url


@pytest.fixture
def vzd_silent(settings) -> Iterator[str]:
    """A server that accepts connections and reads, but never answers (a hung directory/proxy)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    url = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
    settings.KIMPORTAL_VZD_URL = url
    settings.KIMPORTAL_VZD_SEARCH_TIMEOUT = 1.0
    settings.KIMPORTAL_VZD_CONNECT_TIMEOUT = 1.0
    yield url
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="station", password="kim-portal-test-pw")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user(username="other", password="kim-portal-test-pw")


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def extra_entry(vzd_admin):
    """A fresh entry for tests that change the directory (Praxis Müller's certificate, new names)."""
    vzd_admin.search("dc=data,dc=vzd", f"(mail={PRAXIS})", attributes=["userCertificate;binary"])
    cert = vzd_admin.response[0]["raw_attributes"]["userCertificate;binary"][0]
    uid = str(uuid.uuid4())
    tid = "1-200000000000004711"  # the certificate was issued for this Telematik-ID
    address = f"refresh-{uid[:8]}@tisim.kim.telematik-test"
    dn = f"uid={uid},dc=data,dc=vzd"
    ok = vzd_admin.add(
        dn,
        ["top", "vzd-komleview"],
        {
            "uid": uid,
            "telematikID": tid,
            "displayName": "Praxis Refresh",
            "cn": "Praxis Refresh",
            "postalCode": "10117",
            "l": "Berlin",
            "mail": address,
            "komLeData": f"1.5,{address}",
            "changeDateTime": "2026-11-01T10:00:00.000000+01:00",
            "userCertificate;binary": cert,
        },
    )
    assert ok, vzd_admin.result
    yield dn, address
    vzd_admin.delete(dn)


PAGED_PLACE = "Blätterstadt"
PAGED_COUNT = 45


@pytest.fixture
def paged_entries(vzd_admin: ldap3.Connection) -> Iterator[list[str]]:
    """45 KIM practices in one town (more than two pages of 20), named "Praxis Seitenweise 01" … "45": equal
    scores and name lengths, so they rank by name. Each carries the Müller practice's certificate and Telematik-ID,
    so each can be picked. Removed again afterwards (the slapd is shared by the session)."""
    vzd_admin.search("dc=data,dc=vzd", f"(mail={PRAXIS})", attributes=["userCertificate;binary"])
    cert = vzd_admin.response[0]["raw_attributes"]["userCertificate;binary"][0]
    names, dns = [], []
    try:
        for n in range(1, PAGED_COUNT + 1):
            uid = str(uuid.uuid4())
            dn = f"uid={uid},dc=data,dc=vzd"
            name = f"Praxis Seitenweise {n:02d}"
            attributes = {
                "uid": uid,
                "telematikID": "1-200000000000004711",
                "displayName": name,
                "l": PAGED_PLACE,
                "mail": f"seitenweise-{n:02d}@tisim.kim.telematik-test",
                "userCertificate;binary": cert,
            }
            assert vzd_admin.add(dn, ["top", "vzd-komleview"], attributes), vzd_admin.result
            dns.append(dn)
            names.append(name)
        yield names
    finally:
        for dn in dns:
            vzd_admin.delete(dn)
