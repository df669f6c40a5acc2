"""The simulated Konnektor's three connection modes: plain HTTP, HTTPS + Basic auth, HTTPS + client certificate."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.fixtures.konnektor_sim import NS, Soap, assert_schema_valid
from tisim.konnektor import KonnektorSimulator
from tisim.tls import certificate_issue

Factory = Callable[..., KonnektorSimulator]


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _session(ca: str, *, auth: tuple[str, str] | None = None, cert: tuple[str, str] | None = None) -> requests.Session:
    session = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE from the environment silently replaces session.verify (requests #3829).
    session.trust_env = False
    session.verify, session.auth, session.cert = ca, auth, cert
    return session


def _foreign_client_cert(tmp_path: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fremdes Clientsystem")])
    cert = certificate_issue(name, name, key.public_key(), key, days=1)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _write(tmp_path / "foreign.pem", cert.public_bytes(serialization.Encoding.PEM)), _write(
        tmp_path / "foreign-key.pem", key_pem
    )


def test_plain_runtime_file(konnektor_sim: KonnektorSimulator) -> None:
    info = json.loads((konnektor_sim.data_dir / "konnektor.json").read_text())
    assert info["base_url"] == konnektor_sim.base_url
    assert info["base_url"].startswith("http://127.0.0.1:")
    assert info["mode"] == "plain"
    assert info["mandant_id"] == "Mandant1" and info["client_system_id"] == "KIMPortal"
    assert Path(info["qes_ca"]).read_bytes() == konnektor_sim.qes_ca_pem
    assert info["cards"][0]["holder_name"] == "Dr. med. Anna Sommer"


def test_basic_auth_over_https(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = konnektor_sim_factory(mode="basic", basic_user="portal", basic_password="geheim-123")
    assert sim.base_url.startswith("https://127.0.0.1:")
    ca = _write(tmp_path / "server-ca.pem", sim.server_ca_pem)
    info = json.loads((sim.data_dir / "konnektor.json").read_text())
    assert Path(info["server_ca"]).read_bytes() == sim.server_ca_pem
    assert (info["basic_user"], info["basic_password"]) == ("portal", "geheim-123")

    # connector.sds is open (ANCL_DVD_OPEN) and says TLS and client authentication are mandatory.
    sds = _session(ca).get(sim.base_url + "/connector.sds", timeout=10)
    root = etree.fromstring(sds.content)
    assert_schema_valid(root)
    assert root.findtext("SDS:TLSMandatory", namespaces=NS) == "true"
    assert root.findtext("SDS:ClientAutMandatory", namespaces=NS) == "true"
    assert all(e.get("Location", "").startswith("https://") for e in root.iterfind(".//SI:EndpointTLS", NS))

    anonymous = _session(ca)
    response = anonymous.post(sim.base_url + "/service/eventservice", data=b"<x/>", timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = _session(ca, auth=("portal", "falsch"))
    assert wrong.post(sim.base_url + "/service/eventservice", data=b"<x/>", timeout=10).status_code == 401

    session = _session(ca, auth=("portal", "geheim-123"))
    assert len(Soap(sim, session).get_cards().findall("CARD:Cards/CARD:Card")) == 1
    # Without the simulator's CA the server certificate is not trusted.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(sim.base_url + "/connector.sds", timeout=10, verify=True)


def test_basic_password_is_generated_when_not_given(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(mode="basic")
    assert len(sim.basic_password) >= 12
    assert json.loads((sim.data_dir / "konnektor.json").read_text())["basic_password"] == sim.basic_password


def test_client_certificate_mode(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = konnektor_sim_factory(mode="cert")
    ca = _write(tmp_path / "server-ca.pem", sim.server_ca_pem)
    cert_pem, key_pem = sim.issue_client_certificate("KIMPortal")
    cert = (_write(tmp_path / "client.pem", cert_pem), _write(tmp_path / "client-key.pem", key_pem))

    session = _session(ca, cert=cert)
    soap = Soap(sim, session)
    assert len(soap.get_cards().findall("CARD:Cards/CARD:Card")) == 1
    assert soap.get_job_number()

    # No certificate: the SOAP services refuse; a certificate of another CA: the handshake fails.
    anonymous = _session(ca)
    assert anonymous.post(sim.base_url + "/service/eventservice", data=b"<x/>", timeout=10).status_code == 403
    foreign = _session(ca, cert=_foreign_client_cert(tmp_path))
    with pytest.raises(requests.exceptions.ConnectionError):
        foreign.post(sim.base_url + "/service/eventservice", data=b"<x/>", timeout=10)
    # connector.sds and the loopback control calls need no client certificate.
    assert anonymous.get(sim.base_url + "/connector.sds", timeout=10).status_code == 200
    assert anonymous.get(sim.base_url + "/tisim/terminals/CT-1", timeout=10).json()["ct_id"] == "CT-1"


def test_stop_cuts_open_connections_and_restart_keeps_the_port(konnektor_sim: KonnektorSimulator) -> None:
    session = requests.Session()
    soap = Soap(konnektor_sim, session)
    assert soap.get_job_number()
    port = konnektor_sim.port
    konnektor_sim.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        soap.get_job_number()
    konnektor_sim.start()
    assert konnektor_sim.port == port
    assert Soap(konnektor_sim).get_job_number()
