"""Every request the client builds, rendered by zeep from the package's WSDL subset, is valid against the
OFFICIAL gematik schemas (the simulator tests check the same for the requests actually sent)."""

from __future__ import annotations

import pytest
import zeep
from lxml import etree

from konnektor import CallContext, SignItem, messages, short_text
from konnektor.client import WSDL_FILES, binding_name, wsdl_document
from tests.konnektor.support import SOAP_ENV, OfficialSchemas

CTX = CallContext("Mandant1", "KIMPortal", "Arbeitsplatz-1", "user-7f3a")
ITEMS = [
    SignItem("letter-1", b"%PDF-1.7 fake", "application/pdf", "Arztbrief: Müller/Hans (2024)", pades=True),
    SignItem("letter-2", "Befund äöü".encode(), "text/plain; charset=utf-8", "Befund", pades=False),
    SignItem("letter-3", b"<a/>", "text/xml", "x" * 80, pades=False),
]


def render(service: str, major_minor: tuple[int, int], operation: str, args: dict[str, object]) -> etree._Element:
    client = zeep.Client(wsdl_document(WSDL_FILES[(service, major_minor)]))
    proxy = client.create_service(binding_name(service, major_minor), "http://127.0.0.1:9/x")
    return client.create_message(proxy, operation, **args)


CASES = [
    ("EventService", (7, 2), "GetCards", messages.get_cards(CTX, "HBA")),
    ("CardService", (8, 1), "GetPinStatus", messages.pin(CTX, "HBA-1", "PIN.QES")),
    ("CardService", (8, 1), "VerifyPin", messages.pin(CTX, "HBA-1", "PIN.QES")),
    ("CertificateService", (6, 0), "ReadCardCertificate", messages.read_card_certificate(CTX, "HBA-1", None)),
    ("CertificateService", (6, 0), "ReadCardCertificate", messages.read_card_certificate(CTX, "HBA-1", "ECC")),
    ("SignatureService", (7, 5), "GetJobNumber", messages.get_job_number(CTX)),
    ("SignatureService", (7, 5), "StopSignature", messages.stop_signature(CTX, "ABC-123")),
    (
        "SignatureService",
        (7, 5),
        "SignDocument",
        messages.sign_document(CTX, "HBA-1", "ABC-123", ITEMS, crypt="RSA_ECC"),
    ),
    ("SignatureService", (7, 4), "GetJobNumber", messages.get_job_number(CTX)),
    ("SignatureService", (7, 4), "StopSignature", messages.stop_signature(CTX, "ABC-123")),
    ("SignatureService", (7, 4), "SignDocument", messages.sign_document(CTX, "HBA-1", "ABC-123", ITEMS, crypt="RSA")),
]


@pytest.mark.parametrize(("service", "version", "operation", "args"), CASES, ids=lambda v: str(v)[:40])
def test_request_is_valid_against_the_official_schema(
    official_schemas: OfficialSchemas, service: str, version: tuple[int, int], operation: str, args: dict[str, object]
) -> None:
    envelope = render(service, version, operation, args)
    assert official_schemas.validate_envelope(envelope) == operation


def test_signature_service_740_gets_no_crypt_and_is_valid(official_schemas: OfficialSchemas) -> None:
    args = messages.sign_document(CTX, "HBA-1", "ABC-123", ITEMS, crypt=None)
    envelope = render("SignatureService", (7, 4), "SignDocument", args)
    official_schemas.validate_envelope(envelope, signature_740=True)
    # The validator does catch a Crypt a 7.4.0 Konnektor does not know.
    with_crypt = render(
        "SignatureService", (7, 4), "SignDocument", messages.sign_document(CTX, "H", "ABC-123", ITEMS, crypt="RSA")
    )
    with pytest.raises(AssertionError, match="Crypt"):
        official_schemas.validate_envelope(with_crypt, signature_740=True)


def test_sign_document_carries_what_the_qes_needs() -> None:
    envelope = render(
        "SignatureService",
        (7, 5),
        "SignDocument",
        messages.sign_document(CTX, "HBA-1", "XYZ-987", ITEMS, crypt="RSA_ECC"),
    )
    ns = {
        "s": "http://ws.gematik.de/conn/SignatureService/v7.5",
        "dss": "urn:oasis:names:tc:dss:1.0:core:schema",
        "c": "http://ws.gematik.de/conn/ConnectorCommon/v5.0",
    }
    sign = envelope.find(f"{{{SOAP_ENV}}}Body")[0]
    assert sign.findtext("s:TvMode", namespaces=ns) == "NONE"
    assert sign.findtext("s:JobNumber", namespaces=ns) == "XYZ-987"
    assert sign.findtext("s:Crypt", namespaces=ns) == "RSA_ECC"
    assert sign.findtext(".//c:UserId", namespaces=ns) == "user-7f3a"
    requests = sign.findall("s:SignRequest", namespaces=ns)
    assert [r.get("RequestID") for r in requests] == ["letter-1", "letter-2", "letter-3"]
    assert [r.findtext(".//dss:SignatureType", namespaces=ns) for r in requests] == [
        "http://uri.etsi.org/02778/3",
        "urn:ietf:rfc:5652",
        "urn:ietf:rfc:5652",
    ]
    # Detached CAdES: no document inside the CMS; PAdES takes no IncludeEContent at all (4111 otherwise).
    assert [r.findtext(".//s:IncludeEContent", namespaces=ns) for r in requests] == [None, "false", "false"]
    assert all(r.findtext("s:IncludeRevocationInfo", namespaces=ns) == "true" for r in requests)
    texts = [r.find("s:Document", namespaces=ns).get("ShortText") for r in requests]
    assert texts == ["Arztbrief Müller Hans 2024", "Befund", "x" * 30]
    data = requests[1].find(".//dss:Base64Data", namespaces=ns)
    assert data.get("MimeType") == "text/plain; charset=utf-8"


def test_context_without_user_id_leaves_it_out(official_schemas: OfficialSchemas) -> None:
    envelope = render("EventService", (7, 2), "GetCards", messages.get_cards(CallContext("M", "CS", "WP"), "HBA"))
    official_schemas.validate_envelope(envelope)
    assert b"UserId" not in etree.tostring(envelope)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Arztbrief Müller", "Arztbrief Müller"),
        ("eAU: Meier, Paul / 12.03.", "eAU Meier Paul 12.03"),
        ("   ", "Dokument"),
        ("Entlassbrief_Station-4B für Frau Dr. Schmidt-Weißenfels", "Entlassbrief_Station-4B für Fr"),
        ("Ärztlicher Befund 😀 ©", "Ärztlicher Befund"),
    ],
)
def test_short_text_keeps_only_the_allowed_characters(text: str, expected: str) -> None:
    result = short_text(text)
    assert result == expected
    assert len(result) <= 30


def test_the_validator_refuses_what_a_konnektor_would(official_schemas: OfficialSchemas) -> None:
    # Without IncludeRevocationInfo (mandatory for every SignRequest): invalid.
    envelope = render(
        "SignatureService", (7, 5), "SignDocument", messages.sign_document(CTX, "H", "ABC-123", ITEMS[:1], crypt=None)
    )
    ns = "http://ws.gematik.de/conn/SignatureService/v7.5"
    request = envelope.find(f".//{{{ns}}}SignRequest")
    request.remove(request.find(f"{{{ns}}}IncludeRevocationInfo"))
    with pytest.raises(AssertionError, match="IncludeRevocationInfo"):
        official_schemas.validate_envelope(envelope)
