"""The simulated VZD: deterministic generation, the CLI, vzd-serve's lifecycle, schema compatibility."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import ldap3
import pytest

from directory import codes
from tisim.vzd import cli
from tisim.vzd.generate import Generator, entry_ldif, generate_file, write_ldif
from tisim.vzd.slapd import SCHEMA_FILE, SlapdServer

from .conftest import REPO, SPEC_DIR

pytestmark = pytest.mark.slapd


def _ldif(count: int, seed: int) -> str:
    from io import StringIO

    out = StringIO()
    write_ldif(out, count, seed=seed)
    return out.getvalue()


def test_generation_is_deterministic_per_seed():
    assert _ldif(300, seed=11) == _ldif(300, seed=11)
    assert _ldif(300, seed=11) != _ldif(300, seed=12)


def test_fixed_demo_entries_are_always_there():
    text = _ldif(5, seed=99)
    assert base64.b64encode("Praxis Dr. Müller".encode()).decode() in text
    assert "mail: praxis.mueller@praxis-mueller.kim.telematik-test" in text
    assert "komLeData: 1.5+,praxis.mueller@praxis-mueller.kim.telematik-test" in text
    assert "mail: kardiologie@klinikum-demo.kim.telematik-test" in text
    assert "mail: aufnahme@klinikum-demo.kim.telematik-test" in text
    # KIM 2.0 in kimData only (with application tags), and a physician with a Facharzttitel
    text = _ldif(7, seed=99)
    assert "kimData: aerztehaus.gross@tisim.kim.telematik-test,2.0,eAU|eEB" in text
    assert "komLeData: 2.0" not in text
    assert "specialization: urn:as:1.2.276.0.76.5.514:141114" in text


def test_generated_entries_are_consistent():
    gen = Generator(3)
    mails: set[str] = set()
    versions: set[str] = set()
    kim_only = 0
    for entry in gen.entries(3000):
        assert len(entry.telematik_id) == 20
        for address, version in entry.mails:
            assert version in ("1.0", "1.5", "1.5+", "2.0")
            assert address not in mails, address  # a KIM address belongs to one entry only
            mails.add(address)
            versions.add(version)
        text = entry_ldif(entry)
        for address, version in entry.mails:
            assert re.search(rf"^kimData: {re.escape(address)},{re.escape(version)}(,[\w|-]+)?$", text, re.M)
            assert (f"komLeData: {version},{address}" in text) == entry.kom_le_data
        kim_only += not entry.kom_le_data and bool(entry.mails)
        # Specialties in the card type's own code systems: SMC-B urn:psc, HBA urn:as — and the portal knows them.
        for value in entry.specializations:
            if entry.kind.personal:
                assert value.startswith("urn:as:"), value
            else:
                assert not value.startswith("urn:as:"), value
            label = codes.specialty_label(value)
            assert label and label != value.rpartition(":")[2], value
        # multi-valued attributes are contiguous (slapadd would keep only the last run otherwise)
        names = [line.split(":", 1)[0] for line in text.splitlines() if line]
        runs = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
        assert len(runs) == len(set(runs)), runs
        assert entry.certs
    assert versions == {"1.0", "1.5", "1.5+", "2.0"}
    assert kim_only > 10  # providers that publish kimData only


def test_cli_generate(tmp_path):
    out = tmp_path / "v.ldif"
    assert cli.main(["vzd-generate", "--entries", "50", "--seed", "4", "--out", str(out)]) == 0
    assert out.read_text().count("\ndn: uid=") == 50


@pytest.mark.parametrize("folder", ["private", "with space"])
def test_slapd_serves_from_a_folder_only_the_caller_may_enter(tmp_path, folder):
    # Like a clone in root's home or in `mktemp -d` (0700), possibly with a space in its path.
    parent = tmp_path / folder
    parent.mkdir()
    parent.chmod(0o700)
    data_dir = parent / "main" / "var" / "vzd"
    data_dir.mkdir(parents=True)
    ldif = data_dir / "vzd.ldif"
    generate_file(ldif, 20, seed=5)
    with SlapdServer(data_dir / "slapd", ldif) as server:
        conn = ldap3.Connection(ldap3.Server(server.url), auto_bind=True)
        conn.search("dc=data,dc=vzd", "(mail=praxis.mueller@praxis-mueller.kim.telematik-test)", attributes=["cn"])
        assert conn.response[0]["attributes"]["cn"] == ["Praxis Dr. Müller"]
        conn.unbind()
    assert oct(parent.stat().st_mode & 0o777) == oct(0o700), "nothing may open the folder up to make slapd work"


def test_vzd_serve_runs_until_sigterm_and_stops_slapd(tmp_path):
    data_dir = tmp_path / "vzd serve"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tisim.vzd.cli",
            "vzd-serve",
            "--data-dir",
            str(data_dir),
            "--entries",
            "200",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline().decode()
        info = json.loads(line)
        assert info == json.loads((data_dir / "vzd.json").read_text())
        assert info["base"] == "dc=data,dc=vzd" and info["entries"] == 200
        assert re.fullmatch(r"ldap://127\.0\.0\.1:\d+", info["url"])
        conn = ldap3.Connection(ldap3.Server(info["url"]), auto_bind=True)
        conn.search("dc=data,dc=vzd", "(mail=praxis.mueller@praxis-mueller.kim.telematik-test)", attributes=["cn"])
        assert conn.response[0]["attributes"]["cn"] == ["Praxis Dr. Müller"]
        conn.unbind()
        slapd_pid = int((data_dir / "slapd.pid").read_text())
        # slapd runs as whoever started the simulator (see tisim/vzd/slapd.py), so it reaches the data dir.
        status = Path(f"/proc/{slapd_pid}/status").read_text()
        uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
        assert uid == os.geteuid()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert not Path(f"/proc/{slapd_pid}").exists()


def test_own_schema_covers_the_spec_schema_and_loads_the_spec_test_entries(tmp_path):
    ours = SCHEMA_FILE.read_text()
    our_names = set(re.findall(r"NAME '([^']+)'", ours))
    assert {"telematikID", "komLeData", "kimData", "professionOID", "specialization", "vzd-komleview"} <= our_names
    spec_schema = SPEC_DIR / "vzd.schema"
    if spec_schema.exists():
        assert set(re.findall(r"NAME '([^']+)'", spec_schema.read_text())) == our_names
    entries = SPEC_DIR / "vzd-test-entries.ldif"
    if entries.exists():
        with SlapdServer(tmp_path / "vzd", entries) as server:
            conn = ldap3.Connection(ldap3.Server(server.url), auto_bind=True)
            conn.search("dc=data,dc=vzd", "(telematikID=9-2KIM-BITMARCK-01)", attributes=["mail"])
            assert len(conn.response[0]["attributes"]["mail"]) == 2
            conn.unbind()
