"""The simulated Konnektor's services over real sockets: connector.sds, GetCards, GetPinStatus, VerifyPin,
ReadCardCertificate, GetJobNumber, SignDocument — every request and response checked against the official XSDs."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from io import BytesIO

import pytest
import requests
from asn1crypto import cms
from cryptography import x509
from lxml import etree

from tests.fixtures.konnektor_sim import (
    HBA_HOLDER,
    HBA_TELEMATIK_ID,
    NS,
    WORKPLACE,
    Doc,
    Soap,
    assert_schema_valid,
    responses_by_id,
    sample_pdf,
    verify_cades,
)
from tisim.konnektor import KonnektorSimulator


def test_connector_sds_announces_the_services_and_validates(konnektor_sim: KonnektorSimulator) -> None:
    response = requests.get(konnektor_sim.base_url + "/connector.sds", timeout=10)
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    assert_schema_valid(root)
    versions = {
        (v.getparent().getparent().get("Name"), v.get("Version")): v.find("SI:EndpointTLS", NS).get("Location")
        for v in root.iterfind(".//SI:Version", NS)
    }
    assert set(versions) == {
        ("SignatureService", "7.5.6"),
        ("SignatureService", "7.4.2"),
        ("EventService", "7.2.0"),
        ("CardService", "8.1.2"),
        ("CertificateService", "6.0.1"),
        ("AuthSignatureService", "7.4.1"),
    }
    # 7.5 and 7.4 live at different URLs, as on real Konnektors; every URL points to this simulator.
    assert versions[("SignatureService", "7.5.6")] != versions[("SignatureService", "7.4.2")]
    assert all(url.startswith(konnektor_sim.base_url + "/service/") for url in versions.values())
    assert root.findtext("SDS:TLSMandatory", namespaces=NS) == "false"


def test_get_cards_lists_the_hba_of_the_workplace(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    [card] = konnektor_sim.cards
    result = soap.get_cards("HBA")
    [el] = result.findall("CARD:Cards/CARD:Card")
    assert el.findtext("CONN:CardHandle", namespaces=NS) == card.card_handle
    assert el.findtext("CARDCMN:CardType", namespaces=NS) == "HBA"
    assert el.findtext("CARDCMN:Iccsn", namespaces=NS) == card.iccsn
    assert el.findtext("CARDCMN:CtId", namespaces=NS) == "CT-1"
    assert el.findtext("CARD:CardHolderName", namespaces=NS) == HBA_HOLDER
    # SMC-B filter: none; an unknown workplace: refused; another workplace: not local → not listed.
    assert soap.get_cards("SMC-B").findall("CARD:Cards/CARD:Card") == []
    assert soap.get_cards("HBA", workplace="Nirgendwo").fault_code == 4006
    konnektor_sim.add_terminal("CT-2", ["Arbeitsplatz-2"])
    assert soap.get_cards("HBA", workplace="Arbeitsplatz-2").findall("CARD:Cards/CARD:Card") == []
    assert (
        len(soap.get_cards("HBA", workplace="Arbeitsplatz-2", mandant_wide=True).findall("CARD:Cards/CARD:Card")) == 1
    )


@pytest.mark.parametrize(
    ("ctx", "code"),
    [
        ({"mandant": "Fremd"}, 4004),
        ({"client_system": "Fremd"}, 4005),
        ({"workplace": "Unbekannt"}, 4006),
        ({"mandant": ""}, 4021),
    ],
)
def test_context_errors(konnektor_sim: KonnektorSimulator, ctx: dict[str, str], code: int) -> None:
    assert Soap(konnektor_sim).get_cards("HBA", **ctx).fault_code == code


def test_read_card_certificate_carries_holder_and_telematik_id(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    result = Soap(konnektor_sim).read_card_certificate(card.card_handle)
    der = base64.b64decode(
        result.text("CERTCMN:X509DataInfoList/CERTCMN:X509DataInfo/CERTCMN:X509Data/CERTCMN:X509Certificate")
    )
    assert der == card.certificate_der
    cert = x509.load_der_x509_certificate(der)
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == HBA_HOLDER
    admissions = cert.extensions.get_extension_for_class(x509.Admissions).value
    assert next(iter(admissions)).profession_infos[0].registration_number == HBA_TELEMATIK_ID
    # Issued by the QES test CA the simulator publishes.
    ca = x509.load_pem_x509_certificate(konnektor_sim.qes_ca_pem)
    cert.verify_directly_issued_by(ca)
    assert Soap(konnektor_sim).read_card_certificate(card.card_handle, ("C.AUT",)).fault_code == 4149


def test_pin_status_and_unknown_handle(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    result = soap.get_pin_status(card.card_handle)
    assert result.text("CARD:PinStatus") == "VERIFIABLE"
    assert result.text("CARD:LeftTries") == "3"
    assert soap.get_pin_status(card.card_handle, "PIN.SMC").fault_code == 4072
    assert soap.get_pin_status("HBA-gibt-es-nicht").fault_code == 4101


def test_verify_pin_at_the_terminal(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    result = soap.verify_pin(card.card_handle)
    assert result.text("CARDCMN:PinResult") == "OK"
    assert soap.verify_pin(card.card_handle, user_id=None).fault_code == 4003
    konnektor_sim.arm_fault("wrong-pin")
    rejected = soap.verify_pin(card.card_handle)
    assert rejected.text("CARDCMN:PinResult") == "REJECTED"
    assert rejected.text("CARDCMN:LeftTries") == "2"


def test_job_numbers_have_the_format_and_do_not_repeat(konnektor_sim: KonnektorSimulator) -> None:
    soap = Soap(konnektor_sim)
    numbers = [soap.get_job_number() for _ in range(50)] + [soap.get_job_number("SIG74") for _ in range(10)]
    assert all(re.fullmatch(r"[A-Z]{3}-[0-9]{3}", n) for n in numbers)
    assert len(set(numbers)) == len(numbers)


def test_sign_document_cades_is_verifiable_against_the_card_certificate(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    job = soap.get_job_number()
    docs = [
        Doc("brief-1", b"Sehr geehrte Kollegin,\nanbei der Befund.\n", short_text="Arztbrief Müller"),
        Doc("brief-2", b"<Brief>2</Brief>", mime_type="text/xml", short_text="eAU 2"),
    ]
    result = soap.sign_document(card.card_handle, job, docs)
    assert result.fault_code is None, result.fault_string
    by_id = responses_by_id(result)
    assert set(by_id) == {"brief-1", "brief-2"}
    for doc in docs:
        response = by_id[doc.request_id]
        assert response.findtext("CONN:Status/CONN:Result", namespaces=NS) == "OK"
        b64 = response.find("dss:SignatureObject/dss:Base64Signature", NS)
        assert b64 is not None and b64.get("Type") == "urn:ietf:rfc:5652"
        signer = verify_cades(base64.b64decode(b64.text or ""), doc.content, card.certificate_der)
        hints = next(a for a in signer["signed_attrs"] if a["type"].dotted == "1.2.840.113549.1.9.16.2.4")
        assert doc.short_text.encode("utf-8") in hints["values"][0].dump()  # content-hints: the ShortText
    signed = konnektor_sim.signed_requests
    assert [(s.job_number, s.request_id, s.workplace_id, s.user_id) for s in signed] == [
        (job, "brief-1", WORKPLACE, "user-aerztin"),
        (job, "brief-2", WORKPLACE, "user-aerztin"),
    ]
    # The terminal showed the job number exactly as the portal shows it.
    assert konnektor_sim.terminal("CT-1").prompts == [[f"#{job}", "Eingabe Signatur-PIN HBA", "PIN.QES:"]]


def test_sign_document_v74_endpoint(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    job = soap.get_job_number("SIG74")
    result = soap.sign_document(card.card_handle, job, [Doc("r1", b"Text")], prefix="SIG74")
    [response] = result.findall("SIG74:SignResponse")
    b64 = response.findtext("dss:SignatureObject/dss:Base64Signature", namespaces=NS)
    verify_cades(base64.b64decode(b64 or ""), b"Text", card.certificate_der)


def test_sign_document_pades_validates_with_pyhanko(konnektor_sim: KonnektorSimulator) -> None:
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    pdf = sample_pdf("Entlassbrief Frau M.")
    docs = [
        Doc("pdf-1", pdf, mime_type="application/pdf-a", short_text="Entlassbrief M", pades=True, document_id="D1"),
        Doc("pdf-2", pdf, mime_type="application/pdf", short_text="Entlassbrief N", pades=True),
    ]
    result = soap.sign_document(card.card_handle, soap.get_job_number(), docs)
    by_id = responses_by_id(result)
    ca = asn1_x509.Certificate.load(
        x509.load_pem_x509_certificate(konnektor_sim.qes_ca_pem).public_bytes(
            __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER
        )
    )
    for doc in docs:
        response = by_id[doc.request_id]
        with_sig = response.find("SIG:OptionalOutputs/SIG:DocumentWithSignature", NS)
        assert with_sig is not None
        pointer = response.find("dss:SignatureObject/dss:SignaturePtr", NS)
        assert pointer is not None and pointer.get("WhichDocument") == with_sig.get("ID")
        if doc.document_id:
            assert with_sig.get("ID") == doc.document_id
        data = with_sig.find("dss:Base64Data", NS)
        assert data is not None and data.get("MimeType") == doc.mime_type
        signed_pdf = base64.b64decode(data.text or "")
        assert signed_pdf.startswith(pdf)  # incremental update: what was shown is what was signed
        reader = PdfFileReader(BytesIO(signed_pdf))
        [embedded] = reader.embedded_signatures
        status = validate_pdf_signature(
            embedded, ValidationContext(trust_roots=[ca], allow_fetching=False, revocation_mode="soft-fail")
        )
        assert status.intact and status.valid and status.trusted
        assert status.signing_cert.dump() == card.certificate_der
        assert embedded.sig_object["/Reason"] == doc.short_text


def test_include_econtent_gives_an_enveloping_cms(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    result = soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("e", b"Inhalt", include_econtent=True)])
    b64 = result.text("SIG:SignResponse/dss:SignatureObject/dss:Base64Signature")
    signed_data = cms.ContentInfo.load(base64.b64decode(b64))["content"]
    assert signed_data["encap_content_info"]["content"].native == b"Inhalt"


def test_two_cards_in_one_terminal_share_its_pin_pad(konnektor_sim_factory: Callable[..., KonnektorSimulator]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sim = konnektor_sim_factory(auto_pin=None)
    second = sim.add_hba("Dr. Zweite", "1-2", ct_id="CT-1")
    [first, _] = sim.cards
    soap = Soap(sim)
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(soap.sign_document, first.card_handle, soap.get_job_number(), [Doc("a", b"a")])
        assert sim.terminal("CT-1").wait_for_prompt(30)
        busy = soap.sign_document(second.card_handle, soap.get_job_number(), [Doc("b", b"b")])
        assert busy.fault_code == 4060
        sim.terminal("CT-1").enter_pin("123456")
        assert future.result(timeout=60).fault_code is None


def test_the_schema_check_itself_rejects_a_wrong_response() -> None:
    # Guard for every test here: a response without its mandatory Status is not accepted.
    response = etree.Element(f"{{{NS['EVT']}}}GetCardsResponse")
    etree.SubElement(response, f"{{{NS['CARD']}}}Cards")
    with pytest.raises(AssertionError, match="not valid"):
        assert_schema_valid(response)


def test_g21_card_signs_with_its_ecc_key_for_rsa_ecc(konnektor_sim_factory: Callable[..., KonnektorSimulator]) -> None:
    sim = konnektor_sim_factory(hba=False)
    card = sim.add_hba("Dr. Neu", "1-21", generation="G2.1")
    soap = Soap(sim)
    [listed] = soap.get_cards().findall("CARD:Cards/CARD:Card")
    assert listed.findtext("CARD:CardVersion/CARD:ObjectSystemVersion/CARD:Minor", namespaces=NS) == "4"
    path = "CERTCMN:X509DataInfoList/CERTCMN:X509DataInfo/CERTCMN:X509Data/CERTCMN:X509Certificate"
    rsa_der = base64.b64decode(soap.read_card_certificate(card.card_handle).text(path))
    ecc_der = base64.b64decode(soap.read_card_certificate(card.card_handle, crypt="ECC").text(path))
    assert (rsa_der, ecc_der) == (card.certificate_der, card.ecc_certificate_der)
    ecc_cert = x509.load_der_x509_certificate(ecc_der)
    assert ecc_cert.public_key().curve.name == "brainpoolP256r1"  # type: ignore[union-attr]
    [admission] = ecc_cert.extensions.get_extension_for_class(x509.Admissions).value
    assert admission.profession_infos[0].registration_number == "1-21"

    for crypt, expected in (("RSA_ECC", ecc_der), ("RSA", rsa_der), ("ECC", ecc_der)):
        result = soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("d", b"Brief")], crypt=crypt)
        b64 = result.text("SIG:SignResponse/dss:SignatureObject/dss:Base64Signature")
        verify_cades(base64.b64decode(b64), b"Brief", expected)
    assert [s.algorithm for s in sim.signed_requests] == ["ECC", "RSA", "ECC"]


def test_g20_card_has_no_ecc_key(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    assert card.ecc_certificate_der is None
    assert soap.read_card_certificate(card.card_handle, crypt="ECC").fault_code == 4258
    assert soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("d", b"x")], crypt="ECC").fault_code == 4258
    # RSA_ECC on a G2.0 card signs with RSA (TAB_KON_900).
    assert soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("d", b"x")]).fault_code is None
    assert konnektor_sim.signed_requests[-1].algorithm == "RSA"
