"""ExternalAuthenticate (AuthSignatureService 7.4.1) and the SMC-B's C.AUT of the simulated Konnektor over its real
sockets, requests built by hand; every request and answer is valid against the official schemas (``Soap.call``)."""

from __future__ import annotations

import base64
import hashlib

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from lxml import etree

from tests.fixtures.konnektor_sim import NS, PATHS, SOAP_ENV, Soap, SoapResult, add_smcb, context
from tisim.konnektor import KonnektorSimulator
from tisim.konnektor.pki import verify_auth_signature

DIGEST = hashlib.sha256(b"header.payload").digest()
RSA_TYPE = "urn:ietf:rfc:3447"


def signature_of(result: SoapResult) -> bytes:
    assert result.fault_code is None, result.fault_string
    return base64.b64decode(result.text("dss:SignatureObject/dss:Base64Signature"))


def aut_certificate(soap: Soap, handle: str, crypt: str | None = None) -> bytes:
    result = soap.read_card_certificate(handle, ("C.AUT",), crypt=crypt)
    assert result.fault_code is None, result.fault_string
    path = "CERTCMN:X509DataInfoList/CERTCMN:X509DataInfo/CERTCMN:X509Data/CERTCMN:X509Certificate"
    return base64.b64decode(result.text(path))


def test_ecdsa_plain_signature(konnektor_sim: KonnektorSimulator) -> None:
    smcb = add_smcb(konnektor_sim)
    soap = Soap(konnektor_sim)
    result = soap.external_authenticate(smcb.card_handle, DIGEST)
    assert result.find("dss:SignatureObject/dss:Base64Signature").get("Type") == "urn:bsi:tr:03111:ecdsa"
    signature = signature_of(result)
    assert len(signature) == 64
    # Without Crypt, ReadCardCertificate answers with the card's only (ECC) C.AUT certificate.
    verify_auth_signature(aut_certificate(soap, smcb.card_handle), DIGEST, signature)


def test_rsa_pss_by_default_and_pkcs1_on_request(konnektor_sim: KonnektorSimulator) -> None:
    smcb = add_smcb(konnektor_sim, aut_algorithms=("ECC", "RSA"))
    soap = Soap(konnektor_sim)
    certificate = x509.load_der_x509_certificate(aut_certificate(soap, smcb.card_handle, "RSA"))
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    # No OptionalInputs: SignatureType defaults to RSA (RFC 3447), the scheme to RSASSA-PSS.
    pss = signature_of(soap.external_authenticate(smcb.card_handle, DIGEST, signature_type=None))
    key.verify(
        pss,
        DIGEST,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        utils.Prehashed(hashes.SHA256()),
    )
    pkcs1 = signature_of(
        soap.external_authenticate(smcb.card_handle, DIGEST, signature_type=RSA_TYPE, scheme="RSASSA-PKCS1-v1_5")
    )
    key.verify(pkcs1, DIGEST, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


def test_refusals(konnektor_sim: KonnektorSimulator) -> None:
    smcb = add_smcb(konnektor_sim)
    soap = Soap(konnektor_sim)
    assert soap.external_authenticate(smcb.card_handle, b"kurz").fault_code == 4000
    assert soap.external_authenticate(smcb.card_handle, DIGEST, signature_type="urn:x:unbekannt").fault_code == 4111
    # No RSA AUT key on this card; the eHBA has no AUT key here at all.
    assert soap.external_authenticate(smcb.card_handle, DIGEST, signature_type=RSA_TYPE).fault_code == 4209
    assert soap.external_authenticate(konnektor_sim.cards[0].card_handle, DIGEST).fault_code == 4209
    assert soap.external_authenticate(smcb.card_handle, DIGEST, mandant="Fremd").fault_code == 4004
    assert soap.external_authenticate("SMC-B-0-WEG", DIGEST).fault_code == 4101


def test_each_endpoint_answers_its_own_operations(konnektor_sim: KonnektorSimulator) -> None:
    smcb = add_smcb(konnektor_sim)
    soap = Soap(konnektor_sim)
    # ExternalAuthenticate shares the SignatureService 7.4 namespace, not its endpoint.
    op = _external_authenticate(smcb.card_handle)
    response = _post(konnektor_sim, PATHS["SIG74"], op)
    assert response.status_code == 500 and b"unknown operation" in response.content
    # And the AuthSignatureService endpoint does not sign documents.
    job = soap.get_job_number("SIG74")
    sign = _sign_document_74(konnektor_sim.cards[0].card_handle, job)
    response = _post(konnektor_sim, PATHS["AUTH"], sign)
    assert response.status_code == 500 and b"unknown operation" in response.content


def test_smcb_card_reports_its_aut_expiry(konnektor_sim: KonnektorSimulator) -> None:
    smcb = add_smcb(konnektor_sim)
    [card] = Soap(konnektor_sim).get_cards("SMC-B").findall("CARD:Cards/CARD:Card")
    expected = smcb.aut_keys["ECC"].cert.not_valid_after_utc.date().isoformat()
    assert card.findtext("CARD:CertificateExpirationDate", namespaces=NS) == expected


def _external_authenticate(handle: str) -> etree._Element:
    op = etree.Element(f"{{{NS['AUTH']}}}ExternalAuthenticate", nsmap=NS)
    etree.SubElement(op, f"{{{NS['CONN']}}}CardHandle").text = handle
    context(op)
    binary = etree.SubElement(op, f"{{{NS['AUTH']}}}BinaryString")
    etree.SubElement(binary, f"{{{NS['dss']}}}Base64Data").text = base64.b64encode(DIGEST).decode()
    return op


def _sign_document_74(handle: str, job: str) -> etree._Element:
    sig = NS["SIG74"]
    op = etree.Element(f"{{{sig}}}SignDocument", nsmap=NS)
    etree.SubElement(op, f"{{{NS['CONN']}}}CardHandle").text = handle
    context(op)
    etree.SubElement(op, f"{{{sig}}}TvMode").text = "NONE"
    etree.SubElement(op, f"{{{sig}}}JobNumber").text = job
    request = etree.SubElement(op, f"{{{sig}}}SignRequest", RequestID="r1")
    document = etree.SubElement(request, f"{{{sig}}}Document", ShortText="Brief")
    etree.SubElement(document, f"{{{NS['dss']}}}Base64Data", MimeType="text/plain").text = "QnJpZWY="
    etree.SubElement(request, f"{{{sig}}}IncludeRevocationInfo").text = "true"
    return op


def _post(sim: KonnektorSimulator, path: str, op: etree._Element) -> requests.Response:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    etree.SubElement(env, f"{{{SOAP_ENV}}}Body").append(op)
    return requests.post(
        sim.base_url + path,
        data=etree.tostring(env, xml_declaration=True, encoding="UTF-8"),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        timeout=30,
    )
