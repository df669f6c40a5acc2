from __future__ import annotations

import datetime as dt
import poplib
import smtplib
import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from tests.tisim.support import ALICE, BOB, PASSWORDS, message, pop3_connect, pop3_user, smtp_connect, smtp_user
from tisim.cm import CMSimulator
from tisim.tls import (
    ClientCertificate,
    FingerprintMismatch,
    check_pinned,
    ensure_certificate,
    ensure_client_ca,
    fingerprint_sha256,
    issue_client_certificate,
    normalize_fingerprint,
    pinning_client_context,
)


def test_certificate_is_made_once_and_reused(tmp_path: Path) -> None:
    first = ensure_certificate(tmp_path / "tls")
    again = ensure_certificate(tmp_path / "tls")
    assert again.fingerprint == first.fingerprint
    assert len(first.fingerprint) == 64 and first.fingerprint == first.fingerprint.lower()
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600


def test_fingerprint_of_pem_and_der_agree(tmp_path: Path) -> None:
    cert = ensure_certificate(tmp_path)
    pem = cert.cert_path.read_text()
    der = ssl.PEM_cert_to_DER_cert(pem)
    assert fingerprint_sha256(pem) == fingerprint_sha256(pem.encode()) == fingerprint_sha256(der) == cert.fingerprint
    assert normalize_fingerprint(":".join(cert.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()) == (
        cert.fingerprint
    )


def test_check_pinned_rejects_another_certificate(cm: CMSimulator) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", cm.smtp_port, context=pinning_client_context(), timeout=30) as conn:
        assert isinstance(conn.sock, ssl.SSLSocket)
        check_pinned(conn.sock, cm.fingerprint)
        with pytest.raises(FingerprintMismatch):
            check_pinned(conn.sock, "00" * 32)


# --- STARTTLS / STLS and client certificates ------------------------------------------------------


def _pinning_context(client: ClientCertificate | None = None, tmp_path: Path | None = None) -> ssl.SSLContext:
    ctx = pinning_client_context()
    if client is not None:
        assert tmp_path is not None
        pem = tmp_path / "client.pem"
        pem.write_text(client.cert_pem + client.key_pem)
        ctx.load_cert_chain(pem)
    return ctx


def test_starttls_cm_offers_starttls_and_refuses_auth_before_it(make_cm) -> None:
    cm = make_cm(starttls=True)
    with smtplib.SMTP("127.0.0.1", cm.smtp_port, timeout=30) as conn:
        conn.ehlo("test-client")
        assert conn.has_extn("starttls")
        assert not conn.has_extn("auth"), "no AUTH offered in plain text"
        code, _ = conn.docmd("AUTH", "PLAIN AGFsaWNlAHB3")
        assert code == 530
        assert conn.starttls(context=pinning_client_context())[0] == 220
        check_pinned(conn.sock, cm.fingerprint)
        conn.ehlo("test-client")
        assert not conn.has_extn("starttls")
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
        assert conn.sendmail(ALICE, [BOB], message()) == {}
    assert len(cm.maildrop_uidls(BOB)) == 1


def test_starttls_cm_offers_stls_and_refuses_login_before_it(make_cm) -> None:
    cm = make_cm(starttls=True)
    cm.deliver(BOB, message())
    conn = poplib.POP3("127.0.0.1", cm.pop3_port, timeout=30)
    try:
        before = conn.capa()
        assert "STLS" in before and "USER" not in before
        with pytest.raises(poplib.error_proto, match="STLS first"):
            conn.user(pop3_user(BOB))
        conn.stls(context=pinning_client_context())
        check_pinned(conn.sock, cm.fingerprint)
        after = conn.capa()
        assert "STLS" not in after and "USER" in after
        with pytest.raises(poplib.error_proto):
            conn._shortcmd("STLS")  # not twice
        conn.user(pop3_user(BOB))
        conn.pass_(PASSWORDS[BOB])
        assert conn.stat()[0] == 1
        conn.quit()
    finally:
        conn.close()
    # poplib's stls() asks CAPA once more itself.
    verbs = [verb for protocol, verb in cm.commands_seen if protocol == "pop3"]
    assert verbs[:5] == ["CAPA", "USER", "CAPA", "STLS", "CAPA"]


def test_implicit_and_plain_cms_do_not_offer_stls(any_cm: CMSimulator) -> None:
    conn = pop3_connect(any_cm)
    try:
        assert "STLS" not in conn.capa()
        with pytest.raises(poplib.error_proto, match="not valid"):
            conn._shortcmd("STLS")
    finally:
        conn.close()
    smtp = smtp_connect(any_cm)
    with smtp:
        assert not smtp.has_extn("starttls")


def test_stls_pipelined_plain_text_is_not_taken_as_sent_under_tls(make_cm) -> None:
    # RFC 2595 §4: a command injected behind STLS before the handshake must be thrown away.
    cm = make_cm(starttls=True)
    with socket.create_connection(("127.0.0.1", cm.pop3_port), timeout=30) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        raw.sendall(b"STLS\r\nUSER injected\r\n")
        assert reader.readline().startswith(b"+OK Begin TLS")
        with pinning_client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"NOOP\r\n")
            assert tls.recv(100).startswith(b"+OK")
    assert ("pop3", "USER") not in cm.commands_seen


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
def test_client_certificate_of_the_simulators_ca_is_accepted(make_cm, tmp_path: Path, starttls: bool) -> None:
    cm = make_cm(starttls=starttls, require_client_cert=True)
    ctx = _pinning_context(cm.issue_client_certificate("kim-portal"), tmp_path)
    if starttls:
        conn: smtplib.SMTP = smtplib.SMTP("127.0.0.1", cm.smtp_port, timeout=30)
        conn.starttls(context=ctx)
    else:
        conn = smtplib.SMTP_SSL("127.0.0.1", cm.smtp_port, context=ctx, timeout=30)
    with conn:
        conn.login(smtp_user(ALICE), PASSWORDS[ALICE])
    pop3 = poplib.POP3_SSL("127.0.0.1", cm.pop3_port, context=ctx, timeout=30) if not starttls else None
    if pop3 is None:
        pop3 = poplib.POP3("127.0.0.1", cm.pop3_port, timeout=30)
        pop3.stls(context=ctx)
    pop3.user(pop3_user(BOB))
    pop3.pass_(PASSWORDS[BOB])
    pop3.quit()


