"""Faults on demand at the simulated Konnektor: each answers with its gematik code in the last GERROR Trace
(SOAP fault valid against TelematikError.xsd), and the card's state follows (retry counter, blocked PIN,
pulled card)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from lxml import etree

from tests.fixtures.konnektor_sim import NS, Doc, Soap, responses_by_id
from tisim.konnektor import KonnektorSimulator

Factory = Callable[..., KonnektorSimulator]


def _sign(sim: KonnektorSimulator, n: int = 1, **ctx: str | None) -> int | None:
    [card] = sim.cards
    soap = Soap(sim)
    docs = [Doc(f"d{i}", b"Brief") for i in range(n)]
    return soap.sign_document(card.card_handle, soap.get_job_number(), docs, **ctx).fault_code


@pytest.mark.parametrize(
    ("kind", "params", "code"),
    [
        ("pin-timeout", {}, 4043),
        ("user-cancel", {}, 4049),
        ("card-busy", {}, 4060),
        ("card-busy", {"code": 4093}, 4093),
        ("hba-other-user", {}, 4018),
        ("job-number-reused", {}, 4252),
        ("transport-pin", {}, 4065),
    ],
)
def test_fault_codes(konnektor_sim: KonnektorSimulator, kind: str, params: dict[str, int], code: int) -> None:
    konnektor_sim.arm_fault(kind, **params)
    assert _sign(konnektor_sim) == code
    assert konnektor_sim.signed_requests == []
    if kind != "transport-pin":
        # One-shot: the next batch goes through.
        assert _sign(konnektor_sim) is None


def test_fault_detail_is_a_valid_gerror_with_the_code_in_the_last_trace(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    konnektor_sim.arm_fault("pin-timeout")
    result = soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("d", b"x")])
    assert result.http_status == 500
    assert result.fault_string == "Timeout bei der PIN-Eingabe"
    traces = result.findall("detail/GERROR:Error/GERROR:Trace")
    assert len(traces) == 2  # a vendor trace first, as real Konnektors send
    assert traces[-1].findtext("GERROR:Code", namespaces=NS) == "4043"
    assert traces[-1].findtext("GERROR:Severity", namespaces=NS) == "Warning"


def test_transport_pin_shows_in_pin_status(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    konnektor_sim.arm_fault("transport-pin")
    assert soap.get_pin_status(card.card_handle).text("CARD:PinStatus") == "TRANSPORT_PIN"
    konnektor_sim.clear_faults()
    assert soap.get_pin_status(card.card_handle).text("CARD:PinStatus") == "VERIFIABLE"


def test_wrong_pin_counts_down_and_blocks_after_three(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    for left in (2, 1):
        konnektor_sim.arm_fault("wrong-pin")
        assert _sign(konnektor_sim) == 4085
        status = soap.get_pin_status(card.card_handle)
        assert (status.text("CARD:PinStatus"), status.text("CARD:LeftTries")) == ("VERIFIABLE", str(left))
        assert konnektor_sim.terminal("CT-1").display == ["PIN falsch oder gesperrt!"]
    # A right PIN in between resets the counter, as a card does.
    assert _sign(konnektor_sim) is None
    assert soap.get_pin_status(card.card_handle).text("CARD:LeftTries") == "3"
    konnektor_sim.arm_fault("wrong-pin", times=3)
    assert [_sign(konnektor_sim) for _ in range(3)] == [4085, 4085, 4085]
    status = soap.get_pin_status(card.card_handle)
    assert (status.text("CARD:PinStatus"), status.text("CARD:LeftTries")) == ("BLOCKED", "0")
    assert _sign(konnektor_sim) == 4063
    assert konnektor_sim.signed_requests[-1].request_id == "d0"
    assert len(konnektor_sim.signed_requests) == 1


def test_a_person_typing_a_wrong_pin(konnektor_sim_factory: Factory) -> None:
    from concurrent.futures import ThreadPoolExecutor

    sim = konnektor_sim_factory(auto_pin=None)
    terminal = sim.terminal("CT-1")
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_sign, sim)
        assert terminal.wait_for_prompt(30)
        terminal.enter_pin("000000")
        assert future.result(timeout=60) == 4085
        future = pool.submit(_sign, sim)
        assert terminal.wait_for_prompt(30)
        terminal.cancel()
        assert future.result(timeout=60) == 4049
    assert sim.cards[0].left_tries == 2


def test_card_removed_mid_batch(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    old_handle = card.card_handle
    soap = Soap(konnektor_sim)
    konnektor_sim.arm_fault("card-removed", after=2)
    assert _sign(konnektor_sim, n=5) == 4008
    # All signatures of the aborted job are discarded (TAB_KON_192 #7).
    assert konnektor_sim.signed_requests == []
    # The old handle is gone; the card was put back with a new one.
    assert soap.get_pin_status(old_handle).fault_code == 4101
    assert soap.sign_document(old_handle, soap.get_job_number(), [Doc("x", b"x")]).fault_code == 4101
    [listed] = soap.get_cards().findall("CARD:Cards/CARD:Card")
    assert listed.findtext("CONN:CardHandle", namespaces=NS) == card.card_handle != old_handle
    assert _sign(konnektor_sim) is None


def test_card_removed_and_not_put_back(konnektor_sim: KonnektorSimulator) -> None:
    konnektor_sim.arm_fault("card-removed", reinsert=False)
    assert _sign(konnektor_sim, n=2) == 4008
    assert Soap(konnektor_sim).get_cards().findall("CARD:Cards/CARD:Card") == []


def test_fail_request_gives_one_document_an_error_status(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    konnektor_sim.arm_fault("fail-request", request_id="d1")
    docs = [Doc(f"d{i}", b"Brief") for i in range(3)]
    result = soap.sign_document(card.card_handle, soap.get_job_number(), docs)
    assert result.fault_code is None
    by_id = responses_by_id(result)
    assert by_id["d1"].findtext("CONN:Status/CONN:Result", namespaces=NS) == "Warning"
    assert by_id["d1"].findtext("CONN:Status/GERROR:Error/GERROR:Trace/GERROR:Code", namespaces=NS) == "4123"
    assert by_id["d1"].find("dss:SignatureObject", NS) is None
    for ok in ("d0", "d2"):
        assert by_id[ok].find("dss:SignatureObject/dss:Base64Signature", NS) is not None
    assert [s.request_id for s in konnektor_sim.signed_requests] == ["d0", "d2"]


@pytest.mark.parametrize(
    ("ctx", "code"),
    [
        ({"user_id": None}, 4003),
        ({"mandant": "Fremd"}, 4004),
        ({"client_system": "Fremd"}, 4005),
        ({"workplace": "Unbekannt"}, 4006),
        ({"workplace": ""}, 4021),
        ({"workplace": "Arbeitsplatz-2"}, 4092),  # a known workplace whose terminal is not the card's
    ],
)
def test_sign_document_context_errors(konnektor_sim: KonnektorSimulator, ctx: dict[str, str | None], code: int) -> None:
    konnektor_sim.add_terminal("CT-2", ["Arbeitsplatz-2"])
    assert _sign(konnektor_sim, **ctx) == code
    assert konnektor_sim.terminal("CT-1").prompts == []


def test_blocked_card_added_blocked(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(hba=False)
    card = sim.add_hba("Dr. Gesperrt", "1-99", pin_state="BLOCKED")
    status = Soap(sim).get_pin_status(card.card_handle)
    assert (status.text("CARD:PinStatus"), status.text("CARD:LeftTries")) == ("BLOCKED", "0")
    assert _sign(sim) == 4063


def test_smcb_cannot_make_a_qes(konnektor_sim: KonnektorSimulator) -> None:
    smcb = konnektor_sim.add_smcb("Klinikum Demo", "5-2-123456789")
    soap = Soap(konnektor_sim)
    assert len(soap.get_cards("SM-B").findall("CARD:Cards/CARD:Card")) == 1
    assert soap.sign_document(smcb.card_handle, soap.get_job_number(), [Doc("d", b"x")]).fault_code == 4126
    assert soap.get_pin_status(smcb.card_handle, "PIN.SMC").text("CARD:PinStatus") == "VERIFIABLE"
    assert soap.read_card_certificate(smcb.card_handle, ("C.AUT",)).fault_code is None


def test_faults_over_the_control_endpoint(konnektor_sim: KonnektorSimulator) -> None:
    url = konnektor_sim.base_url + "/tisim/faults"
    assert requests.post(url, json={"kind": "card-busy"}, timeout=10).status_code == 200
    assert requests.get(url, timeout=10).json()["faults"] == [{"kind": "card-busy", "times": 1}]
    assert _sign(konnektor_sim) == 4060
    assert requests.post(url, json={"kind": "nonsense"}, timeout=10).status_code == 400
    requests.post(url, json={"kind": "pin-timeout", "times": 0}, timeout=10)
    assert requests.delete(url, timeout=10).json() == {"faults": []}
    assert _sign(konnektor_sim) is None


def test_unknown_fault_kind_is_refused(konnektor_sim: KonnektorSimulator) -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        konnektor_sim.arm_fault("kaputt")


# --- XML hardening ----------------------------------------------------------------------------------------


def _post(sim: KonnektorSimulator, body: bytes, path: str = "/service/eventservice") -> requests.Response:
    return requests.post(sim.base_url + path, data=body, headers={"Content-Type": "text/xml"}, timeout=10)


def test_entities_and_dtds_are_refused(konnektor_sim: KonnektorSimulator) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b"<x>&lol2;</x></soap:Body></soap:Envelope>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b"<x>&xxe;</x></soap:Body></soap:Envelope>"
    )
    for body in (bomb, external):
        response = _post(konnektor_sim, body)
        assert response.status_code == 500
        assert b"root:" not in response.content
        fault = etree.fromstring(response.content).find("soap:Body/soap:Fault", NS)
        assert fault is not None and fault.findtext("faultcode") == "soap:Client"


def test_an_operation_at_the_wrong_endpoint_is_refused(konnektor_sim: KonnektorSimulator) -> None:
    body = (
        b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        b'<SIG:GetJobNumber xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v7.5"/>'
        b"</soap:Body></soap:Envelope>"
    )
    response = _post(konnektor_sim, body, "/service/eventservice")
    assert response.status_code == 500
    assert b"soap:Client" in response.content
    assert _post(konnektor_sim, body, "/service/nirgendwo").status_code == 404
