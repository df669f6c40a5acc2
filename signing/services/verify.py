"""Each signature the Konnektor returns is checked here before it is used: it must cover exactly the document the
physician saw, and be made with the QES certificate of the physician's own card (issued by a trusted QES CA, when
one is configured). A signature that fails is kept out: its draft stays in the queue with the reason."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from asn1crypto import cms
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from django.utils.translation import gettext as _

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "sha256": hashes.SHA256(),
    "sha384": hashes.SHA384(),
    "sha512": hashes.SHA512(),
}


class SignatureInvalid(Exception):
    """The signature does not prove what it must; the message (German) says why."""


@dataclass(frozen=True)
class Verified:
    signer_certificate: bytes  # DER


def _trust(ca_pem: bytes | None) -> list[cx509.Certificate]:
    return cx509.load_pem_x509_certificates(ca_pem) if ca_pem else []


def _issued_by_trusted(cert_der: bytes, cas: list[cx509.Certificate]) -> bool:
    cert = cx509.load_der_x509_certificate(cert_der)
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _check_certificate(signer_der: bytes, card_ders: Sequence[bytes], cas: list[cx509.Certificate]) -> None:
    # A G2.1 card has an RSA and an ECC QES certificate (Crypt RSA_ECC signs with ECC): either is the card's.
    if signer_der not in card_ders:
        raise SignatureInvalid(_("Die Signatur wurde nicht mit dem QES-Zertifikat Ihres eHBA erstellt."))
    if cas and not _issued_by_trusted(signer_der, cas):
        raise SignatureInvalid(
            _("Das Signaturzertifikat stammt nicht von einer vertrauenswürdigen QES-Zertifizierungsstelle.")
        )


def verify_cades_detached(
    *, document: bytes, cms_der: bytes, card_certificates: Sequence[bytes], ca_pem: bytes | None
) -> Verified:
    """A detached CMS (CAdES): the message digest is the document's, the signature over the signed attributes
    verifies with the signer certificate, and that certificate is the card's QES certificate."""
    try:
        info = cms.ContentInfo.load(cms_der)
        signed = info["content"]
        if info["content_type"].native != "signed_data" or len(signed["signer_infos"]) != 1:
            raise SignatureInvalid(_("Die Signatur ist keine einfache CMS-Signatur."))
        if signed["encap_content_info"]["content"].native is not None:
            raise SignatureInvalid(_("Die Signatur ist nicht abgesetzt (sie enthält das Dokument)."))
        signer = signed["signer_infos"][0]
        # The certificates through cryptography: asn1crypto re-encodes a certificate once its algorithm was read.
        cert = _signer_certificate(signer["sid"].chosen, pkcs7.load_der_pkcs7_certificates(cms_der))
        if cert is None:
            raise SignatureInvalid(_("Die Signatur enthält das Zertifikat des Unterzeichners nicht."))
        digest_name = signer["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            raise SignatureInvalid(_("Unbekanntes Hashverfahren in der Signatur."))
        attrs = signer["signed_attrs"]
        # Signed over as a SET OF (tag 0x31), not as the [0] IMPLICIT tag it carries here: the received bytes with
        # their first byte swapped, taken before any attribute is read (asn1crypto then re-encodes them: slow, and
        # not necessarily the bytes that were signed).
        encoded = attrs.dump()
        if not attrs:
            raise SignatureInvalid(_("Die Signatur hat keine signierten Attribute."))
        by_type = {a["type"].native: a["values"][0].native for a in attrs}
        expected = hashlib.new(digest_name, document).digest()
        if by_type.get("message_digest") != expected:
            raise SignatureInvalid(_("Die Signatur passt nicht zum Dokument (Prüfsumme weicht ab)."))
        signed_bytes = b"\x31" + encoded[1:]
        _verify_raw(cert, signer, signed_bytes, _HASHES[digest_name])
    except SignatureInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SignatureInvalid(_("Die Signatur ist beschädigt und kann nicht gelesen werden.")) from exc
    cert_der = cert.public_bytes(Encoding.DER)
    _check_certificate(cert_der, card_certificates, _trust(ca_pem))
    return Verified(signer_certificate=cert_der)


def _signer_certificate(sid: object, certs: list[cx509.Certificate]) -> cx509.Certificate | None:
    # Issuer compared as encoded bytes (asn1crypto's Name equality normalises every attribute: slow for 250).
    if isinstance(sid, cms.IssuerAndSerialNumber):
        issuer, serial = sid["issuer"].dump(), sid["serial_number"].native
        return next((c for c in certs if c.serial_number == serial and c.issuer.public_bytes() == issuer), None)
    key_id = getattr(sid, "native", None)
    for cert in certs:
        try:
            ski = cert.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier).value.digest
        except cx509.ExtensionNotFound:
            continue
        if ski == key_id:
            return cert
    return None


