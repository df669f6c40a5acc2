"""What the simulator never sends, from a crafted Konnektor over a real socket: XML bombs and external entities
refused, faults read from the last trace, HTTP errors, timeouts per operation, a 7.4.0 Konnektor (no Crypt),
per-document statuses and missing results."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from konnektor import KonnektorError, SignItem
from tests.konnektor.support import (
    Answer,
    CraftedKonnektor,
    Received,
    envelope,
    fault,
    job_number_response,
    standard_sds,
    trace,
)

SIG = "http://ws.gematik.de/conn/SignatureService/v7.5"
CONN = "http://ws.gematik.de/conn/ConnectorCommon/v5.0"
DSS = "urn:oasis:names:tc:dss:1.0:core:schema"

BOMB = (
    '<!DOCTYPE lolz [<!ENTITY lol "lollollollollollollollollollol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
    + "]>"
)


def sign_response(*responses: str) -> bytes:
    return envelope(f'<SIG:SignDocumentResponse xmlns:SIG="{SIG}">{"".join(responses)}</SIG:SignDocumentResponse>')


def status(result: str = "OK", error: str = "") -> str:
    return f'<CONN:Status xmlns:CONN="{CONN}"><CONN:Result>{result}</CONN:Result>{error}</CONN:Status>'


def gerror(*traces: str) -> str:
    return (
        '<GERROR:Error xmlns:GERROR="http://ws.gematik.de/tel/error/v2.0"><GERROR:MessageID>m</GERROR:MessageID>'
        f"<GERROR:Timestamp>2024-01-01T10:00:00Z</GERROR:Timestamp>{''.join(traces)}</GERROR:Error>"
    )


def cades(request_id: str, signature: bytes, *, state: str | None = None) -> str:
    return (
        f'<SIG:SignResponse RequestID="{request_id}">{state or status()}'
        f'<dss:SignatureObject xmlns:dss="{DSS}"><dss:Base64Signature Type="urn:ietf:rfc:5652">'
        f"{base64.b64encode(signature).decode()}</dss:Base64Signature></dss:SignatureObject></SIG:SignResponse>"
    )


def pades(request_id: str, document: bytes) -> str:
    return (
        f'<SIG:SignResponse RequestID="{request_id}">{status()}<SIG:OptionalOutputs><SIG:DocumentWithSignature>'
        f'<dss:Base64Data xmlns:dss="{DSS}" MimeType="application/pdf">{base64.b64encode(document).decode()}'
        f'</dss:Base64Data></SIG:DocumentWithSignature></SIG:OptionalOutputs><dss:SignatureObject xmlns:dss="{DSS}">'
        '<dss:SignaturePtr WhichDocument="doc1"/></dss:SignatureObject></SIG:SignResponse>'
    )


def failed(request_id: str, code: int) -> str:
    return f'<SIG:SignResponse RequestID="{request_id}">{status("Warning", gerror(trace(code)))}</SIG:SignResponse>'


ITEMS = [
    SignItem("a", b"%PDF-1.7 a", "application/pdf", "Brief A", pades=True),
    SignItem("b", b"text b", "text/plain", "Brief B"),
    SignItem("c", b"text c", "text/plain", "Brief C"),
    SignItem("d", b"text d", "text/plain", "Brief D"),
]


def test_an_xml_bomb_is_refused_quickly(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer_always(200, envelope(job_number_response("&lol9;"), prolog=BOMB))
    client, _ = make_client(crafted.base_url)
    started = time.monotonic()
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert time.monotonic() - started < 5
    assert caught.value.kind == "protocol"
    assert caught.value.code is None
    assert "abgelehnt" in caught.value.text


def test_an_xml_bomb_in_a_fault_is_refused(crafted: CraftedKonnektor, make_client, ctx) -> None:
    body = fault("&lol9;", trace(4043)).replace(b"?>", b"?>" + BOMB.encode(), 1)
    crafted.answer_always(500, body)
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert caught.value.kind == "protocol"
    assert caught.value.code is None


def test_external_entities_are_neither_resolved_nor_fetched(crafted: CraftedKonnektor, make_client, ctx) -> None:
    prolog = (
        f'<!DOCTYPE x [<!ENTITY file SYSTEM "file:///etc/passwd">'
        f'<!ENTITY remote SYSTEM "{crafted.base_url}/evil.xml">]>'
    )
    crafted.answer_always(200, envelope(job_number_response("&file;&remote;"), prolog=prolog))
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert "root:" not in caught.value.text + caught.value.fault
    assert "/evil.xml" not in [r.path for r in crafted.received]


def test_an_external_dtd_is_not_fetched(crafted: CraftedKonnektor, make_client, ctx) -> None:
    prolog = f'<!DOCTYPE soap:Envelope SYSTEM "{crafted.base_url}/evil.dtd">'
    crafted.answer_always(200, envelope(job_number_response(), prolog=prolog))
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError):
        client.get_job_number(ctx)
    assert "/evil.dtd" not in [r.path for r in crafted.received]


def test_a_fault_is_read_from_its_last_trace(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer_always(
        500,
        fault(
            "Abbruch durch den Benutzer",
            trace(10017, text="KT: Taste Abbruch", comp="Kartenterminal"),
            trace(4049, text="Abbruch durch den Benutzer"),
        ),
    )
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS[1:2])
    error = caught.value
    assert (error.code, error.kind, error.severity) == (4049, "fault", "Error")
    assert error.text == "Abbruch durch den Benutzer am Kartenterminal."
    assert error.fault == "Abbruch durch den Benutzer"


@pytest.mark.parametrize(
    ("status_code", "body", "kind", "words"),
    [
        (401, b"", "auth", "Benutzername oder Passwort"),
        (403, b"<html>forbidden</html>", "auth", "verweigert"),
        (500, b"<html>Internal Server Error</html>", "protocol", "HTTP-Status 500"),
        (502, b"", "protocol", "HTTP-Status 502"),
    ],
)
def test_http_errors(crafted: CraftedKonnektor, make_client, ctx, status_code, body, kind, words) -> None:
    crafted.answer_always(status_code, body)
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert caught.value.kind == kind
    assert words in caught.value.text


def test_unreachable_konnektor(make_client, ctx) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client, _ = make_client(f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(KonnektorError) as caught:
        client.get_cards(ctx)
    assert caught.value.code is None
    assert caught.value.kind == "unreachable"
    assert caught.value.text.startswith("Konnektor nicht erreichbar")


def test_operations_time_out_after_timeout(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer_always(200, envelope(job_number_response()), delay=30)
    client, _ = make_client(crafted.base_url, timeout=0.5, sign_timeout=60)
    started = time.monotonic()
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert time.monotonic() - started < 10
    assert caught.value.kind == "timeout"
    assert "0.5 Sekunden" in caught.value.text


def test_sign_document_waits_for_sign_timeout_not_timeout(crafted: CraftedKonnektor, make_client, ctx) -> None:
    # The Konnektor answers after 1.5 s (the PIN typed): more than `timeout`, less than `sign_timeout`.
    crafted.answer = lambda received: Answer(200, sign_response(cades("b", b"\x30\x03\x02\x01\x01")), delay=1.5)
    client, _ = make_client(crafted.base_url, timeout=0.5, sign_timeout=30)
    results = client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS[1:2])
    assert results[0].ok


def test_sign_document_times_out_after_sign_timeout(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer = lambda received: Answer(200, sign_response(cades("b", b"x")), delay=30)
    client, _ = make_client(crafted.base_url, timeout=10, sign_timeout=0.5)
    with pytest.raises(KonnektorError) as caught:
        client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS[1:2])
    assert caught.value.kind == "timeout"
    assert "PIN-Eingabe" in caught.value.text


def test_results_are_matched_by_request_id(crafted: CraftedKonnektor, make_client, ctx) -> None:
    # Out of order; "c" failed with its own status; "d" missing (the PIN was not entered for a later sub-batch);
    # an unknown RequestID ignored; "b" signed with a warning (revocation info not embedded).
    warned = status("Warning", gerror(trace(4261, severity="Warning")))
    crafted.answer_always(
        200,
        sign_response(
            failed("c", 4110),
            cades("b", b"CMS-B", state=warned),
            pades("a", b"%PDF-1.7 signed a"),
            cades("zzz", b"stray"),
        ),
    )
    client, capture = make_client(crafted.base_url)
    results = client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS)
    assert [r.request_id for r in results] == ["a", "b", "c", "d"]
    a, b, c, d = results
    assert a.ok and a.signed_document == b"%PDF-1.7 signed a" and a.code is None and a.text == ""
    assert b.ok and b.signature == b"CMS-B" and b.code == 4261 and "Sperrinformationen" in b.text
    assert not c.ok and c.code == 4110 and c.signature is None and "nicht zulässig" in c.text
    assert not d.ok and d.code is None and "kein Ergebnis" in d.text
    assert capture.operations() == ["SignDocument"]


def test_signature_service_740_gets_no_crypt(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.sds = standard_sds(
        crafted.base_url, signature=(("7.4.0", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4", "/sig74"),)
    )
    crafted.answer = lambda received: Answer(200, sign_response(cades("b", b"CMS")).replace(b"v7.5", b"v7.4"))
    # make_client validates the request against the official 7.4.0 schema, which has no Crypt.
    client, _ = make_client(crafted.base_url, signature_740=True)
    results = client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS[1:2])
    assert results[0].ok
    received: Received = crafted.received[-1]
    assert received.path == "/sig74"
    assert b"Crypt" not in received.body
    assert received.soap_action == "http://ws.gematik.de/conn/SignatureService/v7.4#SignDocument"


# "ABC-123" and a line break: eight characters, one more than the batch's column holds ("$" matched before it).
@pytest.mark.parametrize("job", ["ab-12", "ABC-123\n", "ABC-1234"])
def test_an_invalid_job_number_is_refused(crafted: CraftedKonnektor, make_client, ctx, job) -> None:
    crafted.answer_always(200, envelope(job_number_response(job)))
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert caught.value.kind == "protocol"


def test_discovery_is_read_again_after_a_connection_error(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer_always(200, envelope(job_number_response()))
    client, _ = make_client(crafted.base_url, timeout=0.5)
    client.get_job_number(ctx)
    crafted.answer_always(200, envelope(job_number_response()), delay=30)
    with pytest.raises(KonnektorError):
        client.get_job_number(ctx)  # a read timeout: the directory stays
    sds_reads = [r for r in crafted.received if r.path == "/connector.sds"]
    assert len(sds_reads) == 1


def cards_response(*cards: tuple[str, str]) -> bytes:
    rows = "".join(
        f"<CARD:Card><CONN:CardHandle>{handle}</CONN:CardHandle><CARDCMN:CardType>{card_type}</CARDCMN:CardType>"
        "<CARDCMN:CtId>CT-1</CARDCMN:CtId><CARDCMN:SlotId>1</CARDCMN:SlotId>"
        "<CARD:InsertTime>2024-01-01T10:00:00Z</CARD:InsertTime></CARD:Card>"
        for handle, card_type in cards
    )
    return envelope(
        '<EVT:GetCardsResponse xmlns:EVT="http://ws.gematik.de/conn/EventService/v7.2"'
        f' xmlns:CONN="{CONN}" xmlns:CARD="http://ws.gematik.de/conn/CardService/v8.1"'
        ' xmlns:CARDCMN="http://ws.gematik.de/conn/CardServiceCommon/v2.0">'
        f"<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status><CARD:Cards>{rows}</CARD:Cards>"
        "</EVT:GetCardsResponse>"
    )


def test_card_types_are_filtered_as_asked(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer_always(200, cards_response(("h1", "HBA"), ("h2", "HBA-qSig"), ("h3", "SMC-B")))
    client, _ = make_client(crafted.base_url)
    assert [c.card_handle for c in client.get_cards(ctx, card_type="HBA")] == ["h1"]
    assert [c.card_handle for c in client.get_cards(ctx, card_type="HBAx")] == ["h1", "h2"]
    assert [c.card_handle for c in client.get_cards(ctx, card_type="SM-B")] == ["h3"]
    assert [c.card_handle for c in client.get_cards(ctx, card_type="")] == ["h1", "h2", "h3"]


def test_a_redirect_is_not_followed(crafted: CraftedKonnektor, make_client, ctx) -> None:
    # A redirect could carry the documents (and Basic credentials) elsewhere: the client does not follow it.
    crafted.answer = lambda received: (
        Answer(307, b"", headers={"Location": f"{crafted.base_url}/elsewhere"})
        if received.path == "/sig75"
        else Answer(200, envelope(job_number_response()))
    )
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError):
        client.get_job_number(ctx)
    assert [r.path for r in crafted.received] == ["/connector.sds", "/sig75"]


def certificate_response(der: bytes) -> bytes:
    return envelope(
        '<CERT:ReadCardCertificateResponse xmlns:CERT="http://ws.gematik.de/conn/CertificateService/v6.0"'
        f' xmlns:CONN="{CONN}" xmlns:CERTCMN="http://ws.gematik.de/conn/CertificateServiceCommon/v2.0">'
        "<CONN:Status><CONN:Result>OK</CONN:Result></CONN:Status><CERTCMN:X509DataInfoList><CERTCMN:X509DataInfo>"
        "<CERTCMN:CertRef>C.QES</CERTCMN:CertRef><CERTCMN:X509Data><CERTCMN:X509IssuerSerial>"
        "<CERTCMN:X509IssuerName>CN=CA</CERTCMN:X509IssuerName><CERTCMN:X509SerialNumber>1</CERTCMN:X509SerialNumber>"
        "</CERTCMN:X509IssuerSerial><CERTCMN:X509SubjectName>CN=Sommer</CERTCMN:X509SubjectName>"
        f"<CERTCMN:X509Certificate>{base64.b64encode(der).decode()}</CERTCMN:X509Certificate>"
        "</CERTCMN:X509Data></CERTCMN:X509DataInfo></CERTCMN:X509DataInfoList></CERT:ReadCardCertificateResponse>"
    )


def test_a_g21_card_has_an_rsa_and_an_ecc_qes_certificate(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer = lambda received: Answer(
        200, certificate_response(b"ECC-CERT" if b">ECC<" in received.body else b"RSA-CERT")
    )
    client, _ = make_client(crafted.base_url)
    assert client.read_qes_certificates(ctx, "HBA-1") == [b"RSA-CERT", b"ECC-CERT"]
    assert client.read_qes_certificate(ctx, "HBA-1") == b"RSA-CERT"


def test_the_clients_own_texts_are_translated_where_the_portal_speaks_english(
    crafted: CraftedKonnektor, make_client, ctx
) -> None:
    from django.utils import translation

    client, _ = make_client(crafted.base_url, timeout=0.5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down, _ = make_client(f"http://127.0.0.1:{port}", timeout=2)
    with translation.override("en"):
        crafted.answer_always(200, envelope(job_number_response("ab-12")))
        with pytest.raises(KonnektorError) as job:
            client.get_job_number(ctx)
        assert job.value.text == "The Konnektor returned an invalid job number."
        crafted.answer_always(200, envelope(job_number_response()), delay=30)
        with pytest.raises(KonnektorError) as slow:
            client.get_job_number(ctx)
        assert slow.value.text == "The Konnektor did not answer within 0.5 seconds."
        with pytest.raises(KonnektorError) as unreachable:
            down.get_cards(ctx)
        assert unreachable.value.text == "Konnektor not reachable: the connection failed or was interrupted."
        crafted.answer_always(200, sign_response())
        (missing,) = client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS[1:2])
        assert missing.text == (
            "Not signed: the Konnektor returned no result for this document (e.g. PIN entry cancelled or process "
            "ended)."
        )
    # An error keeps the text of the language it was raised in.
    assert job.value.text == "The Konnektor returned an invalid job number."
    with translation.override("de"):
        with pytest.raises(KonnektorError) as german:
            down.get_cards(ctx)
        assert (
            german.value.text == "Konnektor nicht erreichbar: die Verbindung ist fehlgeschlagen oder wurde abgebrochen."
        )
        (missing,) = client.sign_documents(ctx, "HBA-1", "ABC-123", ITEMS[1:2])
        assert missing.text.startswith("Nicht signiert: der Konnektor hat für dieses Dokument kein Ergebnis")
