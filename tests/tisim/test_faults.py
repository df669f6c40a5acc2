"""The simulated CM's per-message RETR faults and RFC 2449 login answers, seen by a plain poplib client."""

from __future__ import annotations

import json
import poplib
import socket
import subprocess
import sys

import pytest

from tests.tisim.support import BOB, PASSWORDS, REPO, message, pop3_connect, pop3_login, pop3_user, send
from tisim.cm import CMSimulator


def _three(cm: CMSimulator) -> list[str]:
    for i in range(3):
        send(cm, "alice@praxis-a.kim.telematik", [BOB], message(subject=f"Fall{i}", body="Zeile\r\n" * 300))
    return cm.maildrop_uidls(BOB)


def test_err_answers_with_the_code_and_the_session_goes_on(cm: CMSimulator) -> None:
    uidls = _three(cm)
    cm.faults.add_retr(BOB, uidls[1], mode="err", code="SYS/TEMP", times=None)
    conn = pop3_login(cm, BOB)
    with pytest.raises(poplib.error_proto, match=r"-ERR \[SYS/TEMP\]"):
        conn.retr(2)
    assert b"Subject: Fall2" in b"\r\n".join(conn.retr(3)[1])
    with pytest.raises(poplib.error_proto):
        conn.retr(2)  # every time, until cleared
    conn.quit()


def test_short_ends_early_with_the_dot(cm: CMSimulator) -> None:
    uidls = _three(cm)
    cm.faults.add_retr(BOB, uidls[0], mode="short", after_bytes=120, times=1)
    conn = pop3_login(cm, BOB)
    listed = int(conn.list(1).split()[2])
    body = b"\r\n".join(conn.retr(1)[1])
    assert len(body) < 130 < listed
    assert len(b"\r\n".join(conn.retr(1)[1])) + 2 == listed, "times=1: the next RETR is whole"
    conn.quit()


def test_stall_sends_nothing_more_until_the_client_gives_up(cm: CMSimulator) -> None:
    uidls = _three(cm)
    cm.faults.add_retr(BOB, uidls[2], mode="stall", after_bytes=200, times=1)
    conn = pop3_login(cm, BOB)
    conn.sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        conn.retr(3)
    conn.sock.close()
    conn.file.close()
    # The stalled session lets go of the maildrop once the client is gone.
    assert cm.context.store.wait_unlocked(BOB, timeout=10)
    assert cm.maildrop_uidls(BOB) == uidls


def test_drop_cuts_the_connection_of_that_message_only(cm: CMSimulator) -> None:
    uidls = _three(cm)
    cm.faults.add_retr(BOB, uidls[0], mode="drop", after_bytes=50, times=None)
    conn = pop3_login(cm, BOB)
    with pytest.raises((poplib.error_proto, OSError)):
        conn.retr(1)
    assert cm.context.store.wait_unlocked(BOB, timeout=10)
    conn = pop3_login(cm, BOB)
    assert b"Subject: Fall1" in b"\r\n".join(conn.retr(2)[1])
    conn.quit()


@pytest.mark.parametrize("code", ["AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM"])
def test_login_is_answered_with_each_rfc2449_code_once(cm: CMSimulator, code: str) -> None:
    cm.faults.add_login(BOB, code=code, times=1)
    conn = pop3_connect(cm)
    conn.user(pop3_user(BOB))
    with pytest.raises(poplib.error_proto, match=rf"^b'-ERR \[{code}\] "):
        conn.pass_(PASSWORDS[BOB])
    conn.quit()
    pop3_login(cm, BOB).quit()


def _tisim(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tisim", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_cli_arms_a_retr_fault_for_the_kth_message_and_a_login_code(cm: CMSimulator) -> None:
    uidls = _three(cm)
    armed = _tisim("fault", "retr", "--data-dir", cm.data_dir, "--address", BOB, "--message", 2, "--mode", "stall")
    assert armed.returncode == 0, armed.stderr
    assert armed.stdout.strip() == uidls[1], "resolved to the UIDL, so it stays with that message"
    login = _tisim("fault", "login", "--data-dir", cm.data_dir, "--address", BOB, "--code", "IN-USE")
    assert login.returncode == 0, login.stderr
    listed = json.loads(_tisim("fault", "list", "--data-dir", cm.data_dir).stdout)
    assert listed["retr"][BOB][uidls[1]]["mode"] == "stall"
    assert listed["login"][BOB] == {"code": "IN-USE", "times": 1}

    bad = _tisim("fault", "retr", "--data-dir", cm.data_dir, "--address", BOB, "--message", 9)
    assert bad.returncode == 1 and "holds 3 messages" in bad.stderr
    assert _tisim("fault", "clear", "--data-dir", cm.data_dir).returncode == 0
    assert json.loads(_tisim("fault", "list", "--data-dir", cm.data_dir).stdout) == {}
