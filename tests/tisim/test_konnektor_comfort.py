"""The Komfortsignatur of the simulated Konnektor over its real sockets (SignatureService 7.5): activation with one
PIN entry at the card terminal, signing without a PIN while the session lasts, the count and time limits, the
real error codes when it is used up, expired, deactivated or held by another user, and the refusal in mode plain.
Requests built by hand; every request and answer is valid against the official schemas (``Soap.call``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures.konnektor_sim import CT_ID, PIN, Doc, Soap, SoapResult, add_smcb, responses_by_id
from tests.tisim.support import REPO
from tisim.konnektor import KonnektorSimulator

Factory = Callable[..., KonnektorSimulator]


def secure_soap(sim: KonnektorSimulator, tmp_path: Path, **ctx: object) -> Soap:
    ca = tmp_path / f"server-ca-{sim.port}.pem"
    ca.write_bytes(sim.server_ca_pem)
    session = requests.Session()
    # Otherwise REQUESTS_CA_BUNDLE from the environment replaces session.verify (requests #3829).
    session.trust_env = False
    session.verify = str(ca)
    session.auth = (sim.basic_user, sim.basic_password)
    return Soap(sim, session, **ctx)


def comfort_sim(factory: Factory, **kwargs: object) -> KonnektorSimulator:
    kwargs.setdefault("mode", "basic")
    return factory(**kwargs)


def fresh_user() -> str:
    return str(uuid.uuid4())


def activate(soap: Soap, sim: KonnektorSimulator, user: str) -> SoapResult:
    return soap.activate_comfort_signature(sim.cards[0].card_handle, user_id=user)


def sign(soap: Soap, sim: KonnektorSimulator, user: str, count: int = 1) -> SoapResult:
    docs = [Doc(f"d{n}", f"Brief {n}".encode()) for n in range(count)]
    return soap.sign_document(sim.cards[0].card_handle, soap.get_job_number(), docs, user_id=user)


def session_info(soap: Soap, sim: KonnektorSimulator, user: str) -> tuple[str, str] | None:
    result = soap.get_signature_mode(sim.cards[0].card_handle, user_id=user)
    assert result.fault_code is None, result.fault_string
    if result.find("SIG:SessionInfo") is None:
        return None
    assert result.text("SIG:SessionInfo/SIG:SignatureMode") == "COMFORT"
    return result.text("SIG:SessionInfo/SIG:CountRemaining"), result.text("SIG:SessionInfo/SIG:TimeRemaining")


def all_ok(result: SoapResult) -> bool:
    assert result.fault_code is None, result.fault_string
    return all(
        r.findtext("CONN:Status/CONN:Result", namespaces={"CONN": "http://ws.gematik.de/conn/ConnectorCommon/v5.0"})
        == "OK"
        for r in responses_by_id(result).values()
    )


def test_activation_asks_for_the_pin_and_then_signs_without_one(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory, auto_pin=None, comfort_max=5)
    soap = secure_soap(sim, tmp_path)
    terminal = sim.terminal(CT_ID)
    user = fresh_user()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(activate, soap, sim, user)
        # A PIN entry like any other: the prompt at the terminal, the physician types PIN.QES.
        assert terminal.wait_for_prompt(30)
        assert terminal.display == ["Komfortsignatur aktivieren HBA", "PIN.QES:"]
        terminal.enter_pin(PIN)
        result = pending.result(timeout=30)
    assert result.fault_code is None, result.fault_string
    assert result.text("SIG:SignatureMode") == "COMFORT"
    assert session_info(soap, sim, user) is not None
    # The card session of this UserId has PIN.QES verified; another UserId's has not.
    handle = sim.cards[0].card_handle
    assert soap.get_pin_status(handle, user_id=user).text("CARD:PinStatus") == "VERIFIED"
    assert soap.get_pin_status(handle, user_id="user-other").text("CARD:PinStatus") == "VERIFIABLE"

    prompts = len(terminal.prompts)
    assert all_ok(sign(soap, sim, user, count=3))
    assert len(terminal.prompts) == prompts  # no PIN asked
    assert not terminal.waiting
    signed = sim.signed_requests
    assert len(signed) == 3 and all(s.comfort and s.user_id == user for s in signed)
    info = session_info(soap, sim, user)
    assert info is not None and info[0] == "2"
    # The control API shows the session (for the person at the simulator).
    state = requests.get(sim.base_url + "/tisim/state", verify=soap.session.verify, timeout=10).json()
    [hba_state] = [c for c in state["card_states"] if c["iccsn"] == sim.cards[0].iccsn]
    assert hba_state["comfort"]["user_id"] == user and hba_state["comfort"]["remaining"] == 2


def test_signature_mode_reports_the_limits(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory, comfort_max=7, comfort_timer=2 * 3600)
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    handle = sim.cards[0].card_handle
    result = soap.get_signature_mode(handle, user_id=user)
    assert result.text("SIG:ComfortSignatureStatus") == "ENABLED"
    assert result.text("SIG:ComfortSignatureMax") == "7"
    assert result.text("SIG:ComfortSignatureTimer") == "PT2H"
    assert result.find("SIG:SessionInfo") is None
    assert activate(soap, sim, user).fault_code is None
    count, left = session_info(soap, sim, user) or ("", "")
    assert count == "7"
    seconds = float(left.removeprefix("PT").removesuffix("S"))
    assert 2 * 3600 - 60 < seconds <= 2 * 3600
    # The session belongs to its UserId: another one sees none.
    assert session_info(soap, sim, fresh_user()) is None


def test_defaults_are_the_spec_limits(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory)
    result = secure_soap(sim, tmp_path).get_signature_mode(sim.cards[0].card_handle)
    assert (result.text("SIG:ComfortSignatureMax"), result.text("SIG:ComfortSignatureTimer")) == ("250", "PT24H")


def test_count_exhausted(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory, comfort_max=3)
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    assert activate(soap, sim, user).fault_code is None
    # More documents than signatures left: refused whole, nothing signed, nothing counted.
    assert sign(soap, sim, user, count=4).fault_code == 4271
    assert sim.signed_requests == []
    assert all_ok(sign(soap, sim, user, count=2))
    assert all_ok(sign(soap, sim, user, count=1))
    # Used up: the session is gone and the next call under this UserId is refused with the real code.
    assert session_info(soap, sim, user) is None
    assert sign(soap, sim, user).fault_code == 4271
    assert len(sim.signed_requests) == 3


def test_time_expired(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory, comfort_timer=0.5)
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    assert activate(soap, sim, user).fault_code is None
    deadline = time.monotonic() + 30
    while session_info(soap, sim, user) is not None:
        assert time.monotonic() < deadline, "the Komfortsignatur did not expire"
        time.sleep(0.05)
    result = sign(soap, sim, user)
    assert result.fault_code == 4271
    assert sim.signed_requests == []


def test_deactivation(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory)
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    handle = sim.cards[0].card_handle
    assert activate(soap, sim, user).fault_code is None
    result = soap.deactivate_comfort_signature(handle)
    assert result.text("CONN:Status/CONN:Result") == "OK"
    assert session_info(soap, sim, user) is None
    assert sign(soap, sim, user).fault_code == 4278
    # Nothing left to deactivate, an unknown handle: warnings, not faults.
    again = soap.deactivate_comfort_signature(handle)
    assert again.text("CONN:Status/CONN:Result") == "Warning"
    assert again.text("CONN:Status/GERROR:Error/GERROR:Trace/GERROR:Code") == "4266"
    unknown = soap.deactivate_comfort_signature("HBA-999-NOPE")
    assert unknown.text("CONN:Status/GERROR:Error/GERROR:Trace/GERROR:Code") == "4265"
    # The same UserId cannot be activated again (a fresh UUID per activation); a new one can.
    assert activate(soap, sim, user).fault_code == 4270
    assert activate(soap, sim, fresh_user()).fault_code is None


def test_pulling_the_card_ends_the_session(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory)
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    assert activate(soap, sim, user).fault_code is None
    sim.remove_card(sim.cards[0], reinsert=True)
    assert session_info(soap, sim, user) is None
    assert sign(soap, sim, user).fault_code == 4278


def test_another_user_meets_the_raised_card(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory)
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    assert activate(soap, sim, user).fault_code is None
    assert sign(soap, sim, "user-other").fault_code == 4018
    assert activate(soap, sim, fresh_user()).fault_code == 4018
    # The session stays the first user's.
    assert all_ok(sign(soap, sim, user))


def test_activation_refusals(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory)
    soap = secure_soap(sim, tmp_path)
    handle = sim.cards[0].card_handle
    # gemILF_PS A_19259: the UserId of an activation is a UUID.
    assert soap.activate_comfort_signature(handle, user_id="user-aerztin").fault_code == 4272
    assert soap.activate_comfort_signature(handle, user_id=None).fault_code == 4003
    smcb = add_smcb(sim)
    assert soap.activate_comfort_signature(smcb.card_handle, user_id=fresh_user()).fault_code == 4274
    assert soap.get_signature_mode(smcb.card_handle).fault_code == 4274
    assert soap.activate_comfort_signature("HBA-0-UNKNOWN", user_id=fresh_user()).fault_code == 4101


def test_wrong_pin_at_activation(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory, auto_pin="000000")
    soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    assert activate(soap, sim, user).fault_code == 4276
    assert session_info(soap, sim, user) is None
    assert sim.cards[0].left_tries == 2
    assert activate(soap, sim, fresh_user()).fault_code == 4276
    # The third wrong entry blocks PIN.QES.
    assert activate(soap, sim, fresh_user()).fault_code == 4275
    assert activate(soap, sim, fresh_user()).fault_code == 4063


def test_pin_timeout_and_cancel_at_activation(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    sim = comfort_sim(konnektor_sim_factory)
    soap = secure_soap(sim, tmp_path)
    sim.arm_fault("pin-timeout")
    assert activate(soap, sim, fresh_user()).fault_code == 4043
    sim.arm_fault("user-cancel")
    assert activate(soap, sim, fresh_user()).fault_code == 4049
    assert sim.cards[0].comfort is None


@pytest.mark.parametrize("setup", ["plain", "switched-off"])
def test_refused_in_plain_mode_and_when_switched_off(
    konnektor_sim_factory: Factory, tmp_path: Path, setup: str
) -> None:
    if setup == "plain":
        sim = konnektor_sim_factory(mode="plain")
        soap = Soap(sim)
    else:
        sim = comfort_sim(konnektor_sim_factory, comfort_signature=False)
        soap = secure_soap(sim, tmp_path)
    user = fresh_user()
    assert activate(soap, sim, user).fault_code == 4263
    mode = soap.get_signature_mode(sim.cards[0].card_handle, user_id=user)
    assert mode.text("SIG:ComfortSignatureStatus") == "DISABLED"
    assert mode.find("SIG:SessionInfo") is None
    # Signing itself still works, with a PIN entry.
    prompts = len(sim.terminal(CT_ID).prompts)
    assert all_ok(sign(soap, sim, user))
    assert len(sim.terminal(CT_ID).prompts) == prompts + 1


def test_konnektor_run_reads_the_comfort_settings(tmp_path: Path) -> None:
    data_dir = tmp_path / "tisim"
    data_dir.mkdir()
    (data_dir / "konnektor-cards.json").write_text(
        json.dumps(
            {
                "cards": [{"type": "HBA", "holder_name": "Dr. Test", "telematik_id": "1-1"}],
                "comfort_signature": {"enabled": True, "max": 12, "timer_seconds": 600},
            }
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", "konnektor-run", "--data-dir", str(data_dir), "--port", "0",
         "--mode", "basic", "--comfort-timer", "90"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert "connector.sds" in banner, proc.stderr.read() if proc.stderr else ""
        runtime = json.loads((data_dir / "konnektor.json").read_text())
        # The file's count, the command line's time.
        assert runtime["comfort_signature"] == {"enabled": True, "max": 12, "timer_seconds": 90.0}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
