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


def _handmade_cms(cert, key, *, ess_certificate=None, content_type: bool = True) -> bytes:
    """A detached CMS assembled attribute by attribute (cryptography's builder sets neither ESS nor omits the
    content type): the signing-certificate-v2 attribute names ``ess_certificate``."""
    import hashlib

    from asn1crypto import algos, cms, tsp
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.asymmetric import padding

    signer_cert = asn1_x509.Certificate.load(_der(cert))
    attrs = []
    if content_type:
        attrs.append(cms.CMSAttribute({"type": "content_type", "values": ["data"]}))
    attrs.append(cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(DOCUMENT).digest()]}))
    if ess_certificate is not None:
        cert_id = {
            "hash_algorithm": {"algorithm": "sha256"},
            "cert_hash": hashlib.sha256(_der(ess_certificate)).digest(),
        }
        attrs.append(
            cms.CMSAttribute(
                {"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({"certs": [cert_id]})]}
            )
        )
    signed_attrs = cms.CMSAttributes(attrs)
    signature = key.sign(signed_attrs.dump(), padding.PKCS1v15(), hashes.SHA256())
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {"issuer_and_serial_number": {"issuer": signer_cert.issuer, "serial_number": signer_cert.serial_number}}
            ),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_rsa"}),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "data", "content": None},
            "certificates": [signer_cert],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def test_the_signing_certificate_attribute_must_name_the_signer(physician_pki):
    """CAdES binds the signer's certificate into the signed attributes (ESS signing-certificate-v2): a
    signature whose attribute names another certificate is refused, one naming its own passes."""
    ca, cert, key = physician_pki
    _other_ca, other_cert, _other_key = _ca_and_cert("Dr. Fremd")
    good = _handmade_cms(cert, key, ess_certificate=cert)
    verify_cades_detached(document=DOCUMENT, cms_der=good, card_certificates=[_der(cert)], ca_pem=_pem(ca))
    wrong = _handmade_cms(cert, key, ess_certificate=other_cert)
    with pytest.raises(SignatureInvalid, match="nennt ein anderes Zertifikat"):
        verify_cades_detached(document=DOCUMENT, cms_der=wrong, card_certificates=[_der(cert)], ca_pem=_pem(ca))


def test_a_signature_without_content_type_is_refused(physician_pki):
    ca, cert, key = physician_pki
    cms_der = _handmade_cms(cert, key, content_type=False)
    with pytest.raises(SignatureInvalid, match="beschädigt"):
        verify_cades_detached(document=DOCUMENT, cms_der=cms_der, card_certificates=[_der(cert)], ca_pem=_pem(ca))
