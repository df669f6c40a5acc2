"""Reading VerifyDocument's answer (no I/O): the HighLevelResult and, from the OASIS verification report the
client asks for, the signer's certificate, name and the signing time.

The report is read as XML (the WSDL subset does not model it): IndividualReport → dss:Result (ResultMessage: why)
and Details → DetailedSignatureReport → Properties (XAdES:SigningTime) and CertificatePathValidity →
PathValidityDetail → CertificateValidity (the first is the signer's; CertificateValue its DER, Subject its name).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID
from lxml import etree

from .types import INCONCLUSIVE, INVALID, VALID, VerifyResult

VR = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
DSS = "urn:oasis:names:tc:dss:1.0:core:schema"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
_NS = {"vr": VR, "dss": DSS, "xades": XADES}

# ETSI EN 319 412-5: the certificate is an EU qualified certificate (QcCompliance) — a QES certificate.
QC_STATEMENTS_OID = "1.3.6.1.5.5.7.1.3"
QC_COMPLIANCE = bytes.fromhex("06060400 8e460101".replace(" ", ""))

MAX_TEXT = 1000
MAX_NAME = 200

REASONS = {
    INVALID: "Die Signatur ist ungültig.",
    INCONCLUSIVE: "Die Signatur konnte nicht abschließend geprüft werden.",
}


def verify_result(high_level: str, outputs: Iterable[Any]) -> VerifyResult:
    """The VerifyResult from the HighLevelResult and the elements of OptionalOutputs (lxml elements)."""
    result = (high_level or "").strip().upper()
    if result not in (VALID, INVALID, INCONCLUSIVE):
        result = INCONCLUSIVE
    report = _report(outputs)
    message = ""
    signing_time: dt.datetime | None = None
    certificate: bytes | None = None
    subject = ""
    if report is not None:
        individual = report.find("vr:IndividualReport", _NS)
        if individual is not None:
            message = (individual.findtext("dss:Result/dss:ResultMessage", default="", namespaces=_NS)).strip()
            signing_time = _datetime(individual.findtext(".//xades:SigningTime", namespaces=_NS))
            path = ".//vr:CertificatePathValidity/vr:PathValidityDetail/vr:CertificateValidity"
            validity = individual.find(path, _NS)
            if validity is not None:
                subject = (validity.findtext("vr:Subject", default="", namespaces=_NS)).strip()
                certificate = _der(validity.findtext("vr:CertificateValue", namespaces=_NS))
    signer_name = ""
    is_qes = False
    if certificate is not None:
        try:
            cert = x509.load_der_x509_certificate(certificate)
        except ValueError:
            certificate = None
        else:
            signer_name = _common_name(cert.subject)
            is_qes = _is_qualified(cert)
    if not signer_name and subject:
        signer_name = _cn_from_text(subject)
    valid = result == VALID
    # What a Konnektor writes is shown to users: bounded, whatever it sends.
    reason = "" if valid else (message[:MAX_TEXT] or REASONS[result])
    signer_name = signer_name[:MAX_NAME]
    return VerifyResult(
        valid=valid,
        result=result,
        reason=reason,
        signer_name=signer_name,
        signer_certificate=certificate,
        signing_time=signing_time,
        is_qes=valid and is_qes,
    )


def _report(outputs: Iterable[Any]) -> etree._Element | None:
    for element in outputs:
        if isinstance(element, etree._Element) and element.tag == f"{{{VR}}}VerificationReport":
            return element
    return None


def _datetime(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = text.strip().replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _der(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _common_name(name: x509.Name) -> str:
    names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _cn_from_text(subject: str) -> str:
    for part in subject.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().upper() == "CN" and value:
            return value.strip()
    return ""


def _is_qualified(cert: x509.Certificate) -> bool:
    for extension in cert.extensions:
        if extension.oid.dotted_string == QC_STATEMENTS_OID:
            try:
                raw = extension.value.public_bytes()
            except (NotImplementedError, ValueError):
                return False
            return QC_COMPLIANCE in raw
    return False


def parse_duration(text: str | None) -> dt.timedelta | None:
    """An xsd:duration of days, hours, minutes and seconds (``PT24H``, ``P1DT2H30M``, ``PT5.5S``); None when it is
    missing or uses years or months (which have no fixed length)."""
    if not text:
        return None
    match = re.fullmatch(r"(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", text.strip())
    if match is None or text.strip() in ("P", "PT", "-P"):
        return None
    sign, days, hours, minutes, seconds = match.groups()
    delta = dt.timedelta(
        days=int(days or 0), hours=int(hours or 0), minutes=int(minutes or 0), seconds=float(seconds or 0)
    )
    return -delta if sign else delta
