"""connector.sds: per service the highest supported version and THAT version's endpoint."""

from __future__ import annotations

import pytest

from konnektor import KonnektorError
from konnektor.discovery import parse_sds
from tests.konnektor.support import CraftedKonnektor, envelope, job_number_response, sds, standard_sds

BASE = "http://10.0.0.5:80"
SIG74 = "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4"
SIG75 = "http://ws.gematik.de/conn/SignatureService/WSDL/v7.5"


def test_picks_the_highest_supported_version_and_its_endpoint() -> None:
    directory = parse_sds(standard_sds(BASE), tls=False)
    assert directory.services["SignatureService"] == ("7.5.5", f"{BASE}/sig75")
    assert directory.services["EventService"] == ("7.2.0", f"{BASE}/event")
    assert directory.services["CardService"] == ("8.1.2", f"{BASE}/card")
    assert directory.services["CertificateService"] == ("6.0.1", f"{BASE}/cert")
    assert directory.offered["SignatureService"] == ["7.4.0", "7.5.5", "7.4.2"]
    assert (directory.product_name, directory.product_version, directory.vendor_name) == (
        "Test-Konnektor",
        "5.1.2",
        "Test GmbH",
    )
    assert directory.product_type_version == "4.80.3"
    assert directory.tls_mandatory is False


def test_tls_takes_the_tls_endpoint() -> None:
    directory = parse_sds(standard_sds(BASE), tls=True)
    assert directory.services["SignatureService"] == ("7.5.5", "https://10.0.0.5:80/sig75")


def test_without_a_plain_endpoint_plain_mode_uses_the_tls_one() -> None:
    directory = parse_sds(sds(BASE, {"SignatureService": [("7.4.2", SIG74, "/s")]}, tls=True), tls=False)
    assert directory.services["SignatureService"] == ("7.4.2", "https://10.0.0.5:80/s")


def test_unsupported_versions_are_listed_but_not_chosen() -> None:
    content = sds(
        BASE,
        {
            "SignatureService": [("7.4.2", SIG74, "/s74"), ("8.0.0", "http://ws.gematik.de/x/v8.0", "/s80")],
            "CardService": [("8.2.0", "http://ws.gematik.de/conn/CardService/WSDL/v8.2", "/c")],
            "VSDService": [("5.2.0", "http://ws.gematik.de/conn/vsds/VSDService/WSDL/v5.2", "/v")],
        },
    )
    directory = parse_sds(content, tls=False)
    assert directory.services == {"SignatureService": ("7.4.2", f"{BASE}/s74")}
    assert directory.offered["CardService"] == ["8.2.0"]


def test_a_version_without_version_attribute_is_read_from_its_namespace() -> None:
    # As in a real secunet connector.sds.
    directory = parse_sds(sds(BASE, {"SignatureService": [(None, SIG75, "/s75"), ("7.4.2", SIG74, "/s74")]}), tls=False)
    assert directory.services["SignatureService"] == ("7.5.0", f"{BASE}/s75")


@pytest.mark.parametrize(
    "content",
    [
        b"<not-xml",
        b"<other/>",
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
    ],
)
def test_unacceptable_sds_is_refused(content: bytes) -> None:
    with pytest.raises(KonnektorError) as caught:
        parse_sds(content, tls=False)
    assert caught.value.kind == "protocol"
    assert "connector.sds" in caught.value.text


def test_client_discovers_once_and_calls_the_75_endpoint(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.answer_always(200, envelope(job_number_response("KLM-042")))
    client, _ = make_client(crafted.base_url)
    directory = client.discover()
    assert directory.services["SignatureService"][0] == "7.5.5"
    assert client.get_job_number(ctx) == "KLM-042"
    assert client.get_job_number(ctx) == "KLM-042"
    assert [r.path for r in crafted.received] == ["/connector.sds", "/sig75", "/sig75"]
    assert crafted.received[1].soap_action == "http://ws.gematik.de/conn/SignatureService/v7.5#GetJobNumber"
    assert client.discover() is directory  # cached


def test_a_missing_service_is_explained(crafted: CraftedKonnektor, make_client, ctx) -> None:
    crafted.sds = sds(
        crafted.base_url,
        {"SignatureService": [("7.3.0", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.3", "/s")]},
    )
    client, _ = make_client(crafted.base_url)
    with pytest.raises(KonnektorError) as caught:
        client.get_job_number(ctx)
    assert caught.value.kind == "config"
    assert "SignatureService" in caught.value.text and "7.3.0" in caught.value.text
    assert [r.path for r in crafted.received] == ["/connector.sds"]


def test_with_tls_only_https_endpoints_count() -> None:
    content = sds(BASE, {"SignatureService": [("7.5.5", SIG75, "/s75")]}, tls=False).replace(
        b"https://10.0.0.5:80/s75", b"http://10.0.0.5:80/s75-tls"
    )
    assert parse_sds(content, tls=True).services == {}
    assert parse_sds(content, tls=False).services["SignatureService"] == ("7.5.5", f"{BASE}/s75")
    odd = sds(BASE, {"SignatureService": [("7.5.5", SIG75, "/s75")]})
    odd = odd.replace(b'Location="http://', b'Location="file://').replace(b'Location="https://', b'Location="ftp://')
    assert parse_sds(odd, tls=False).services == {}
