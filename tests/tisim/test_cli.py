"""``python -m tisim`` in a real subprocess against a running simulator."""

from __future__ import annotations

import email
import json
import poplib
import signal
import subprocess
import sys
import types
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from tests.tisim.support import ALICE, BOB, CAROL, REPO, pop3_connect, pop3_login, pop3_user
from tisim.__main__ import main
from tisim.cm import CMSimulator
from tisim.cm.messages import DECRYPTION_NOTE


def tisim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tisim", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _delivered(sim: CMSimulator, address: str) -> list[EmailMessage]:
    out = []
    for uidl in sim.maildrop_uidls(address):
        msg = email.message_from_bytes(sim.maildrop_read(address, uidl), policy=default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def test_send_with_umlaut_subject_and_attachment_name(cm: CMSimulator, tmp_path: Path) -> None:
    attachment = tmp_path / "Entlassbrief_Müller_äöü.pdf"
    attachment.write_bytes(b"%PDF-1.4 fake\x00\xff")
    result = tisim(
        "send", "--data-dir", cm.data_dir, "--from", ALICE, "--to", BOB, "--cc", CAROL,
        "--subject", "Grüße zum Befund", "--body", "Sehr geehrte Kollegin,\nanbei der Brief.",
        "--dienstkennung", "Arztbrief;VHitG-Versand;V1.2", "--attach", attachment,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    message_id = result.stdout.strip()
    assert message_id.startswith("<") and message_id.endswith("@praxis-a.kim.telematik>")

    [msg] = _delivered(cm, BOB)
    assert msg["Message-ID"] == message_id
    assert msg["Subject"] == "Grüße zum Befund"
    assert msg["X-KIM-Dienstkennung"] == "Arztbrief;VHitG-Versand;V1.2"
    assert msg["Date"] is not None
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "anbei der Brief." in body.get_content()
    [part] = msg.iter_attachments()
    assert part.get_filename() == "Entlassbrief_Müller_äöü.pdf"
    assert part.get_content() == b"%PDF-1.4 fake\x00\xff"
    # RFC 2231 parameter on the wire, not a raw UTF-8 or RFC 2047 encoded file name.
    raw = cm.maildrop_read(BOB, cm.maildrop_uidls(BOB)[0])
    assert b"filename*=utf-8''Entlassbrief_M%C3%BCller_%C3%A4%C3%B6%C3%BC.pdf" in raw
    assert len(_delivered(cm, CAROL)) == 1


def test_send_eml_sends_the_file_unchanged(cm: CMSimulator, tmp_path: Path) -> None:
    prepared = (
        f"From: {ALICE}\r\nTo: {BOB}\r\nCc: {CAROL}\r\nSubject: vorbereitet\r\n"
        "Message-ID: <prepared-1@praxis-a.kim.telematik>\r\nX-KIM-Dienstkennung: eAU;Lieferung;V1.0\r\n"
        "\r\n.Zeile mit Punkt\r\nEnde\r\n"
    ).encode()
    eml = tmp_path / "prepared.eml"
    eml.write_bytes(prepared)
    result = tisim("send", "--data-dir", cm.data_dir, "--eml", eml)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "<prepared-1@praxis-a.kim.telematik>"
    for address in (BOB, CAROL):
        [uidl] = cm.maildrop_uidls(address)
        delivered = cm.maildrop_read(address, uidl)
        # Unchanged but for the Vermerk the receiving CM appends (which makes an ASCII text UTF-8).
        head, _, body = prepared.partition(b"\r\n\r\n")
        assert all(line in delivered for line in head.split(b"\r\n"))
        assert delivered.endswith(b"\r\n\r\n" + body + DECRYPTION_NOTE.encode())


def test_send_fails_clearly_when_no_recipient_is_reachable(cm: CMSimulator) -> None:
    result = tisim(
        "send", "--data-dir", cm.data_dir, "--from", ALICE, "--to", "x@nowhere.kim.telematik", "--subject", "s"
    )
    assert result.returncode != 0
    assert "451" in result.stderr
    assert result.stdout == ""


def test_send_without_running_simulator(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"accounts": [{"address": ALICE, "password": "pw"}]}))
    result = tisim("send", "--data-dir", tmp_path, "--from", ALICE, "--to", BOB, "--subject", "s")
    assert result.returncode == 1
    assert "cm.json" in result.stderr


