"""SignatureService 7.5 VerifyDocument: the signature really checked (tisim.konnektor.verification) and answered
with the HighLevelResult and, when ReturnVerificationReport asks for it, an OASIS DSS-X verification report
(the signer's certificate, subject and signing time; the reason in ResultMessage, German) — valid against the
official schemas.

A fault armed with ``konnektor-fault --kind verify-failure`` makes the verification service fail (code 4001, or
``--param code=…``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from tisim.konnektor import verification
from tisim.konnektor.operations import check_context
from tisim.konnektor.soap import (
    DS,
    DSS,
    SIG_V74,
    SIG_V75,
    VR,
    XADES,
    XML_NS,
    KonnektorFault,
    child,
    element,
    parse_bool,
    parse_context,
    q,
    status,
    text_of,
    timestamp,
)
from tisim.konnektor.verification import INCONCLUSIVE, INVALID, VALID, Verdict

if TYPE_CHECKING:
    from tisim.konnektor.simulator import KonnektorSimulator

RESULT_MAJOR_SUCCESS = "urn:oasis:names:tc:dss:1.0:resultmajor:Success"
RESULT_MINOR = {
    VALID: "urn:oasis:names:tc:dss:1.0:resultminor:valid:signature:OnAllDocuments",
    INVALID: "urn:oasis:names:tc:dss:1.0:resultminor:invalid:IncorrectSignature",
    INCONCLUSIVE: "urn:oasis:names:tc:dss:1.0:resultminor:indetermined",
}
DETAIL = {
    True: "urn:oasis:names:tc:dss:1.0:detail:valid",
    False: "urn:oasis:names:tc:dss:1.0:detail:invalid",
    None: "urn:oasis:names:tc:dss:1.0:detail:indetermined",
}


def verify_document(sim: KonnektorSimulator, op: etree._Element) -> etree._Element:
    sig = etree.QName(op).namespace or SIG_V75  # the same operation in SignatureService 7.4 and 7.5
    ctx = parse_context(op)
    check_context(sim, ctx)
    if text_of(op, sig, "IncludeRevocationInfo") is None:
        raise KonnektorFault(4000, "IncludeRevocationInfo fehlt")
    inputs = child(op, sig, "OptionalInputs")
    report_request = child(inputs, VR, "ReturnVerificationReport") if inputs is not None else None
    include_values = report_request is not None and parse_bool(
        text_of(report_request, VR, "IncludeCertificateValues"), default=False
    )
    document = _document(sim, op, sig)
    signature = _signature(op)
    if document is None and signature is None:
        raise KonnektorFault(4000, "weder Dokument noch Signatur")
    failure = sim.take_fault("verify-failure")
    if failure is not None:
        raise KonnektorFault(int(failure.params.get("code", 4001)), "Signaturprüfung nicht verfügbar")
    verdict = verification.verify(document=document, signature=signature, ca=sim.pki.qes_ca.cert)

    response = element(None, sig, "VerifyDocumentResponse")
    status(response)
    result = element(response, sig, "VerificationResult")
    element(result, sig, "HighLevelResult", verdict.result)
    element(result, sig, "TimestampType", "SYSTEM_TIMESTAMP")
    now = timestamp()
    element(result, sig, "Timestamp", now)
    if report_request is not None:
        outputs = element(response, sig, "OptionalOutputs")
        _report(element(outputs, VR, "VerificationReport"), verdict, now, include_values=include_values)
    return response


def _document(sim: KonnektorSimulator, op: etree._Element, sig: str) -> bytes | None:
    document = child(op, sig, "Document")
    if document is None:
        return None
    data = child(document, DSS, "Base64Data")
    xml = document.find(q("http://ws.gematik.de/conn/ConnectorCommon/v5.0", "Base64XML"))
    raw = data if data is not None else xml
    if raw is None:
        raise KonnektorFault(4000, "Document ohne Base64Data")
    content = _b64(raw.text)
    if len(content) > sim.max_document_bytes:
        raise KonnektorFault(4283, f"{len(content)} Bytes")
    return content


def _signature(op: etree._Element) -> bytes | None:
    signature_object = child(op, DSS, "SignatureObject")
    if signature_object is None:
        return None
    b64 = child(signature_object, DSS, "Base64Signature")
    if b64 is None:
        # XML signatures (ds:Signature) and time stamps are not simulated.
        raise KonnektorFault(4111, "nur Base64Signature (CMS) wird geprüft")
    return _b64(b64.text)


def _b64(text: str | None) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except binascii.Error as exc:
        raise KonnektorFault(4000, "kein Base64") from exc


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _detail(parent: etree._Element, name: str, ok: bool | None) -> None:
    element(element(parent, VR, name), VR, "ResultMajor", DETAIL[ok])


def _issuer_serial(parent: etree._Element, name: str, cert: x509.Certificate) -> None:
    identifier = element(parent, VR, name)
    element(identifier, DS, "X509IssuerName", cert.issuer.rfc4514_string())
    element(identifier, DS, "X509SerialNumber", str(cert.serial_number))


def _signing_time(parent: etree._Element, moment: dt.datetime) -> None:
    properties = element(parent, VR, "SignedProperties")
    element(element(properties, VR, "SignedSignatureProperties"), XADES, "SigningTime", _iso(moment))


def _report(report: etree._Element, verdict: Verdict, now: str, *, include_values: bool) -> None:
    element(element(report, DSS, "VerificationTimeInfo"), DSS, "VerificationTime", now)
    individual = element(report, VR, "IndividualReport")
    identifier = element(individual, VR, "SignedObjectIdentifier")
    if verdict.signing_time is not None:
        _signing_time(identifier, verdict.signing_time)
    result = element(individual, DSS, "Result")
    element(result, DSS, "ResultMajor", RESULT_MAJOR_SUCCESS)
    element(result, DSS, "ResultMinor", RESULT_MINOR[verdict.result])
    if verdict.reason:
        element(result, DSS, "ResultMessage", verdict.reason).set(q(XML_NS, "lang"), "de")
    signer = verdict.signer
    if signer is None:
        return
    detailed = element(element(individual, VR, "Details"), VR, "DetailedSignatureReport")
    _detail(detailed, "FormatOK", verdict.format_ok)
    if verdict.signing_time is not None:
        _signing_time(element(detailed, VR, "Properties"), verdict.signing_time)
    _detail(element(detailed, VR, "SignatureOK"), "SigMathOK", verdict.signature_ok)
    path = element(detailed, VR, "CertificatePathValidity")
    _detail(path, "PathValiditySummary", verdict.path_ok)
    _issuer_serial(path, "CertificateIdentifier", signer)
    path_detail = element(path, VR, "PathValidityDetail")
    validity = element(path_detail, VR, "CertificateValidity")
    _issuer_serial(validity, "CertificateIdentifier", signer)
    element(validity, VR, "Subject", signer.subject.rfc4514_string())
    _detail(validity, "ChainingOK", verdict.path_ok)
    moment = verdict.signing_time or dt.datetime.now(dt.UTC)
    _detail(validity, "ValidityPeriodOK", signer.not_valid_before_utc <= moment <= signer.not_valid_after_utc)
    _detail(validity, "ExtensionsOK", True)
    if include_values:
        element(validity, VR, "CertificateValue", base64.b64encode(signer.public_bytes(Encoding.DER)).decode())
    _detail(element(validity, VR, "SignatureOK"), "SigMathOK", verdict.path_ok)
    # No OCSP in the simulated TI: the status is not known (revocation is not checked).
    _detail(element(validity, VR, "CertificateStatus"), "CertStatusOK", None)
    _detail(path_detail, "TrustAnchor", verdict.path_ok)


HANDLERS = {q(ns, "VerifyDocument"): verify_document for ns in (SIG_V75, SIG_V74)}