def _verify_raw(cert: cx509.Certificate, signer: cms.SignerInfo, data: bytes, digest: hashes.HashAlgorithm) -> None:
    key = cert.public_key()
    algorithm = signer["signature_algorithm"]
    name = algorithm["algorithm"].native
    signature = signer["signature"].native
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if name == "rsassa_pss":
                params = algorithm["parameters"]
                pss_hash = _HASHES[params["hash_algorithm"]["algorithm"].native]
                key.verify(
                    signature,
                    data,
                    padding.PSS(mgf=padding.MGF1(pss_hash), salt_length=params["salt_length"].native),
                    pss_hash,
                )
            else:
                key.verify(signature, data, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(digest))
        else:
            raise SignatureInvalid(_("Unbekanntes Signaturverfahren."))
    except InvalidSignature as exc:
        raise SignatureInvalid(_("Die Signatur ist mathematisch ungültig.")) from exc


def verify_pades(
    *, document: bytes, signed_pdf: bytes, card_certificates: Sequence[bytes], ca_pem: bytes | None
) -> Verified:
    """A signed PDF (PAdES): an incremental update of exactly the document shown, its signature intact and covering
    the whole file, made with the card's QES certificate (and trusted, when a QES CA is configured)."""
    from asn1crypto import x509 as ax509
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.errors import SignatureValidationError
    from pyhanko.sign.validation.settings import KeyUsageConstraints
    from pyhanko_certvalidator import ValidationContext

    if not signed_pdf.startswith(document):
        # The signature is appended as an incremental update: the bytes before it are the document as shown.
        raise SignatureInvalid(_("Das signierte PDF enthält nicht das unveränderte Dokument."))
    cas = _trust(ca_pem)
    try:
        reader = PdfFileReader(io.BytesIO(signed_pdf), strict=False)
        sigs = reader.embedded_signatures
        if len(sigs) != 1 + _signature_count(document):
            raise SignatureInvalid(_("Das signierte PDF enthält keine neue Signatur."))
        context = ValidationContext(
            trust_roots=[ax509.Certificate.load(ca.public_bytes(Encoding.DER)) for ca in cas] or None,
            allow_fetching=False,
            revocation_mode="soft-fail",
        )
        status = validate_pdf_signature(
            sigs[-1],
            signer_validation_context=context,
            key_usage_settings=KeyUsageConstraints(
                key_usage={"non_repudiation", "digital_signature"}, match_all_key_usages=False
            ),
        )
    except SignatureInvalid:
        raise
    except (PdfError, SignatureValidationError, ValueError, KeyError, TypeError) as exc:
        raise SignatureInvalid(_("Das signierte PDF ist beschädigt und kann nicht geprüft werden.")) from exc
    if not status.intact or not status.valid:
        raise SignatureInvalid(_("Die PDF-Signatur ist ungültig (Dokument verändert oder Signatur fehlerhaft)."))
    if status.coverage is None or status.coverage.name != "ENTIRE_FILE":
        raise SignatureInvalid(_("Die PDF-Signatur deckt nicht das ganze Dokument ab."))
    signer_der = status.signing_cert.dump()
    if cas and not status.trusted:
        raise SignatureInvalid(
            _("Das Signaturzertifikat stammt nicht von einer vertrauenswürdigen QES-Zertifizierungsstelle.")
        )
    _check_certificate(signer_der, card_certificates, cas)
    return Verified(signer_certificate=signer_der)


def _signature_count(document: bytes) -> int:
    from pyhanko.pdf_utils.reader import PdfFileReader

    return len(PdfFileReader(io.BytesIO(document), strict=False).embedded_signatures)
