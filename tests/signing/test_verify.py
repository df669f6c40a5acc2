"""The local check of a detached CMS: what it must refuse (CMS made here with cryptography, independent of the
simulator)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from signing.services.verify import SignatureInvalid, verify_cades_detached

DOCUMENT = b"Arztbrief\nBefund unauffaellig.\n"


def _ca_and_cert(name: str):
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )
    return ca, cert, key


@pytest.fixture(scope="module")
def physician_pki():
    return _ca_and_cert("Dr. Anna Sommer")


def _cms(cert, key, document: bytes = DOCUMENT) -> bytes:
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(document)
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary])
    )


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def test_a_good_detached_signature_passes(physician_pki):
    ca, cert, key = physician_pki
    verified = verify_cades_detached(
        document=DOCUMENT, cms_der=_cms(cert, key), card_certificates=[_der(cert)], ca_pem=_pem(ca)
    )
    assert verified.signer_certificate == _der(cert)


def test_another_document_is_refused(physician_pki):
    ca, cert, key = physician_pki
    with pytest.raises(SignatureInvalid, match="passt nicht zum Dokument"):
        verify_cades_detached(
            document=DOCUMENT + b"x", cms_der=_cms(cert, key), card_certificates=[_der(cert)], ca_pem=_pem(ca)
        )


def test_a_tampered_signature_is_refused(physician_pki):
    ca, cert, key = physician_pki
    cms = bytearray(_cms(cert, key))
    cms[-5] ^= 0xFF  # inside the signature value, the last element of the SignerInfo
    with pytest.raises(SignatureInvalid, match="mathematisch ungültig"):
        verify_cades_detached(document=DOCUMENT, cms_der=bytes(cms), card_certificates=[_der(cert)], ca_pem=_pem(ca))


def test_a_signature_by_another_card_or_ca_is_refused(physician_pki):
    ca, cert, key = physician_pki
    other_ca, other_cert, other_key = _ca_and_cert("Dr. Fremd")
    with pytest.raises(SignatureInvalid, match="nicht mit dem QES-Zertifikat Ihres eHBA"):
        verify_cades_detached(
            document=DOCUMENT, cms_der=_cms(other_cert, other_key), card_certificates=[_der(cert)], ca_pem=_pem(ca)
        )
    with pytest.raises(SignatureInvalid, match="vertrauenswürdigen QES-Zertifizierungsstelle"):
        verify_cades_detached(
            document=DOCUMENT, cms_der=_cms(cert, key), card_certificates=[_der(cert)], ca_pem=_pem(other_ca)
        )


def test_garbage_is_refused_with_a_german_reason():
    with pytest.raises(SignatureInvalid, match="beschädigt"):
        verify_cades_detached(document=DOCUMENT, cms_der=b"\x30\x03\x02\x01\x01", card_certificates=[b""], ca_pem=None)
