"""ExternalAuthenticate (AuthSignatureService 7.4.1) and ReadCardCertificate for any certificate reference through
KonnektorClient, against the simulated Konnektor over its real sockets; every request is validated against the
official schemas when the test ends (``make_client``). The simulator's helpers for the Account Manager simulator
(tisim.konnektor.pki) check what the client got."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
import zeep
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from konnektor import CallContext, KonnektorError, messages, telematik_id_of
from konnektor.client import WSDL_FILES, binding_name, wsdl_document
from tests.fixtures.konnektor_sim import (
    CLIENT_SYSTEM,
    MANDANT,
    SMCB_HOLDER,
    SMCB_TELEMATIK_ID,
    WORKPLACE,
    add_smcb,
    client_options,
)
from tests.konnektor.support import OfficialSchemas
from tisim.konnektor.pki import (
    SMCB_CA_NAME,
    CertificateRejected,
    Pki,
    ca_certificate_pem,
    verify_auth_signature,
    verify_card_certificate,
)

CTX = CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE)
DIGEST = hashlib.sha256(b"eyJhbGciOiJCUDI1NlIxIn0.eyJzdWIiOiJ0ZXN0In0").digest()


def test_ecc_signature_with_the_smcb_aut_key(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    smcb = add_smcb(konnektor_sim)
    client, capture = make_client(konnektor_sim.base_url)
    [card] = client.get_cards(CTX, "SMC-B")
    assert card.card_handle == smcb.card_handle

    certificate = client.read_card_certificate(CTX, card.card_handle, "C.AUT", "ECC")
    cert = x509.load_der_x509_certificate(certificate)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "brainpoolP256r1"
    assert cert.issuer == konnektor_sim.pki.smcb_ca.cert.subject
    assert SMCB_CA_NAME in cert.issuer.rfc4514_string()
    assert ExtendedKeyUsageOID.CLIENT_AUTH in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert telematik_id_of(certificate) == SMCB_TELEMATIK_ID
    # The expiry the operations page shows: GetCards reports the C.AUT's end of validity.
    assert card.certificate_expires == cert.not_valid_after_utc.date()
    assert card.certificate_expires > dt.date.today() + dt.timedelta(days=365)

    signature = client.external_authenticate(CTX, card.card_handle, DIGEST)
    assert len(signature) == 64  # r||s
    verify_auth_signature(certificate, DIGEST, signature)
    assert verify_card_certificate(certificate, konnektor_sim.data_dir).subject == cert.subject
    # A signature of other data does not verify.
    with pytest.raises(CertificateRejected):
        verify_auth_signature(certificate, hashlib.sha256(b"anders").digest(), signature)
    assert "ExternalAuthenticate" in capture.operations()
    sent = next(s for s in capture.sent if s.operation == "ExternalAuthenticate")
    assert sent.soap_action == "http://ws.gematik.de/conn/SignatureService/v7.4#ExternalAuthenticate"


def test_rsa_signature_is_pss(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    smcb = add_smcb(konnektor_sim, aut_algorithms=("ECC", "RSA"))
    client, _ = make_client(konnektor_sim.base_url)
    certificate = client.read_card_certificate(CTX, smcb.card_handle, "C.AUT", "RSA")
    assert isinstance(x509.load_der_x509_certificate(certificate).public_key(), rsa.RSAPublicKey)
    signature = client.external_authenticate(CTX, smcb.card_handle, DIGEST, crypt="RSA")
    assert len(signature) == 256
    verify_auth_signature(certificate, DIGEST, signature)
    # ECC and RSA AUT certificates are different certificates of the same card.
    assert certificate != client.read_card_certificate(CTX, smcb.card_handle, "C.AUT", "ECC")


def test_in_the_secure_modes(konnektor_sim_factory, make_client) -> None:  # type: ignore[no-untyped-def]
    for mode in ("basic", "cert"):
        sim = konnektor_sim_factory(mode=mode, hba=False)
        smcb = add_smcb(sim)
        client, _ = make_client(sim.base_url, **client_options(sim))
        certificate = client.read_card_certificate(CTX, smcb.card_handle)
        verify_auth_signature(certificate, DIGEST, client.external_authenticate(CTX, smcb.card_handle, DIGEST))


def test_refusals(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    smcb = add_smcb(konnektor_sim)
    hba = konnektor_sim.cards[0]
    client, capture = make_client(konnektor_sim.base_url)
    with pytest.raises(ValueError):
        client.external_authenticate(CTX, smcb.card_handle, b"not a digest")
    with pytest.raises(ValueError):
        client.external_authenticate(CTX, smcb.card_handle, DIGEST, crypt="DSA")
    assert capture.sent == []
    # The simulated eHBA has no AUT key; the SMC-B here has no RSA one.
    with pytest.raises(KonnektorError) as hba_refused:
        client.external_authenticate(CTX, hba.card_handle, DIGEST)
    assert hba_refused.value.code == 4209
    with pytest.raises(KonnektorError) as no_rsa:
        client.external_authenticate(CTX, smcb.card_handle, DIGEST, crypt="RSA")
    assert no_rsa.value.code == 4209
    with pytest.raises(KonnektorError) as gone:
        client.external_authenticate(CTX, "SMC-B-0-GONE", DIGEST)
    assert gone.value.code == 4101
    konnektor_sim.arm_fault("card-busy")
    with pytest.raises(KonnektorError) as busy:
        client.external_authenticate(CTX, smcb.card_handle, DIGEST)
    assert busy.value.code == 4060
    smcb.pin_state = "BLOCKED"
    with pytest.raises(KonnektorError) as blocked:
        client.external_authenticate(CTX, smcb.card_handle, DIGEST)
    assert blocked.value.code == 4085


def test_read_card_certificate_for_each_reference(konnektor_sim_factory, make_client) -> None:  # type: ignore[no-untyped-def]
    sim = konnektor_sim_factory(hba=False)
    hba = sim.add_hba("Dr. G21", "1-21", ct_id="CT-1", workplaces=(WORKPLACE,), generation="G2.1")
    smcb = add_smcb(sim)
    client, _ = make_client(sim.base_url)
    assert client.read_card_certificate(CTX, hba.card_handle, "C.QES", "RSA") == hba.certificate_der
    assert client.read_card_certificate(CTX, hba.card_handle, "C.QES", "ECC") == hba.ecc_certificate_der
    assert client.read_qes_certificates(CTX, hba.card_handle) == [hba.certificate_der, hba.ecc_certificate_der]
    enc = client.read_card_certificate(CTX, smcb.card_handle, "C.ENC", "ECC")
    assert x509.load_der_x509_certificate(enc).subject.rfc4514_string().startswith(f"CN={SMCB_HOLDER}")
    # The eHBA here has no C.AUT; a reference or algorithm that does not exist is refused.
    with pytest.raises(KonnektorError) as no_aut:
        client.read_card_certificate(CTX, hba.card_handle, "C.AUT", "ECC")
    assert no_aut.value.code == 4149
    with pytest.raises(ValueError):
        client.read_card_certificate(CTX, hba.card_handle, "C.XYZ", "ECC")
    with pytest.raises(ValueError):
        client.read_card_certificate(CTX, hba.card_handle, "C.QES", "RSA_ECC")
    g20 = sim.add_hba("Dr. G20", "1-20", ct_id="CT-1", workplaces=(WORKPLACE,))
    with pytest.raises(KonnektorError) as no_ecc:
        client.read_card_certificate(CTX, g20.card_handle, "C.QES", "ECC")
    assert no_ecc.value.code == 4258


def test_pki_helpers_for_the_account_manager(konnektor_sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    smcb = add_smcb(konnektor_sim)
    # The same CA whoever asks first: the Account Manager simulator reads it from the data directory.
    assert ca_certificate_pem(konnektor_sim.data_dir) == konnektor_sim.pki.smcb_ca.cert_pem
    certificate = smcb.aut_keys["ECC"].cert_der
    verify_card_certificate(certificate, konnektor_sim.data_dir)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=6 * 365)
    with pytest.raises(CertificateRejected, match="not valid"):
        verify_card_certificate(certificate, konnektor_sim.data_dir, at=later)
    # A certificate of another simulator's CA (same names, other keys) and the QES certificate are refused.
    other = Pki(tmp_path / "other")
    foreign = other.auth_certificate(
        smcb.iccsn, holder_name=SMCB_HOLDER, telematik_id=SMCB_TELEMATIK_ID, profession_item="Krankenhaus",
        profession_oid="1.2.276.0.76.4.53", algorithm="ECC",
    )  # fmt: skip
    with pytest.raises(CertificateRejected, match="not signed"):
        verify_card_certificate(foreign.cert_der, konnektor_sim.data_dir)
    with pytest.raises(CertificateRejected, match="issuer"):
        verify_card_certificate(konnektor_sim.cards[0].certificate_der, konnektor_sim.data_dir)
    with pytest.raises(CertificateRejected):
        verify_card_certificate(b"kein Zertifikat", konnektor_sim.data_dir)
    with pytest.raises(CertificateRejected, match="64 bytes"):
        verify_auth_signature(certificate, DIGEST, b"\x01" * 10)


def test_request_is_valid_against_the_official_schemas(official_schemas: OfficialSchemas) -> None:
    client = zeep.Client(wsdl_document(WSDL_FILES[("AuthSignatureService", (7, 4))]))
    proxy = client.create_service(binding_name("AuthSignatureService", (7, 4)), "http://127.0.0.1:9/x")
    for crypt in ("ECC", "RSA"):
        envelope = client.create_message(
            proxy, "ExternalAuthenticate", **messages.external_authenticate(CTX, "SMC-B-1", DIGEST, crypt=crypt)
        )
        assert official_schemas.validate_envelope(envelope) == "ExternalAuthenticate"
        # AuthSignatureService 7.4.1 imports the 7.4.0 schema file: valid against that one too.
        assert official_schemas.validate_envelope(envelope, signature_740=True) == "ExternalAuthenticate"
    cert = zeep.Client(wsdl_document(WSDL_FILES[("CertificateService", (6, 0))]))
    cert_proxy = cert.create_service(binding_name("CertificateService", (6, 0)), "http://127.0.0.1:9/x")
    for ref in ("C.AUT", "C.ENC", "C.SIG", "C.QES"):
        args = messages.read_card_certificates(CTX, "SMC-B-1", ref, "ECC")
        envelope = cert.create_message(cert_proxy, "ReadCardCertificate", **args)
        assert official_schemas.validate_envelope(envelope) == "ReadCardCertificate"
