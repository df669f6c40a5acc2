"""VerifyDocument's check: real verification of CAdES (detached or enveloping CMS, asn1crypto + cryptography) and
PAdES (pyhanko reads the PDF, the CMS inside is checked the same way) signatures against the simulator's QES CA.

A signature is VALID when its bytes are intact (the message digest is the document's), the signature value
verifies with the signer's certificate, that certificate was issued by the QES CA (and is meant for signing) and was
valid at the signing time. Everything else is INVALID with a German reason (tampered bytes, a foreign CA, no
signature at all), or INCONCLUSIVE when the check cannot be made (a detached signature without its document, no
signer certificate in the signature).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
from dataclasses import dataclass

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

VALID = "VALID"
INVALID = "INVALID"
INCONCLUSIVE = "INCONCLUSIVE"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

NO_SIGNATURE = "Das Dokument enthält keine Signatur."
NOT_INTACT = "Das Dokument wurde nach dem Signieren verändert (die Prüfsumme stimmt nicht)."
MATH_INVALID = "Die Signatur ist mathematisch ungültig."
UNTRUSTED = "Das Zertifikat des Unterzeichners stammt nicht von einer vertrauenswürdigen Zertifizierungsstelle."
NOT_VALID_THEN = "Das Zertifikat des Unterzeichners war zum Zeitpunkt der Signatur nicht gültig."
NOT_FOR_SIGNING = "Das Zertifikat des Unterzeichners ist nicht zum Signieren bestimmt."
DAMAGED = "Die Signatur ist beschädigt und kann nicht gelesen werden."
NO_DOCUMENT = "Zur abgesetzten Signatur fehlt das signierte Dokument."
NO_CERTIFICATE = "Die Signatur enthält das Zertifikat des Unterzeichners nicht."
PDF_CHANGED = "Das PDF wurde nach der letzten Signatur verändert."
PDF_DAMAGED = "Das PDF ist beschädigt und kann nicht geprüft werden."


@dataclass(frozen=True)
class Verdict:
    """The outcome for the verification report. ``format_ok``/``signature_ok``/``path_ok``: the report's
    FormatOK, SigMathOK and PathValiditySummary (None: not checked)."""

    result: str
    reason: str = ""
    signer: x509.Certificate | None = None
    signing_time: dt.datetime | None = None
    format_ok: bool = True
    signature_ok: bool | None = None
    path_ok: bool | None = None

    @property
    def has_signature(self) -> bool:
        return self.signer is not None


class _Fail(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


def verify(*, document: bytes | None, signature: bytes | None, ca: x509.Certificate) -> Verdict:
    """Check ``signature`` (a CMS, detached over ``document`` or enveloping it) or, without one, the signatures
    inside ``document`` (a PDF); ``ca``: the only trust anchor."""
    try:
        if signature is not None:
            return _verify_cms(signature, document, ca)
        if document is not None and document.lstrip()[:5] == b"%PDF-":
            return _verify_pdf(document, ca)
        return Verdict(INVALID, NO_SIGNATURE)
    except _Fail as failed:
        return failed.verdict


# --- CAdES -----------------------------------------------------------------------------------------------


def _verify_cms(signature: bytes, document: bytes | None, ca: x509.Certificate) -> Verdict:
    try:
        info = cms.ContentInfo.load(signature)
        if info["content_type"].native != "signed_data":
            raise _Fail(Verdict(INVALID, DAMAGED, format_ok=False))
        signed = info["content"]
        signer_infos = list(signed["signer_infos"])
        encapsulated = signed["encap_content_info"]["content"].native
    except _Fail:
        raise
    except (ValueError, TypeError, KeyError):
        return Verdict(INVALID, DAMAGED, format_ok=False)
    if not signer_infos:
        return Verdict(INVALID, NO_SIGNATURE, format_ok=False)
    content = document if document is not None else encapsulated
    if content is None:
        return Verdict(INCONCLUSIVE, NO_DOCUMENT)
    if encapsulated is not None and document is not None and encapsulated != document:
        return Verdict(INVALID, NOT_INTACT, signature_ok=False)
    certificates = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
    verdicts = [_check_signer_info(signer, certificates, bytes(content), ca) for signer in signer_infos]
    # Every signer must hold; the report names the first.
    failed = next((v for v in verdicts if v.result != VALID), None)
    return failed or verdicts[0]


def _check_signer_info(
    signer: cms.SignerInfo, certificates: list[asn1_x509.Certificate], content: bytes, ca: x509.Certificate
) -> Verdict:
    try:
        asn1_cert = _find_certificate(signer["sid"], certificates)
        if asn1_cert is None:
            return Verdict(INCONCLUSIVE, NO_CERTIFICATE)
        cert = x509.load_der_x509_certificate(asn1_cert.dump())
        digest_name = signer["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            return Verdict(INVALID, DAMAGED, cert, format_ok=False)
        attrs = signer["signed_attrs"]
        signing_time: dt.datetime | None = None
        if attrs:
            encoded = attrs.dump()
            values = {attr["type"].native: attr["values"] for attr in attrs}
            if "signing_time" in values:
                signing_time = values["signing_time"][0].native
            digest = values.get("message_digest")
            if digest is None or digest[0].native != hashlib.new(digest_name, content).digest():
                return Verdict(INVALID, NOT_INTACT, cert, signing_time, signature_ok=False)
            if "signing_certificate_v2" in values:
                cert_id = values["signing_certificate_v2"][0]["certs"][0]
                hash_name = cert_id["hash_algorithm"]["algorithm"].native
                if hashlib.new(hash_name, asn1_cert.dump()).digest() != cert_id["cert_hash"].native:
                    return Verdict(INVALID, DAMAGED, cert, signing_time, signature_ok=False)
            # Signed over as a SET OF (tag 0x31), not as the [0] IMPLICIT it carries inside the SignerInfo.
            signed_bytes = b"\x31" + encoded[1:]
        else:
            signed_bytes = content
        if not _signature_verifies(cert, signer, signed_bytes, _HASHES[digest_name]()):
            return Verdict(INVALID, MATH_INVALID, cert, signing_time, signature_ok=False)
    except (ValueError, TypeError, KeyError, IndexError):
        return Verdict(INVALID, DAMAGED, format_ok=False)
    return _check_certificate(cert, signing_time, ca)


def _find_certificate(sid: cms.SignerIdentifier, certs: list[asn1_x509.Certificate]) -> asn1_x509.Certificate | None:
    chosen = sid.chosen
    if sid.name == "issuer_and_serial_number":
        for cert in certs:
            if cert.serial_number == chosen["serial_number"].native and cert.issuer == chosen["issuer"]:
                return cert
        return None
    for cert in certs:
        if cert.key_identifier == chosen.native:
            return cert
    return None


def _signature_verifies(
    cert: x509.Certificate, signer: cms.SignerInfo, data: bytes, digest: hashes.HashAlgorithm
) -> bool:
    key = cert.public_key()
    algorithm = signer["signature_algorithm"]
    value = signer["signature"].native
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if algorithm["algorithm"].native == "rsassa_pss":
                params = algorithm["parameters"]
                pss_hash = _HASHES[params["hash_algorithm"]["algorithm"].native]()
                pss = padding.PSS(mgf=padding.MGF1(pss_hash), salt_length=params["salt_length"].native)
                key.verify(value, data, pss, pss_hash)
            else:
                key.verify(value, data, padding.PKCS1v15(), digest)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(value, data, ec.ECDSA(digest))
        else:
            return False
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


def _check_certificate(cert: x509.Certificate, signing_time: dt.datetime | None, ca: x509.Certificate) -> Verdict:
    """Issued by the QES CA, valid at the signing time (now when the signature names none), meant for signing."""
    moment = signing_time or dt.datetime.now(dt.UTC)
    trusted = cert.issuer == ca.subject
    if trusted:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            trusted = False
    if not trusted:
        return Verdict(INVALID, UNTRUSTED, cert, signing_time, signature_ok=True, path_ok=False)
    if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
        return Verdict(INVALID, NOT_VALID_THEN, cert, signing_time, signature_ok=True, path_ok=False)
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        may_sign = usage.content_commitment or usage.digital_signature
    except x509.ExtensionNotFound:
        may_sign = True
    if not may_sign:
        return Verdict(INVALID, NOT_FOR_SIGNING, cert, signing_time, signature_ok=True, path_ok=False)
    return Verdict(VALID, "", cert, signing_time, signature_ok=True, path_ok=True)


# --- PAdES ------------------------------------------------------------------------------------------------


def _verify_pdf(pdf: bytes, ca: x509.Certificate) -> Verdict:
    """pyhanko reads the PDF's structure (signature fields, /ByteRange, /Contents, coverage); each signature's CMS
    is checked like a detached CAdES over the bytes its /ByteRange covers. The last signature must cover the whole
    file (nothing added after it)."""
    # Imported here: pyhanko is heavy and only PAdES needs it.
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        embedded = [
            signature
            for signature in reader.embedded_signatures
            # Document time stamps (ETSI.RFC3161) are no signatures of a person.
            if signature.signed_data["encap_content_info"]["content_type"].native == "data"
        ]
    except (PdfError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return Verdict(INVALID, PDF_DAMAGED, format_ok=False)
    if not embedded:
        return Verdict(INVALID, NO_SIGNATURE)
    verdicts = []
    for number, signature in enumerate(embedded, start=1):
        try:
            first, length1, second, length2 = (int(n) for n in signature.byte_range)
            if first != 0 or min(length1, second, length2) < 0 or second + length2 > len(pdf):
                raise ValueError("byte range outside the file")
            covered = pdf[first:length1] + pdf[second : second + length2]
            certificates = [c.chosen for c in signature.signed_data["certificates"] or [] if c.name == "certificate"]
            verdict = _check_signer_info(signature.signer_info, certificates, covered, ca)
            if verdict.signing_time is None:
                # PAdES baseline signs no signing-time attribute: the claimed time is the dictionary's /M.
                verdict = dataclasses.replace(verdict, signing_time=signature.self_reported_timestamp)
            coverage = signature.evaluate_signature_coverage()
        except (PdfError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            verdicts.append(Verdict(INVALID, DAMAGED, format_ok=False))
            continue
        if verdict.result == VALID and number == len(embedded) and coverage != SignatureCoverageLevel.ENTIRE_FILE:
            verdict = Verdict(
                INVALID, PDF_CHANGED, verdict.signer, verdict.signing_time, signature_ok=True, path_ok=True
            )
        verdicts.append(verdict)
    failed = next((v for v in verdicts if v.result != VALID), None)
    # The report names the latest signature (the one that covers the document as it is).
    return failed or verdicts[-1]
