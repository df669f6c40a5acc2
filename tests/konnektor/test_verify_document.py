"""KonnektorClient.verify_document against the simulated Konnektor over its real sockets (every request validated
against the official schemas by ``make_client``), and against crafted answers for what the simulator never
sends."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
import zeep
from cryptography import x509
from lxml import etree

from konnektor import INCONCLUSIVE, INVALID, VALID, CallContext, KonnektorError, SignItem, VerifyResult, messages
from konnektor.client import WSDL_FILES, binding_name, wsdl_document
from tests.fixtures.konnektor_sim import (
    CLIENT_SYSTEM,
    HBA_HOLDER,
    MANDANT,
    NS,
    WORKPLACE,
    Soap,
    context,
    sample_pdf,
)
from tests.konnektor.support import OfficialSchemas, envelope, fault, standard_sds, trace
from tisim.konnektor import signatures
from tisim.konnektor.pki import OID_ARZT, Pki

CTX = CallContext(MANDANT, CLIENT_SYSTEM, WORKPLACE, "user-aerztin")


def sign(client, sim, item: SignItem):  # type: ignore[no-untyped-def]
    [result] = client.sign_documents(CTX, sim.cards[0].card_handle, client.get_job_number(CTX), [item])
    assert result.ok, result.text
    return result


def test_valid_pades_names_signer_time_and_qes(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    client, capture = make_client(konnektor_sim.base_url)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    signed = sign(client, konnektor_sim, SignItem("b", sample_pdf(), "application/pdf", "Entlassbrief", pades=True))
    assert signed.signed_document is not None

    result = client.verify_document(CTX, signature=None, document=signed.signed_document, mime_type="application/pdf")
    assert isinstance(result, VerifyResult)
    assert (result.valid, result.result, result.reason) == (True, VALID, "")
    assert result.signer_name == HBA_HOLDER
    assert result.signer_certificate == konnektor_sim.cards[0].certificate_der
    assert result.is_qes
    assert result.signing_time is not None and result.signing_time.tzinfo is not None
    assert before - dt.timedelta(seconds=2) <= result.signing_time <= dt.datetime.now(dt.UTC)
    assert capture.operations()[-1] == "VerifyDocument"


def test_valid_detached_cades(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(konnektor_sim.base_url)
    content = "Arztbrief für Herrn Öztürk\n".encode()
    signed = sign(client, konnektor_sim, SignItem("c", content, "text/plain; charset=utf-8", "Arztbrief"))
    result = client.verify_document(CTX, signature=signed.signature, document=content, mime_type="text/plain")
    assert result.valid and result.signer_name == HBA_HOLDER and result.is_qes


def test_tampered_unsigned_and_foreign_are_not_valid(konnektor_sim, make_client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(konnektor_sim.base_url)
    content = b"Laborwerte: Kalium 4,1"
    signed = sign(client, konnektor_sim, SignItem("c", content, "text/plain", "Labor"))

    tampered = client.verify_document(
        CTX, signature=signed.signature, document=b"Laborwerte: Kalium 6,1", mime_type="text/plain"
    )
    assert (tampered.valid, tampered.result) == (False, INVALID)
    assert "verändert" in tampered.reason
    assert tampered.signer_name == HBA_HOLDER  # who signed is still known
    assert not tampered.is_qes

    unsigned = client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert (unsigned.valid, unsigned.result, unsigned.reason) == (
        False,
        INVALID,
        "Das Dokument enthält keine Signatur.",
    )
    assert (unsigned.signer_name, unsigned.signer_certificate, unsigned.signing_time) == ("", None, None)

    foreign = Pki(tmp_path / "foreign")
    card = foreign.card_certificate(
        "80276883110000000002", holder_name="Dr. Fremd", telematik_id="1-99", profession_item="Arzt",
        profession_oid=OID_ARZT, algorithm="ECC",
    )  # fmt: skip
    cms = signatures.cades(b"Brief", card, short_text="Brief")
    untrusted = client.verify_document(CTX, signature=cms, document=b"Brief", mime_type="text/plain")
    assert not untrusted.valid and "vertrauenswürdigen" in untrusted.reason
    assert untrusted.signer_name == "Dr. Fremd"

    missing = client.verify_document(CTX, signature=signed.signature, document=None, mime_type="text/plain")
    assert (missing.valid, missing.result) == (False, INCONCLUSIVE)
    assert missing.reason


def test_verification_service_failure_is_a_konnektor_error(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(konnektor_sim.base_url)
    konnektor_sim.arm_fault("verify-failure")
    with pytest.raises(KonnektorError) as failed:
        client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert failed.value.code == 4001
    assert failed.value.text == "Interner Fehler im Konnektor."


def test_arguments_are_checked_before_sending(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    client, capture = make_client(konnektor_sim.base_url, max_document_bytes=1000)
    with pytest.raises(ValueError):
        client.verify_document(CTX, signature=None, document=None, mime_type="application/pdf")
    with pytest.raises(KonnektorError) as too_big:
        client.verify_document(CTX, signature=None, document=b"x" * 1001, mime_type="application/pdf")
    assert too_big.value.code == 4283
    assert capture.sent == []


@pytest.mark.parametrize("version", [(7, 5), (7, 4)])
def test_request_is_valid_against_the_official_schema(
    official_schemas: OfficialSchemas, version: tuple[int, int]
) -> None:
    client = zeep.Client(wsdl_document(WSDL_FILES[("SignatureService", version)]))
    proxy = client.create_service(binding_name("SignatureService", version), "http://127.0.0.1:9/x")
    for args in (
        messages.verify_document(CTX, signature=None, document=b"%PDF-1.7", mime_type="application/pdf"),
        messages.verify_document(CTX, signature=b"\x30\x00", document=b"Brief", mime_type="text/plain"),
        messages.verify_document(CTX, signature=b"\x30\x00", document=None, mime_type="text/plain"),
    ):
        envelope = client.create_message(proxy, "VerifyDocument", **args)
        assert official_schemas.validate_envelope(envelope) == "VerifyDocument"
        if version == (7, 4):
            official_schemas.validate_envelope(envelope, signature_740=True)


def test_a_74_konnektor_verifies_too(crafted, make_client) -> None:  # type: ignore[no-untyped-def]
    # PTV3/PTV4 Konnektors offer SignatureService 7.4 only: VerifyDocument is the same operation there.
    crafted.sds = standard_sds(
        crafted.base_url, signature=(("7.4.2", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4", "/sig74"),)
    )
    client, capture = make_client(crafted.base_url)
    crafted.answer_always(
        200,
        envelope(
            '<SIG:VerifyDocumentResponse xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.4"'
            ' xmlns:CONN="http://ws.gematik.de/conn/ConnectorCommon/v5.0">'
            "<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status>"
            "<SIG:VerificationResult><SIG:HighLevelResult>VALID</SIG:HighLevelResult>"
            "<SIG:TimestampType>SYSTEM_TIMESTAMP</SIG:TimestampType>"
            "<SIG:Timestamp>2026-01-01T10:00:00Z</SIG:Timestamp></SIG:VerificationResult>"
            "</SIG:VerifyDocumentResponse>"
        ),
    )
    result = client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert (result.valid, result.signer_name, result.signer_certificate) == (True, "", None)
    [sent] = [s for s in capture.sent if s.operation == "VerifyDocument"]
    assert sent.soap_action == "http://ws.gematik.de/conn/SignatureService/v7.4#VerifyDocument"
    assert crafted.received[-1].path == "/sig74"


def test_the_simulator_answers_on_74_as_well(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    client, _ = make_client(konnektor_sim.base_url)
    content = b"Befund"
    signed = sign(client, konnektor_sim, SignItem("c", content, "text/plain", "Befund"))
    result = Soap(konnektor_sim).call("SIG74", _verify_74(signed.signature or b"", content))
    assert result.text("SIG74:VerificationResult/SIG74:HighLevelResult") == "VALID"
    assert result.find("SIG74:OptionalOutputs/vr:VerificationReport") is not None


def _verify_74(signature: bytes, content: bytes) -> etree._Element:
    op = etree.Element(f"{{{NS['SIG74']}}}VerifyDocument", nsmap=NS)
    context(op)
    inputs = etree.SubElement(op, f"{{{NS['SIG74']}}}OptionalInputs")
    etree.SubElement(inputs, f"{{{NS['vr']}}}ReturnVerificationReport")
    document = etree.SubElement(op, f"{{{NS['SIG74']}}}Document")
    data = etree.SubElement(document, f"{{{NS['dss']}}}Base64Data", MimeType="text/plain")
    data.text = base64.b64encode(content).decode()
    sig = etree.SubElement(etree.SubElement(op, f"{{{NS['dss']}}}SignatureObject"), f"{{{NS['dss']}}}Base64Signature")
    sig.text = base64.b64encode(signature).decode()
    etree.SubElement(op, f"{{{NS['SIG74']}}}IncludeRevocationInfo").text = "false"
    return op


def test_crafted_report_without_certificate_and_a_fault(crafted, make_client) -> None:  # type: ignore[no-untyped-def]
    crafted.sds = standard_sds(crafted.base_url)
    client, _ = make_client(crafted.base_url)
    # A Konnektor that names the signer only by its subject and gives its own (English) reason.
    crafted.answer_always(
        200,
        envelope(
            '<SIG:VerifyDocumentResponse xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.5"'
            ' xmlns:CONN="http://ws.gematik.de/conn/ConnectorCommon/v5.0"'
            ' xmlns:vr="urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"'
            ' xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">'
            "<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status>"
            "<SIG:VerificationResult><SIG:HighLevelResult>INCONCLUSIVE</SIG:HighLevelResult>"
            "<SIG:TimestampType>SYSTEM_TIMESTAMP</SIG:TimestampType>"
            "<SIG:Timestamp>2026-01-01T10:00:00Z</SIG:Timestamp></SIG:VerificationResult>"
            "<SIG:OptionalOutputs><vr:VerificationReport><vr:IndividualReport><vr:SignedObjectIdentifier/>"
            "<dss:Result><dss:ResultMajor>urn:x</dss:ResultMajor>"
            '<dss:ResultMessage xml:lang="en">OCSP responder not reachable</dss:ResultMessage></dss:Result>'
            "<vr:Details><vr:DetailedSignatureReport><vr:CertificatePathValidity><vr:PathValidityDetail>"
            "<vr:CertificateValidity><vr:Subject>CN=Dr. Ada Lovelace,C=DE</vr:Subject></vr:CertificateValidity>"
            "</vr:PathValidityDetail></vr:CertificatePathValidity></vr:DetailedSignatureReport></vr:Details>"
            "</vr:IndividualReport></vr:VerificationReport></SIG:OptionalOutputs>"
            "</SIG:VerifyDocumentResponse>"
        ),
    )
    result = client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert (result.valid, result.result, result.reason) == (False, INCONCLUSIVE, "OCSP responder not reachable")
    assert (result.signer_name, result.signer_certificate, result.is_qes) == ("Dr. Ada Lovelace", None, False)

    # An unknown HighLevelResult is not taken for VALID.
    crafted.answer_always(
        200,
        envelope(
            '<SIG:VerifyDocumentResponse xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.5"'
            ' xmlns:CONN="http://ws.gematik.de/conn/ConnectorCommon/v5.0">'
            "<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status>"
            "<SIG:VerificationResult><SIG:HighLevelResult>MAYBE</SIG:HighLevelResult>"
            "<SIG:TimestampType>SYSTEM_TIMESTAMP</SIG:TimestampType>"
            "<SIG:Timestamp>2026-01-01T10:00:00Z</SIG:Timestamp></SIG:VerificationResult>"
            "</SIG:VerifyDocumentResponse>"
        ),
    )
    odd = client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert (odd.valid, odd.result) == (False, INCONCLUSIVE)
    assert odd.reason == "Die Signatur konnte nicht abschließend geprüft werden."

    # A hostile Konnektor's novel of a reason is cut to what a page can show.
    crafted.answer_always(
        200,
        envelope(
            '<SIG:VerifyDocumentResponse xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.5"'
            ' xmlns:CONN="http://ws.gematik.de/conn/ConnectorCommon/v5.0"'
            ' xmlns:vr="urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"'
            ' xmlns:dss="urn:oasis:names:tc:dss:1.0:core:schema">'
            "<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status>"
            "<SIG:VerificationResult><SIG:HighLevelResult>INVALID</SIG:HighLevelResult>"
            "<SIG:TimestampType>SYSTEM_TIMESTAMP</SIG:TimestampType>"
            "<SIG:Timestamp>2026-01-01T10:00:00Z</SIG:Timestamp></SIG:VerificationResult>"
            "<SIG:OptionalOutputs><vr:VerificationReport><vr:IndividualReport><vr:SignedObjectIdentifier/>"
            f"<dss:Result><dss:ResultMajor>urn:x</dss:ResultMajor><dss:ResultMessage>{'x' * 50_000}"
            "</dss:ResultMessage></dss:Result><vr:Details><vr:DetailedSignatureReport><vr:CertificatePathValidity>"
            "<vr:PathValidityDetail><vr:CertificateValidity><vr:Subject>CN=$(rm -rf)</vr:Subject>"
            "<vr:CertificateValue>kein-base64!</vr:CertificateValue></vr:CertificateValidity>"
            "</vr:PathValidityDetail></vr:CertificatePathValidity></vr:DetailedSignatureReport></vr:Details>"
            "</vr:IndividualReport></vr:VerificationReport></SIG:OptionalOutputs>"
            "</SIG:VerifyDocumentResponse>"
        ),
    )
    hostile = client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert (hostile.valid, len(hostile.reason), hostile.signer_certificate) == (False, 1000, None)
    assert hostile.signer_name == "$(rm -rf)"

    crafted.answer_always(500, fault("Interner Fehler", trace(90001, severity="Info"), trace(4001)))
    with pytest.raises(KonnektorError) as failed:
        client.verify_document(CTX, signature=None, document=sample_pdf(), mime_type="application/pdf")
    assert failed.value.code == 4001


def test_qes_flag_needs_the_qualified_statement(konnektor_sim, make_client) -> None:  # type: ignore[no-untyped-def]
    # The eHBA's C.QES carries QcCompliance; the signature of a certificate without it is no QES.
    certificate = x509.load_der_x509_certificate(konnektor_sim.cards[0].certificate_der)
    assert any(ext.oid.dotted_string == "1.3.6.1.5.5.7.1.3" for ext in certificate.extensions)
    smcb = konnektor_sim.add_smcb("Klinikum Demo", "5-2-1", ct_id="CT-1", workplaces=(WORKPLACE,))
    client, _ = make_client(konnektor_sim.base_url)
    cms = signatures.cades(b"x", smcb.keys["ECC"], short_text="x")
    # Issued by the QES CA but not qualified: the check passes, the signature is no QES.
    result = client.verify_document(CTX, signature=cms, document=b"x", mime_type="text/plain")
    assert result.valid and not result.is_qes
