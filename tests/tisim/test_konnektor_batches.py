"""Batches at the simulated Konnektor: one PIN entry for 250 documents, sub-batches that ask again,
StopSignature while the terminal waits, the limits of a call and job numbers that may not come back."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.konnektor_sim import NS, PIN, Doc, Soap, SoapResult, responses_by_id, verify_cades
from tisim.konnektor import KonnektorSimulator

Factory = Callable[..., KonnektorSimulator]


def _docs(n: int, prefix: str = "brief") -> list[Doc]:
    return [Doc(f"{prefix}-{i}", f"Brief Nummer {i}\n".encode(), short_text=f"Brief {i}") for i in range(n)]


def _sign_in_background(
    sim: KonnektorSimulator, docs: list[Doc], job: str
) -> tuple[ThreadPoolExecutor, Future[SoapResult]]:
    pool = ThreadPoolExecutor(max_workers=1)
    [card] = sim.cards
    return pool, pool.submit(Soap(sim).sign_document, card.card_handle, job, docs)


def test_250_documents_with_one_pin_entry_all_verifiable(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    docs = _docs(250)
    job = soap.get_job_number()
    result = soap.sign_document(card.card_handle, job, docs)
    assert result.fault_code is None, result.fault_string
    by_id = responses_by_id(result)
    assert list(by_id) == [d.request_id for d in docs]  # in request order
    for doc in docs:
        b64 = by_id[doc.request_id].findtext("dss:SignatureObject/dss:Base64Signature", namespaces=NS)
        verify_cades(base64.b64decode(b64 or ""), doc.content, card.certificate_der)
    assert len(konnektor_sim.terminal("CT-1").prompts) == 1
    assert {s.sub_batch for s in konnektor_sim.signed_requests} == {1}


def test_a_person_types_the_pin_while_sign_document_waits(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    terminal = sim.terminal("CT-1")
    job = Soap(sim).get_job_number()
    pool, future = _sign_in_background(sim, _docs(3), job)
    with pool:
        assert terminal.wait_for_prompt(30)
        assert terminal.waiting
        assert terminal.display == [f"#{job}", "Eingabe Signatur-PIN HBA", "PIN.QES:"]
        # The terminal's control call is served while SignDocument blocks on another connection.
        state = requests.get(sim.base_url + "/tisim/terminals/CT-1", timeout=10).json()
        assert state["waiting"] and state["job_number"] == job
        terminal.enter_pin(PIN)
        result = future.result(timeout=60)
    assert result.fault_code is None
    assert all(r.findtext("CONN:Status/CONN:Result", namespaces=NS) == "OK" for r in responses_by_id(result).values())
    assert terminal.display == ["PIN erfolgreich verifiziert!"]
    assert not terminal.waiting


def test_sub_batches_ask_for_the_pin_again(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None, signatures_per_pin=4)
    terminal = sim.terminal("CT-1")
    job = Soap(sim).get_job_number()
    pool, future = _sign_in_background(sim, _docs(6), job)
    with pool:
        for _ in range(2):
            assert terminal.wait_for_prompt(30)
            assert terminal.display[0] == f"#{job}"
            terminal.enter_pin(PIN)
        result = future.result(timeout=60)
    assert len(terminal.prompts) == 2
    assert [s.sub_batch for s in sim.signed_requests] == [1, 1, 1, 1, 2, 2]
    assert all(r.findtext("CONN:Status/CONN:Result", namespaces=NS) == "OK" for r in responses_by_id(result).values())


def test_pin_timeout_in_the_second_sub_batch_returns_the_first(konnektor_sim_factory: Factory) -> None:
    # TAB_KON_192: a later sub-batch that gets no PIN ends the job; the signatures made so far come back.
    sim = konnektor_sim_factory(auto_pin=None, signatures_per_pin=2)
    terminal = sim.terminal("CT-1")
    job = Soap(sim).get_job_number()
    pool, future = _sign_in_background(sim, _docs(4), job)
    with pool:
        assert terminal.wait_for_prompt(30)
        sim.arm_fault("pin-timeout")  # strikes at the next prompt
        terminal.enter_pin(PIN)
        result = future.result(timeout=60)
    assert result.fault_code is None
    by_id = responses_by_id(result)
    assert [by_id[f"brief-{i}"].findtext("CONN:Status/CONN:Result", namespaces=NS) for i in range(4)] == [
        "OK",
        "OK",
        "Warning",
        "Warning",
    ]
    codes = [
        by_id[f"brief-{i}"].findtext("CONN:Status/GERROR:Error/GERROR:Trace/GERROR:Code", namespaces=NS) for i in (2, 3)
    ]
    assert codes == ["4043", "4043"]
    assert by_id["brief-2"].find("dss:SignatureObject", NS) is None


def test_stop_signature_while_the_terminal_waits(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    terminal = sim.terminal("CT-1")
    soap = Soap(sim)
    job = soap.get_job_number()
    pool, future = _sign_in_background(sim, _docs(5), job)
    with pool:
        assert terminal.wait_for_prompt(30)
        stopped = soap.stop_signature(job)
        assert stopped.fault_code is None
        assert stopped.text("CONN:Status/CONN:Result") == "OK"
        result = future.result(timeout=60)
    # Ends without a fault; nothing was signed and every document says why.
    assert result.fault_code is None
    for response in responses_by_id(result).values():
        assert response.findtext("CONN:Status/CONN:Result", namespaces=NS) == "Warning"
        assert response.findtext("CONN:Status/GERROR:Error/GERROR:Trace/GERROR:Code", namespaces=NS) == "4049"
        assert response.find("dss:SignatureObject", NS) is None
    assert sim.signed_requests == []
    assert not terminal.waiting
    # The job is over: stopping it again is harmless, an unknown job number is an error.
    assert soap.stop_signature(job).fault_code is None
    assert soap.stop_signature("ZZZ-999").fault_code == 4243


def test_a_second_job_on_a_busy_card_is_refused(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    terminal = sim.terminal("CT-1")
    soap = Soap(sim)
    [card] = sim.cards
    job = soap.get_job_number()
    pool, future = _sign_in_background(sim, _docs(1), job)
    with pool:
        assert terminal.wait_for_prompt(30)
        assert soap.sign_document(card.card_handle, soap.get_job_number(), _docs(1, "x")).fault_code == 4060
        terminal.enter_pin(PIN)
        assert future.result(timeout=60).fault_code is None


def test_job_number_may_not_be_reused(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    job = soap.get_job_number()
    assert soap.sign_document(card.card_handle, job, _docs(1)).fault_code is None
    assert soap.sign_document(card.card_handle, job, _docs(1)).fault_code == 4252
    # A number the client made up itself is fine once (A_13525), then it is used too.
    assert soap.sign_document(card.card_handle, "QQQ-123", _docs(1)).fault_code is None
    assert soap.sign_document(card.card_handle, "QQQ-123", _docs(1)).fault_code == 4252


def test_limits_of_a_call(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(max_requests_per_call=5, max_document_bytes=1000, max_call_bytes=2500)
    [card] = sim.cards
    soap = Soap(sim)
    assert soap.sign_document(card.card_handle, soap.get_job_number(), _docs(6)).fault_code == 4000
    assert soap.sign_document(card.card_handle, soap.get_job_number(), _docs(5)).fault_code is None
    big = [Doc("gross", b"x" * 1001)]
    assert soap.sign_document(card.card_handle, soap.get_job_number(), big).fault_code == 4283
    total = [Doc(f"d{i}", b"x" * 900) for i in range(3)]
    assert soap.sign_document(card.card_handle, soap.get_job_number(), total).fault_code == 4283
    # Nothing was asked at the terminal for a refused call.
    assert len(sim.terminal("CT-1").prompts) == 1


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (Doc("bin", b"\x00\x01", mime_type="application/octet-stream"), 4110),
        (Doc("pdf", b"kein PDF", mime_type="application/pdf", pades=True), 4110),
        (Doc("lang", b"Text", short_text="x" * 31), 4000),
        (Doc("zeichen", b"Text", short_text="Brief <b>"), 4000),
    ],
)
def test_document_checks(konnektor_sim: KonnektorSimulator, doc: Doc, code: int) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    assert soap.sign_document(card.card_handle, soap.get_job_number(), [doc]).fault_code == code


def test_duplicate_request_ids_are_refused(konnektor_sim: KonnektorSimulator) -> None:
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    docs = [Doc("same", b"a"), Doc("same", b"b")]
    assert soap.sign_document(card.card_handle, soap.get_job_number(), docs).fault_code == 4000


def test_concurrent_calls_are_served(konnektor_sim: KonnektorSimulator) -> None:
    barrier = threading.Barrier(8)

    def one() -> str:
        barrier.wait(10)
        return Soap(konnektor_sim).get_job_number()

    with ThreadPoolExecutor(max_workers=8) as pool:
        numbers = list(pool.map(lambda _: one(), range(8)))
    assert len(set(numbers)) == 8