def test_send_with_fault_integrity(cm: CMSimulator) -> None:
    result = tisim(
        "send", "--data-dir", cm.data_dir, "--from", ALICE, "--to", BOB, "--subject", "s", "--fault", "integrity"
    )
    assert result.returncode == 0, result.stderr
    [msg] = _delivered(cm, BOB)
    assert msg["X-KIM-IntegrityCheckResult"] == "08"


def test_fault_cli_arms_and_clears_drop_retr(cm: CMSimulator) -> None:
    cm.deliver(BOB, b"Subject: x\r\n\r\n" + b"z" * 2000 + b"\r\n")
    armed = tisim(
        "fault", "drop-retr", "--data-dir", cm.data_dir, "--address", BOB, "--after-bytes", "10", "--times", "0"
    )
    assert armed.returncode == 0, armed.stderr
    for _ in range(2):  # --times 0: until cleared
        conn = pop3_login(cm, BOB)
        with pytest.raises((poplib.error_proto, OSError)):
            conn.retr(1)
        conn.close()
        assert cm.wait_maildrop_unlocked(BOB)
    assert tisim("fault", "clear", "--data-dir", cm.data_dir).returncode == 0
    assert json.loads(tisim("fault", "list", "--data-dir", cm.data_dir).stdout) == {}
    conn = pop3_login(cm, BOB)
    assert conn.retr(1)[1][-1] == b"z" * 2000
    conn.quit()


def test_run_serves_writes_cm_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(
        json.dumps(
            {"host": "127.0.0.1", "smtp_port": 0, "pop3_port": 0, "tls": True, "data_dir": "data",
             "accounts": [{"address": BOB, "password": "bob-pw"}]}
        )
    )  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", "run", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        summary = proc.stdout.readline()  # printed once both servers listen
        assert summary.startswith("tisim CM: SMTP 127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        runtime = json.loads((tmp_path / "data" / "cm.json").read_text())
        assert runtime["tls"] is True
        assert len(runtime["fingerprint_sha256"]) == 64 and runtime["fingerprint_sha256"] in summary
        assert (tmp_path / "data" / "tls" / "cert.pem").exists()

        # Connect like a client that only knows cm.json.
        sim_view = types.SimpleNamespace(
            tls=True, pop3_port=runtime["pop3_port"], fingerprint=runtime["fingerprint_sha256"]
        )
        conn = pop3_connect(sim_view)  # type: ignore[arg-type]
        conn.user(pop3_user(BOB))
        assert conn.pass_("bob-pw").startswith(b"+OK maildrop has 0 messages")
        conn.quit()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    assert not (tmp_path / "data" / "cm.json").exists()


def test_run_creates_a_missing_config(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tisim", "run", "--data-dir", str(tmp_path), "--smtp-port", "0", "--pop3-port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "0 accounts" in proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    created = json.loads((tmp_path / "config.json").read_text())
    assert created["accounts"] == []
    assert (created["smtp_port"], created["pop3_port"], created["tls"]) == (8465, 8995, True)


def test_vzd_commands_are_delegated(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("tisim.vzd.cli")
    fake.main = lambda argv: seen.append(list(argv)) or 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tisim.vzd.cli", fake)
    assert main(["vzd-run", "--port", "0"]) == 0
    assert seen == [["vzd-run", "--port", "0"]]


def test_missing_vzd_module_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "tisim.vzd.cli", None)  # makes the import fail as if absent
    assert main(["vzd-run"]) == 2
    assert "tisim.vzd.cli" in capsys.readouterr().err
