"""VerifyDocument of the simulated Konnektor over its real sockets, requests built by hand: signatures are really
checked against the simulator's QES CA, and every request and answer is valid against the official schemas
(``Soap.call``)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from lxml import etree

from tests.fixtures.konnektor_sim import (
    HBA_HOLDER,
    Doc,
    Soap,
    SoapResult,
    add_smcb,
    responses_by_id,
    sample_pdf,
)
from tisim.konnektor import KonnektorSimulator, signatures
from tisim.konnektor.pki import OID_ARZT, Pki

REPORT = "SIG:OptionalOutputs/vr:VerificationReport/vr:IndividualReport"


def sign(soap: Soap, sim: KonnektorSimulator, doc: Doc) -> etree._Element:
    result = soap.sign_document(sim.cards[0].card_handle, soap.get_job_number(), [doc])
    assert result.fault_code is None, result.fault_string
    return responses_by_id(result)[doc.request_id]


def signed_pdf(soap: Soap, sim: KonnektorSimulator) -> bytes:
    response = sign(soap, sim, Doc("p", sample_pdf("Entlassbrief"), "application/pdf", pades=True))
    data = response.find("SIG:OptionalOutputs/SIG:DocumentWithSignature/dss:Base64Data", namespaces=_ns())
    assert data is not None
    return base64.b64decode(data.text or "")


def detached(soap: Soap, sim: KonnektorSimulator, content: bytes) -> bytes:
    response = sign(soap, sim, Doc("c", content))
    value = response.find("dss:SignatureObject/dss:Base64Signature", namespaces=_ns())
    assert value is not None
    return base64.b64decode(value.text or "")


def _ns() -> dict[str, str]:
    from tests.fixtures.konnektor_sim import NS

    return NS


def high_level(result: SoapResult) -> str:
    assert result.fault_code is None, result.fault_string
    return result.text("SIG:VerificationResult/SIG:HighLevelResult")


def reason(result: SoapResult) -> str:
    return result.text(f"{REPORT}/dss:Result/dss:ResultMessage")


def reported_certificate(result: SoapResult) -> x509.Certificate:
    value = result.text(f"{REPORT}/vr:Details//vr:CertificateValidity/vr:CertificateValue")
    return x509.load_der_x509_certificate(base64.b64decode(value))


def test_intact_pades_is_valid_with_signer_and_signing_time(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    pdf = signed_pdf(soap, konnektor_sim)

    result = soap.verify_document(document=pdf)
    assert high_level(result) == "VALID"
    assert result.find(f"{REPORT}/dss:Result/dss:ResultMessage") is None
    certificate = reported_certificate(result)
    assert certificate == x509.load_der_x509_certificate(konnektor_sim.cards[0].certificate_der)
    assert HBA_HOLDER in result.text(f"{REPORT}/vr:Details//vr:CertificateValidity/vr:Subject")
    signing_time = dt.datetime.fromisoformat(
        result.text(f"{REPORT}/vr:SignedObjectIdentifier//XAdES:SigningTime").replace("Z", "+00:00")
    )
    assert before - dt.timedelta(seconds=2) <= signing_time <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)


def test_intact_detached_cades_is_valid(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    content = "Arztbrief für Frau Müller\n".encode()
    signature = detached(soap, konnektor_sim, content)

    result = soap.verify_document(document=content, signature=signature, mime_type="text/plain")
    assert high_level(result) == "VALID"
    assert reported_certificate(result).subject.rfc4514_string().startswith(f"CN={HBA_HOLDER}")


def test_ecc_signature_of_a_g21_card_is_valid(konnektor_sim_factory) -> None:
    sim = konnektor_sim_factory(hba=False)
    sim.add_hba(HBA_HOLDER, "1-20014567890", ct_id="CT-1", workplaces=("Arbeitsplatz-1",), generation="G2.1")
    soap = Soap(sim)
    content = b"Befund"
    signature = detached(soap, sim, content)
    result = soap.verify_document(document=content, signature=signature, mime_type="text/plain")
    assert high_level(result) == "VALID"
    assert reported_certificate(result) == sim.cards[0].key_for("ECC").cert


def test_tampered_bytes_are_invalid_with_a_reason(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    pdf = signed_pdf(soap, konnektor_sim)
    at = pdf.index(b"Entlassbrief")
    tampered = pdf[:at] + b"X" + pdf[at + 1 :]  # same length: the cross-reference table still fits
    result = soap.verify_document(document=tampered)
    assert high_level(result) == "INVALID"
    assert "verändert" in reason(result)
    assert result.text(f"{REPORT}/vr:Details//vr:SignatureOK/vr:SigMathOK/vr:ResultMajor").endswith("invalid")

    content = b"Laborwerte: Kalium 4,1"
    signature = detached(soap, konnektor_sim, content)
    result = soap.verify_document(document=b"Laborwerte: Kalium 6,1", signature=signature, mime_type="text/plain")
    assert high_level(result) == "INVALID"
    assert "verändert" in reason(result)


def test_bytes_appended_after_the_signature_are_invalid(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    pdf = signed_pdf(soap, konnektor_sim)
    result = soap.verify_document(document=pdf + b"\n%% nachgetragen\n")
    assert high_level(result) == "INVALID"
    assert "nach der letzten Signatur verändert" in reason(result)


def test_unsigned_documents_are_invalid(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    for document, mime_type in ((sample_pdf(), "application/pdf"), (b"nur Text", "text/plain")):
        result = soap.verify_document(document=document, mime_type=mime_type)
        assert high_level(result) == "INVALID"
        assert reason(result) == "Das Dokument enthält keine Signatur."
        # No signature, no signer: the report has no details.
        assert result.find(f"{REPORT}/vr:Details") is None


def test_a_signature_of_a_foreign_ca_is_invalid(konnektor_sim: KonnektorSimulator, tmp_path: Path) -> None:
    # Same names, other keys: a CA that merely looks like the simulator's.
    foreign = Pki(tmp_path / "foreign")
    card = foreign.card_certificate(
        "80276883110000000001",
        holder_name=HBA_HOLDER,
        telematik_id="1-20014567890",
        profession_item="Ärztin/Arzt",
        profession_oid=OID_ARZT,
        algorithm="ECC",
    )
    soap = Soap(konnektor_sim)
    content = b"Arztbrief"
    cms = signatures.cades(content, card, short_text="Arztbrief")
    result = soap.verify_document(document=content, signature=cms, mime_type="text/plain")
    assert high_level(result) == "INVALID"
    assert "nicht von einer vertrauenswürdigen Zertifizierungsstelle" in reason(result)
    assert result.text(f"{REPORT}/vr:Details//vr:PathValiditySummary/vr:ResultMajor").endswith("invalid")

    pdf = signatures.pades(sample_pdf(), card, foreign.qes_ca, short_text="Arztbrief")
    result = soap.verify_document(document=pdf)
    assert high_level(result) == "INVALID"
    assert "vertrauenswürdigen" in reason(result)


def test_a_signature_by_the_smcb_is_not_a_qes_of_the_ca(konnektor_sim: KonnektorSimulator) -> None:
    # The SMC-B's AUT key is issued by the SMC-B CA, not the QES CA.
    smcb = add_smcb(konnektor_sim)
    soap = Soap(konnektor_sim)
    content = b"Bescheinigung"
    cms = signatures.cades(content, smcb.aut_keys["ECC"], short_text="x")
    result = soap.verify_document(document=content, signature=cms, mime_type="text/plain")
    assert high_level(result) == "INVALID"


def test_detached_signature_without_its_document_is_inconclusive(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    signature = detached(soap, konnektor_sim, b"Befund")
    result = soap.verify_document(signature=signature)
    assert high_level(result) == "INCONCLUSIVE"
    assert "fehlt das signierte Dokument" in reason(result)


def test_enveloping_cades_is_verified_from_its_content(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    result = soap.sign_document(
        konnektor_sim.cards[0].card_handle, soap.get_job_number(), [Doc("e", b"innen", include_econtent=True)]
    )
    value = responses_by_id(result)["e"].find("dss:SignatureObject/dss:Base64Signature", namespaces=_ns())
    assert value is not None
    signature = base64.b64decode(value.text or "")
    assert high_level(soap.verify_document(signature=signature)) == "VALID"
    # The enclosed content and a different document given alongside: not the signed bytes.
    assert high_level(soap.verify_document(signature=signature, document=b"aussen", mime_type="text/plain")) == (
        "INVALID"
    )


def test_garbage_is_invalid_not_an_error(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    result = soap.verify_document(document=b"Text", signature=b"\x30\x03\x02\x01\x01", mime_type="text/plain")
    assert high_level(result) == "INVALID"
    assert "beschädigt" in reason(result)
    broken_pdf = b"%PDF-1.7\n" + b"\x00" * 50
    assert high_level(soap.verify_document(document=broken_pdf)) == "INVALID"


def test_report_only_when_asked_and_certificate_only_when_asked(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    pdf = signed_pdf(soap, konnektor_sim)
    bare = soap.verify_document(document=pdf, report=False)
    assert high_level(bare) == "VALID"
    assert bare.find("SIG:OptionalOutputs") is None
    without_value = soap.verify_document(document=pdf, include_certificate=False)
    assert without_value.find(f"{REPORT}/vr:Details//vr:CertificateValue") is None
    assert HBA_HOLDER in without_value.text(f"{REPORT}/vr:Details//vr:CertificateValidity/vr:Subject")


def test_verification_failure_fault_and_bad_requests(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    konnektor_sim.arm_fault("verify-failure")
    failed = soap.verify_document(document=sample_pdf())
    assert failed.fault_code == 4001
    # Once: the next call is answered.
    assert high_level(soap.verify_document(document=sample_pdf())) == "INVALID"
    konnektor_sim.arm_fault("verify-failure", code=4000)
    assert soap.verify_document(document=sample_pdf()).fault_code == 4000
    # Neither a document nor a signature: a syntax error.
    assert soap.verify_document().fault_code == 4000
    # Wrong context: refused like every other operation.
    assert soap.verify_document(document=sample_pdf(), mandant="Fremd").fault_code == 4004


@pytest.mark.parametrize("mode", ["basic"])
def test_verify_works_in_the_secure_modes(konnektor_sim_factory, mode: str, tmp_path: Path) -> None:
    import requests

    sim = konnektor_sim_factory(mode=mode)
    ca = tmp_path / "ca.pem"
    ca.write_bytes(sim.server_ca_pem)
    session = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE from the environment replaces session.verify (requests #3829).
    session.trust_env = False
    session.verify = str(ca)
    session.auth = (sim.basic_user, sim.basic_password)
    soap = Soap(sim, session)
    assert high_level(soap.verify_document(document=signed_pdf(soap, sim))) == "VALID"


def test_a_pdf_signed_twice_is_valid(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    once = signed_pdf(soap, konnektor_sim)
    response = sign(soap, konnektor_sim, Doc("p2", once, "application/pdf", pades=True))
    data = response.find("SIG:OptionalOutputs/SIG:DocumentWithSignature/dss:Base64Data", namespaces=_ns())
    assert data is not None
    twice = base64.b64decode(data.text or "")
    assert twice.startswith(once)
    assert high_level(soap.verify_document(document=twice)) == "VALID"
    # The first signature's bytes changed: the whole document is not valid any more.
    at = twice.index(b"Entlassbrief")
    assert high_level(soap.verify_document(document=twice[:at] + b"Y" + twice[at + 1 :])) == "INVALID"