def _assert_refused(cm: CMSimulator, ctx: ssl.SSLContext) -> None:
    # TLS 1.3: the server judges the client certificate after the client's handshake is done, so the
    # refusal shows at the first read (the greeting of an implicit-TLS port). asyncio's server side
    # drops the TLS alert when its handshake fails, so the client sees the connection end instead.
    with pytest.raises((ssl.SSLError, poplib.error_proto, ConnectionResetError)) as exc:
        poplib.POP3_SSL("127.0.0.1", cm.pop3_port, context=ctx, timeout=30)
    if isinstance(exc.value, poplib.error_proto):
        assert exc.value.args[0] == "-ERR EOF", "no greeting may be sent over a refused handshake"


def test_missing_wrong_or_expired_client_certificates_are_refused(make_cm, tmp_path: Path) -> None:
    cm = make_cm(require_client_cert=True)
    _assert_refused(cm, pinning_client_context())

    other_ca = ensure_client_ca(tmp_path / "other-ca")
    _assert_refused(cm, _pinning_context(issue_client_certificate(other_ca, "kim-portal"), tmp_path))

    now = dt.datetime.now(dt.UTC)
    expired = cm.issue_client_certificate(
        "kim-portal", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    _assert_refused(cm, _pinning_context(expired, tmp_path))
    assert cm.commands_seen == []

    # The same simulator lets a certificate of its own CA in.
    ok = poplib.POP3_SSL(
        "127.0.0.1", cm.pop3_port, context=_pinning_context(cm.issue_client_certificate("kim-portal"), tmp_path)
    )
    ok.quit()


def test_client_ca_is_made_once_and_its_certificates_carry_client_auth(tmp_path: Path) -> None:
    ca = ensure_client_ca(tmp_path)
    assert ensure_client_ca(tmp_path).fingerprint == ca.fingerprint
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    issued = x509.load_pem_x509_certificate(issue_client_certificate(ca, "kim-portal").cert_pem.encode())
    assert issued.issuer == x509.load_pem_x509_certificate(ca.cert_path.read_bytes()).subject
    usage = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in usage


def test_client_cert_command_issues_a_pair_the_running_simulator_accepts(make_cm, tmp_path: Path) -> None:
    from tisim.__main__ import main

    cm = make_cm(require_client_cert=True)
    out = tmp_path / "issued"
    assert main(["client-cert", "--data-dir", str(cm.data_dir), "--cn", "kim-portal", "--out", str(out)]) == 0
    assert stat.S_IMODE((out / "client-key.pem").stat().st_mode) == 0o600
    ctx = pinning_client_context()
    ctx.load_cert_chain(out / "client-cert.pem", out / "client-key.pem")
    conn = poplib.POP3_SSL("127.0.0.1", cm.pop3_port, context=ctx, timeout=30)
    conn.quit()


def test_simulator_refuses_starttls_without_tls() -> None:
    with pytest.raises(ValueError):
        CMSimulator(Path("/nonexistent"), tls=False, starttls=True)
