from __future__ import annotations

import base64
import poplib
import socket

import pytest

from tests.tisim.support import ALICE, BOB, PASSWORDS, message, pop3_connect, pop3_login, pop3_user, send
from tisim.cm import CMSimulator

STUFFED = b"Subject: dots\r\n\r\n.first\r\nmiddle\r\n..two\r\n.\r\nlast\r\n"


def _numbers(conn: poplib.POP3) -> dict[int, str]:
    return {int(n): u.decode() for n, u in (line.split() for line in conn.uidl()[1])}


def test_retr_returns_the_stored_bytes_and_sizes_match(any_cm: CMSimulator) -> None:
    any_cm.deliver(BOB, STUFFED)
    conn = pop3_login(any_cm, BOB)
    count, size = conn.stat()
    assert (count, size) == (1, len(STUFFED))
    assert conn.list()[1] == [f"1 {len(STUFFED)}".encode()]
    _, lines, _ = conn.retr(1)  # poplib removes the byte-stuffing again
    assert b"\r\n".join(lines) + b"\r\n" == STUFFED
    conn.quit()


def _raw_multiline(conn: poplib.POP3, command: str) -> bytes:
    """The answer exactly as it came over the wire, terminator included."""
    conn._putcmd(command)
    raw = b""
    while not raw.endswith(b"\r\n.\r\n"):
        line = conn.file.readline()
        assert line, "connection closed before the terminator"
        raw += line
    return raw


def test_byte_stuffing_on_the_wire(cm: CMSimulator) -> None:
    cm.deliver(BOB, STUFFED)
    conn = pop3_login(cm, BOB)
    raw = _raw_multiline(conn, "RETR 1")
    conn.quit()
    status, _, data = raw.partition(b"\r\n")
    assert status == f"+OK {len(STUFFED)} octets".encode()
    assert data == b"Subject: dots\r\n\r\n..first\r\nmiddle\r\n...two\r\n..\r\nlast\r\n.\r\n"


def test_uidl_is_stable_across_sessions_and_restart(make_cm) -> None:
    sim = make_cm()
    send(sim, ALICE, [BOB], message(subject="eins"))
    send(sim, ALICE, [BOB], message(subject="zwei"))
    conn = pop3_login(sim, BOB)
    before = _numbers(conn)
    conn.quit()
    assert len(before) == 2
    for uidl in before.values():
        assert 1 <= len(uidl) <= 70 and all(0x21 <= ord(c) <= 0x7E for c in uidl)
    fingerprint, data_dir = sim.fingerprint, sim.data_dir
    sim.stop()

    # A new simulator process on the same data directory: same maildrop, same UIDLs, same certificate.
    again = make_cm(data_dir=data_dir)
    assert again.fingerprint == fingerprint
    conn = pop3_login(again, BOB)
    assert _numbers(conn) == before
    assert b"Subject: eins" in b"\r\n".join(conn.retr(1)[1])
    conn.quit()


def test_dele_takes_effect_only_at_quit(cm: CMSimulator) -> None:
    uidls = [cm.deliver(BOB, message(subject=f"m{i}")) for i in range(3)]
    conn = pop3_login(cm, BOB)
    conn.dele(2)
    assert conn.stat()[0] == 2
    with pytest.raises(poplib.error_proto, match="already deleted"):
        conn.retr(2)
    assert cm.maildrop_uidls(BOB) == uidls, "nothing is removed before QUIT"
    conn.quit()
    assert cm.maildrop_uidls(BOB) == [uidls[0], uidls[2]]


def test_dropped_connection_deletes_nothing(cm: CMSimulator) -> None:
    uidls = [cm.deliver(BOB, message(subject=f"m{i}")) for i in range(2)]
    conn = pop3_login(cm, BOB)
    conn.dele(1)
    conn.dele(2)
    conn.sock.shutdown(socket.SHUT_RDWR)  # vanish without QUIT
    conn.sock.close()
    assert cm.wait_maildrop_unlocked(BOB), "the server notices the client is gone"
    assert cm.maildrop_uidls(BOB) == uidls


def test_rset_unmarks(cm: CMSimulator) -> None:
    uidls = [cm.deliver(BOB, message(subject=f"m{i}")) for i in range(2)]
    conn = pop3_login(cm, BOB)
    conn.dele(1)
    assert conn.rset().startswith(b"+OK maildrop has 2 messages")
    conn.quit()
    assert cm.maildrop_uidls(BOB) == uidls


def test_top_zero_returns_headers_only(cm: CMSimulator) -> None:
    cm.deliver(BOB, b"Subject: top\r\nX-KIM-Dienstkennung: eAU;Lieferung;V1.0\r\n\r\nline1\r\nline2\r\nline3\r\n")
    conn = pop3_login(cm, BOB)
    assert conn.top(1, 0)[1] == [b"Subject: top", b"X-KIM-Dienstkennung: eAU;Lieferung;V1.0", b""]
    assert conn.top(1, 2)[1][-2:] == [b"line1", b"line2"]
    conn.quit()


