"""``python -m tisim konnektor-run`` and ``python -m tisim terminal`` in real subprocesses."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures.konnektor_sim import NS, PIN, Doc, Soap, responses_by_id
from tests.tisim.support import REPO
from tisim.konnektor import KonnektorSimulator

Factory = Callable[..., KonnektorSimulator]


def tisim(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tisim", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_terminal_types_the_pin_for_a_waiting_sign_document(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    soap = Soap(sim)
    [card] = sim.cards
    job = soap.get_job_number()
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The terminal command is started first: it waits for the PIN request like a person at the pad.
        typed = pool.submit(tisim, "terminal", "--pin", PIN, "--data-dir", sim.data_dir, "--ct", "CT-1")
        result = soap.sign_document(card.card_handle, job, [Doc("brief-1", b"Brief")])
        done = typed.result(timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"#{job}",
        "Eingabe Signatur-PIN HBA",
        "PIN.QES:",
        "PIN.QES: ******",
        "PIN erfolgreich verifiziert!",
    ]
    assert result.fault_code is None
    assert responses_by_id(result)["brief-1"].findtext("CONN:Status/CONN:Result", namespaces=NS) == "OK"


def test_terminal_cancel_and_wrong_pin_over_https(konnektor_sim_factory: Factory, tmp_path: Path) -> None:
    # Mode "basic": the terminal command trusts the server CA named in konnektor.json and needs no password.
    sim = konnektor_sim_factory(auto_pin=None, mode="basic", basic_password="pw-basic-1")
    ca = tmp_path / "server-ca.pem"
    ca.write_bytes(sim.server_ca_pem)
    session = requests.Session()
    session.trust_env = False
    session.verify, session.auth = str(ca), ("portal", "pw-basic-1")
    soap = Soap(sim, session)
    [card] = sim.cards

    def sign() -> int | None:
        return soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("b", b"Brief")]).fault_code

    with ThreadPoolExecutor(max_workers=1) as pool:
        typed = pool.submit(tisim, "terminal", "--cancel", "--data-dir", sim.data_dir)
        assert sign() == 4049
        cancelled = typed.result(timeout=60)
        assert cancelled.returncode == 0, cancelled.stderr
        typed = pool.submit(tisim, "terminal", "--pin", "000000", "--data-dir", sim.data_dir)
        assert sign() == 4085
        wrong = typed.result(timeout=60)
    assert wrong.returncode == 0, wrong.stderr
    assert wrong.stdout.splitlines()[-1] == "PIN falsch oder gesperrt!"
    assert card.left_tries == 2


def test_terminal_without_a_running_simulator(tmp_path: Path) -> None:
    result = tisim("terminal", "--pin", PIN, "--data-dir", tmp_path)
    assert result.returncode == 1
    assert "no running simulated Konnektor" in result.stderr


def test_terminal_gives_up_when_nobody_asks(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    result = tisim("terminal", "--pin", PIN, "--data-dir", sim.data_dir, "--wait", "0.2")
    assert result.returncode == 1
    assert "no PIN request" in result.stderr


@pytest.fixture
def konnektor_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    data_dir = tmp_path / "tisim"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", "konnektor-run", "--data-dir", str(data_dir), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, data_dir
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_konnektor_run_with_demo_cards_and_the_terminal(konnektor_run: tuple[subprocess.Popen[str], Path]) -> None:
    proc, data_dir = konnektor_run
    assert proc.stdout is not None
    banner = proc.stdout.readline()  # printed once the server listens
    assert "connector.sds" in banner, proc.stderr.read() if proc.stderr else ""
    runtime = json.loads((data_dir / "konnektor.json").read_text())
    cards = json.loads((data_dir / "konnektor-cards.json").read_text())
    assert [c["holder_name"] for c in cards["cards"]] == ["Dr. med. Anna Sommer", "Klinikum Demo"]

    soap = Soap(runtime["base_url"])
    [hba] = soap.get_cards("HBA").findall("CARD:Cards/CARD:Card")
    assert hba.findtext("CARD:CardHolderName", namespaces=NS) == "Dr. med. Anna Sommer"
    [smcb] = soap.get_cards("SM-B").findall("CARD:Cards/CARD:Card")
    assert smcb.findtext("CARD:CardHolderName", namespaces=NS) == "Klinikum Demo"

    handle = hba.findtext("CONN:CardHandle", namespaces=NS) or ""
    job = soap.get_job_number()
    with ThreadPoolExecutor(max_workers=1) as pool:
        typed = pool.submit(tisim, "terminal", "--pin", PIN, "--data-dir", data_dir)
        result = soap.sign_document(handle, job, [Doc("demo-1", b"Demo-Brief")])
        done = typed.result(timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"#{job}"
    assert result.fault_code is None

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not (data_dir / "konnektor.json").exists()


def test_terminal_page_shows_the_display_and_takes_the_pin(konnektor_sim_factory: Factory) -> None:
    sim = konnektor_sim_factory(auto_pin=None)
    soap = Soap(sim)
    [card] = sim.cards
    page = requests.get(sim.base_url + "/tisim/terminal", timeout=10)
    assert page.status_code == 200
    assert "Kartenterminal bereit" in page.text and "<form" not in page.text
    job = soap.get_job_number()
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(soap.sign_document, card.card_handle, job, [Doc("b", b"Brief")])
        assert sim.terminal("CT-1").wait_for_prompt(30)
        page = requests.get(sim.base_url + "/tisim/terminal", timeout=10)
        assert f"#{job}" in page.text and "name=pin" in page.text
        assert 'http-equiv="refresh"' not in page.text  # typing is not interrupted by a reload
        typed = requests.post(sim.base_url + "/tisim/terminal/CT-1/pin", data={"pin": PIN}, timeout=10)
        assert typed.status_code == 200 and typed.url.endswith("/tisim/terminal")  # redirected back
        assert "PIN erfolgreich verifiziert!" in typed.text
        assert future.result(timeout=60).fault_code is None


def test_konnektor_fault_command(konnektor_sim: KonnektorSimulator) -> None:
    armed = tisim(
        "konnektor-fault", "--kind", "card-busy", "--param", "code=4093", "--data-dir", konnektor_sim.data_dir
    )
    assert armed.returncode == 0, armed.stderr
    assert json.loads(armed.stdout) == [{"kind": "card-busy", "times": 1, "code": 4093}]
    [card] = konnektor_sim.cards
    soap = Soap(konnektor_sim)
    assert soap.sign_document(card.card_handle, soap.get_job_number(), [Doc("d", b"x")]).fault_code == 4093
    tisim("konnektor-fault", "--kind", "transport-pin", "--data-dir", konnektor_sim.data_dir)
    assert konnektor_sim.faults == [{"kind": "transport-pin", "times": None}]
    cleared = tisim("konnektor-fault", "--clear", "--data-dir", konnektor_sim.data_dir)
    assert cleared.returncode == 0 and json.loads(cleared.stdout) == []
    bad = tisim("konnektor-fault", "--kind", "wrong-pin", "--param", "kaputt", "--data-dir", konnektor_sim.data_dir)
    assert bad.returncode == 1 and "KEY=VALUE" in bad.stderr


def test_cli_constants_agree_with_the_simulator() -> None:
    from tisim.konnektor import cli, simulator

    assert cli.FAULT_KINDS == simulator.FAULT_KINDS
    assert cli.MODES == simulator.MODES
    assert cli.RUNTIME_FILE == simulator.RUNTIME_FILE
