"""The local check of a signed PDF (PAdES): what it must accept and what it must refuse. The PDFs are signed here
with pyhanko and keys made with cryptography, independent of the simulator; the tampering is done on the bytes."""

from __future__ import annotations

import datetime as dt
import re
from io import BytesIO

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from signing.services.verify import SignatureInvalid, verify_pades
from tests.signing.documents import make_pdf

DOCUMENT = make_pdf("Entlassbrief Frau Muster")


def _ca_and_cert(name: str, *, ecc: bool = False, valid_days: int = 30, key_usage: bool = True):
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=400))
        .not_valid_after(now + dt.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1()) if ecc else rsa.generate_private_key(65537, 2048)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=60))
        .not_valid_after(now + dt.timedelta(days=valid_days))
    )
    if key_usage:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    return ca, builder.sign(ca_key, hashes.SHA256()), key


@pytest.fixture(scope="module")
def physician_pki():
    return _ca_and_cert("Dr. med. Anna Sommer")


def _der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _sign(pdf: bytes, cert, key, *, field: str = "Signatur1") -> bytes:
    """An incremental PAdES signature (ETSI.CAdES.detached) over the whole file, as a Konnektor makes it."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signer = signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(_der(cert)),
        signing_key=asn1_keys.PrivateKeyInfo.load(key_der),
        cert_registry=SimpleCertificateStore(),
    )
    meta = signers.PdfSignatureMetadata(
        field_name=field, reason="Entlassbrief", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256"
    )
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    return bytes(signers.sign_pdf(writer, meta, signer=signer).getvalue())


def _verify(signed: bytes, cert, ca, *, document: bytes = DOCUMENT, card=None):
    return verify_pades(document=document, signed_pdf=signed, card_certificates=[_der(card or cert)], ca_pem=_pem(ca))


@pytest.fixture(scope="module")
def signed(physician_pki) -> bytes:
    _ca, cert, key = physician_pki
    return _sign(DOCUMENT, cert, key)


def test_a_good_pades_signature_passes(physician_pki, signed):
    ca, cert, _key = physician_pki
    assert _verify(signed, cert, ca).signer_certificate == _der(cert)
    # Without a configured QES CA the card's certificate is still required.
    verified = verify_pades(document=DOCUMENT, signed_pdf=signed, card_certificates=[_der(cert)], ca_pem=None)
    assert verified.signer_certificate == _der(cert)


def test_an_ecc_card_signature_passes():
    ca, cert, key = _ca_and_cert("Dr. Eva Ecc", ecc=True)
    assert _verify(_sign(DOCUMENT, cert, key), cert, ca).signer_certificate == _der(cert)


def test_a_document_signed_before_needs_exactly_one_more(physician_pki):
    """The original may carry a signature already (a co-signer's): the Konnektor's is the one more."""
    ca, cert, key = physician_pki
    _other_ca, other_cert, other_key = _ca_and_cert("Dr. Mit Zeichner")
    presigned = _sign(DOCUMENT, other_cert, other_key, field="Mitzeichnung")
    signed = _sign(presigned, cert, key)
    assert _verify(signed, cert, ca, document=presigned).signer_certificate == _der(cert)


def test_a_changed_byte_of_the_original_is_refused(physician_pki, signed):
    ca, cert, _key = physician_pki
    tampered = bytearray(signed)
    tampered[DOCUMENT.index(b"Muster")] ^= 0x01
    with pytest.raises(SignatureInvalid, match="nicht das unveränderte Dokument"):
        _verify(bytes(tampered), cert, ca)


def test_a_changed_byte_inside_the_covered_update_is_refused(physician_pki, signed):
    """The update before the signature (its dictionary, the field) is covered too: a changed reason is a
    different file than the one signed."""
    ca, cert, _key = physician_pki
    position = signed.index(b"/Reason (Entlassbrief)", len(DOCUMENT))
    tampered = signed[:position] + b"/Reason (Entlassbriex)" + signed[position + len(b"/Reason (Entlassbrief)") :]
    with pytest.raises(SignatureInvalid, match="PDF-Signatur ist ungültig"):
        _verify(tampered, cert, ca)


def test_a_second_new_signature_is_refused(physician_pki, signed):
    ca, cert, key = physician_pki
    twice = _sign(signed, cert, key, field="Signatur2")
    with pytest.raises(SignatureInvalid, match="nicht genau eine neue Signatur"):
        _verify(twice, cert, ca)


def test_no_new_signature_is_refused(physician_pki):
    ca, cert, _key = physician_pki
    with pytest.raises(SignatureInvalid, match="nicht genau eine neue Signatur"):
        _verify(DOCUMENT, cert, ca)


def test_a_signature_not_covering_the_whole_file_is_refused(physician_pki, signed):
    """An update appended after the signature (here: a changed title) is not signed: refused."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    ca, cert, _key = physician_pki
    writer = IncrementalPdfFileWriter(BytesIO(signed), strict=False)
    writer.root["/Lang"] = generic.TextStringObject("de-DE")
    writer.update_root()
    out = BytesIO()
    writer.write(out)
    with pytest.raises(SignatureInvalid, match="deckt nicht das ganze Dokument ab"):
        _verify(out.getvalue(), cert, ca)
    with pytest.raises(SignatureInvalid, match="deckt nicht das ganze Dokument ab"):
        _verify(signed + b"\n% nachher\n", cert, ca)


def test_a_byte_range_leaving_out_more_than_the_signature_is_refused(physician_pki, signed):
    """The ByteRange must leave out exactly the /Contents hex string: one byte more (here the '<') is refused,
    even though the signature over the bytes it names would still be checked."""
    ca, cert, _key = physician_pki
    match = re.search(rb"/ByteRange \[(\d+) (\d+) (\d+) (\d+)\s*\]", signed)
    assert match is not None
    start, length, after, rest = (int(n) for n in match.groups())
    changed = f"/ByteRange [{start} {length - 1} {after} {rest}]".encode()
    tampered = signed[: match.start()] + changed.ljust(match.end() - match.start(), b" ") + signed[match.end() :]
    assert len(tampered) == len(signed)
    with pytest.raises(SignatureInvalid, match="deckt nicht das ganze Dokument ab"):
        _verify(tampered, cert, ca)


def test_bytes_hidden_after_the_cms_in_contents_are_refused(physician_pki, signed):
    """/Contents is not covered by the signature: its padding must be zeros, nothing smuggled in."""
    ca, cert, _key = physician_pki
    start = signed.index(b"/Contents <", len(DOCUMENT)) + len(b"/Contents <")
    end = signed.index(b">", start)
    assert signed[end - 8 : end] == b"00000000"  # the zero padding the signer reserved
    tampered = signed[: end - 8] + b"4B494D21" + signed[end:]
    with pytest.raises(SignatureInvalid, match="beschädigt"):
        _verify(tampered, cert, ca)


def test_a_signature_by_another_card_or_ca_is_refused(physician_pki, signed):
    ca, cert, _key = physician_pki
    other_ca, other_cert, _other_key = _ca_and_cert("Dr. Fremd")
    with pytest.raises(SignatureInvalid, match="nicht mit dem QES-Zertifikat Ihres eHBA"):
        _verify(signed, cert, ca, card=other_cert)
    with pytest.raises(SignatureInvalid, match="vertrauenswürdigen QES-Zertifizierungsstelle"):
        _verify(signed, cert, other_ca)


def test_an_expired_certificate_is_not_trusted():
    ca, cert, key = _ca_and_cert("Dr. Abgelaufen", valid_days=-1)
    signed = _sign(DOCUMENT, cert, key)
    with pytest.raises(SignatureInvalid, match="vertrauenswürdigen QES-Zertifizierungsstelle"):
        _verify(signed, cert, ca)


def test_a_damaged_signed_pdf_is_refused_with_a_german_reason(physician_pki, signed):
    ca, cert, _key = physician_pki
    with pytest.raises(SignatureInvalid, match="beschädigt"):
        _verify(DOCUMENT + b"\x00" * 40 + signed[len(DOCUMENT) + 40 :], cert, ca)
    with pytest.raises(SignatureInvalid, match="beschädigt"):
        _verify(signed[: len(signed) // 2 + 200] + b"\n%%EOF\n", cert, ca)