def test_snapshot_ignores_mail_arriving_during_the_session(cm: CMSimulator) -> None:
    cm.deliver(BOB, message(subject="alt"))
    conn = pop3_login(cm, BOB)
    cm.deliver(BOB, message(subject="neu"))
    assert conn.stat()[0] == 1
    conn.quit()
    conn = pop3_login(cm, BOB)
    assert conn.stat()[0] == 2
    conn.quit()


def test_second_login_is_in_use(cm: CMSimulator) -> None:
    first = pop3_login(cm, BOB)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        pop3_login(cm, BOB)
    first.quit()
    pop3_login(cm, BOB).quit()  # the lock is gone once QUIT was answered


@pytest.mark.parametrize(
    ("username", "complaint"),
    [
        (f"{BOB}#klinik-b.kim.telematik:995#1#KIM", "at least 5"),
        (f"{BOB}#*#1#*#7", "ClientSystemId"),
        (f"{BOB}#*#1#KIM#7##k", "position 6"),
        (BOB, "no KIM call context"),
    ],
)
def test_malformed_username_is_err(cm: CMSimulator, username: str, complaint: str) -> None:
    conn = pop3_connect(cm)
    with pytest.raises(poplib.error_proto, match=complaint):
        conn.user(username)
    conn.quit()


def test_placeholders_are_accepted(cm: CMSimulator) -> None:
    conn = pop3_connect(cm)
    conn.user(f"{BOB}#*#1#KIM#7#*#Konn_1")
    assert conn.pass_(PASSWORDS[BOB]).startswith(b"+OK")
    conn.quit()


def test_sasl_plain_login(cm: CMSimulator) -> None:
    cm.deliver(BOB, message())
    conn = pop3_connect(cm)
    token = base64.b64encode(f"\0{pop3_user(BOB)}\0{PASSWORDS[BOB]}".encode()).decode()
    assert conn._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK maildrop has 1 messages")
    assert conn.stat()[0] == 1
    conn.quit()


def test_wrong_password_is_err(cm: CMSimulator) -> None:
    conn = pop3_connect(cm)
    conn.user(pop3_user(BOB))
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        conn.pass_("wrong")
    conn.quit()


def test_transaction_commands_need_login(cm: CMSimulator) -> None:
    conn = pop3_connect(cm)
    with pytest.raises(poplib.error_proto, match="AUTHORIZATION"):
        conn.stat()
    conn.quit()


def test_capa_lists_uidl_top_and_user(cm: CMSimulator) -> None:
    conn = pop3_connect(cm)
    assert {"USER", "UIDL", "TOP", "RESP-CODES"} <= set(conn.capa())
    conn.quit()


def test_drop_retr_breaks_the_connection_and_keeps_the_message(any_cm: CMSimulator) -> None:
    body = ("x" * 70 + "\r\n") * 200
    uidl = any_cm.deliver(BOB, message(body=body))
    any_cm.inject_fault(BOB, "drop_retr", after_bytes=300, times=1)

    conn = pop3_login(any_cm, BOB)
    with pytest.raises((poplib.error_proto, OSError)):
        conn.retr(1)
    conn.close()
    assert any_cm.wait_maildrop_unlocked(BOB)
    assert any_cm.maildrop_uidls(BOB) == [uidl]

    # The fault was armed once: the next fetch gets the whole message.
    conn = pop3_login(any_cm, BOB)
    assert conn.retr(1)[1][-200:] == [b"x" * 70] * 200
    conn.quit()


def test_drop_retr_sends_a_partial_answer(cm: CMSimulator) -> None:
    cm.deliver(BOB, message(body=("y" * 70 + "\r\n") * 100))
    cm.inject_fault(BOB, "drop_retr", after_bytes=500, times=2)
    for _ in range(2):
        conn = pop3_login(cm, BOB)
        conn._putcmd("RETR 1")
        received = conn.file.read()  # everything until the server cuts the connection
        conn.close()
        assert cm.wait_maildrop_unlocked(BOB)
        status, _, data = received.partition(b"\r\n")
        assert status.startswith(b"+OK")
        assert len(data) == 500
        assert not data.endswith(b".\r\n")
    conn = pop3_login(cm, BOB)
    conn.retr(1)
    conn.quit()


def test_stop_cuts_open_sessions_without_deleting(cm: CMSimulator) -> None:
    uidl = cm.deliver(BOB, message())
    conn = pop3_login(cm, BOB)
    conn.dele(1)
    cm.stop()
    with pytest.raises((poplib.error_proto, OSError)):
        conn.quit()
    cm.start()
    assert cm.maildrop_uidls(BOB) == [uidl]
    pop3_login(cm, BOB).quit()
