"""Transport security towards the CM: implicit TLS, STARTTLS/STLS, plain only by choice, pinning or CA
verification, client certificates (mTLS) — "Verbindung testen" and the fetch, against the simulator's
real sockets. No credential may leave before the handshake and the certificate check."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from mailbox.models import KimAccount, Message
from mailbox.services.accounts import account_test_connection
from mailbox.services.fetch import account_fetch
from tests.mailbox.conftest import HOSPITAL, PASSWORD, PRAXIS, simple_mail
from tests.mailbox.factories import KimAccountFactory
from tisim.cm import CMSimulator
from tisim.tls import ensure_certificate, ensure_client_ca, issue_client_certificate

pytestmark = pytest.mark.django_db

Transport = KimAccount.Transport
Check = KimAccount.CertificateCheck
CREDENTIAL_VERBS = {("smtp", "AUTH"), ("pop3", "USER"), ("pop3", "PASS"), ("pop3", "AUTH"), ("pop3", "APOP")}


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., CMSimulator]]:
    started: list[CMSimulator] = []

    def make(**kwargs: object) -> CMSimulator:
        sim = CMSimulator(tmp_path / f"cm{len(started)}", accounts={HOSPITAL: PASSWORD, PRAXIS: PASSWORD}, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def _account(sim: CMSimulator, **fields: object) -> KimAccount:
    values: dict[str, object] = {
        "transport": Transport.STARTTLS if sim.starttls else Transport.IMPLICIT_TLS if sim.tls else Transport.PLAIN,
        "tls_certificate_check": Check.PINNED,
        "tls_fingerprint_sha256": sim.fingerprint or "",
    }
    values.update(fields)
    return KimAccountFactory(
        mailbox__address=HOSPITAL, smtp_port=sim.smtp_port, pop3_port=sim.pop3_port, password=PASSWORD, **values
    )


def _with_client_certificate(account: KimAccount, cert_pem: str, key_pem: str) -> KimAccount:
    account.tls_client_certificate = cert_pem
    account.set_client_key(key_pem)
    account.save()
    return KimAccount.objects.get(pk=account.pk)


def _checks(account: KimAccount) -> dict[str, str]:
    return {c.protocol: ("OK: " if c.ok else "FEHLER: ") + c.message for c in account_test_connection(account=account)}


def _no_credentials_sent(sim: CMSimulator) -> bool:
    return not CREDENTIAL_VERBS & set(sim.commands_seen)


# --- the transports ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sim_kwargs", "transport"),
    [({}, Transport.IMPLICIT_TLS), ({"starttls": True}, Transport.STARTTLS)],
    ids=["implicit", "starttls"],
)
def test_connection_test_succeeds_with_pinned_tls(make_sim, sim_kwargs, transport) -> None:
    sim = make_sim(**sim_kwargs)
    sim.deliver(HOSPITAL, simple_mail())
    checks = _checks(_account(sim, transport=transport))
    assert checks["SMTP"] == "OK: SMTP-Anmeldung erfolgreich."
    assert checks["POP3"].startswith("OK: POP3-Anmeldung erfolgreich, 1 Nachricht")


def test_starttls_upgrades_before_the_login(make_sim) -> None:
    sim = make_sim(starttls=True)
    _checks(_account(sim))
    smtp = [verb for protocol, verb in sim.commands_seen if protocol == "smtp"]
    pop3 = [verb for protocol, verb in sim.commands_seen if protocol == "pop3"]
    assert smtp.index("STARTTLS") < smtp.index("AUTH")
    assert pop3.index("STLS") < pop3.index("USER")


@pytest.mark.django_db(transaction=True)
def test_fetch_works_over_starttls_with_a_client_certificate(make_sim) -> None:
    sim = make_sim(starttls=True, require_client_cert=True)
    issued = sim.issue_client_certificate("kim-portal")
    account = _with_client_certificate(_account(sim), issued.cert_pem, issued.key_pem)
    sim.deliver(HOSPITAL, simple_mail("Befund über STARTTLS"))
    result = account_fetch(account_id=account.pk)
    assert result.error == ""
    assert Message.objects.filter(mailbox=account.mailbox, subject="Befund über STARTTLS").exists()
    assert sim.maildrop_uidls(HOSPITAL) == []


def test_starttls_against_a_cm_without_it_stops_before_any_credential(make_sim) -> None:
    sim = make_sim(tls=False)
    checks = _checks(_account(sim, transport=Transport.STARTTLS, tls_fingerprint_sha256="ab" * 32))
    assert "bietet kein STARTTLS an" in checks["SMTP"]
    assert "bietet kein STLS an" in checks["POP3"]
    assert "kein Passwort wurde gesendet" in checks["POP3"]
    assert _no_credentials_sent(sim)


def test_implicit_tls_against_a_plain_cm_fails_without_credentials(make_sim) -> None:
    sim = make_sim(tls=False)
    checks = _checks(_account(sim, transport=Transport.IMPLICIT_TLS, tls_fingerprint_sha256="ab" * 32))
    assert checks["SMTP"].startswith("FEHLER: TLS-Verbindung")
    assert checks["POP3"].startswith("FEHLER: TLS-Verbindung")
    assert _no_credentials_sent(sim)


@pytest.mark.parametrize(
    ("sim_kwargs", "transport"),
    [({}, Transport.IMPLICIT_TLS), ({"starttls": True}, Transport.STARTTLS)],
    ids=["implicit", "starttls"],
)
def test_a_wrong_pin_stops_before_any_credential(make_sim, sim_kwargs, transport) -> None:
    sim = make_sim(**sim_kwargs)
    checks = _checks(_account(sim, transport=transport, tls_fingerprint_sha256="ab" * 32))
    assert "passt nicht zum hinterlegten Fingerabdruck" in checks["SMTP"]
    assert "passt nicht zum hinterlegten Fingerabdruck" in checks["POP3"]
    if transport == Transport.STARTTLS:
        assert {("smtp", "STARTTLS"), ("pop3", "STLS")} <= set(sim.commands_seen)
    assert _no_credentials_sent(sim)


def test_plain_works_when_chosen_and_says_it_is_unencrypted(make_sim) -> None:
    sim = make_sim(tls=False)
    checks = _checks(_account(sim, transport=Transport.PLAIN))
    assert checks["SMTP"].startswith("OK: SMTP-Anmeldung erfolgreich.")
    assert "unverschlüsselt" in checks["SMTP"] and "unverschlüsselt" in checks["POP3"]


# --- a CM that lists STARTTLS/STLS but refuses it -----------------------------------------------------


class _RefusingCm:
    """A CM that advertises STARTTLS/STLS and then refuses it; notes every command it gets."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.commands: list[str] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as io:
            io.write(b"220 cm ESMTP\r\n" if self.protocol == "smtp" else b"+OK ready\r\n")
            io.flush()
            for line in io:
                verb = line.split()[0].upper().decode() if line.strip() else ""
                self.commands.append(verb)
                io.write(self._answer(verb))
                io.flush()
                if verb == "QUIT":
                    return

    def _answer(self, verb: str) -> bytes:
        if self.protocol == "smtp":
            return {
                "EHLO": b"250-cm\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
                "STARTTLS": b"454 4.7.0 TLS not available due to temporary reason\r\n",
                "QUIT": b"221 bye\r\n",
            }.get(verb, b"502 no\r\n")
        return {
            "CAPA": b"+OK\r\nSTLS\r\nUSER\r\n.\r\n",
            "STLS": b"-ERR TLS temporarily unavailable\r\n",
            "QUIT": b"+OK bye\r\n",
        }.get(verb, b"-ERR no\r\n")

    def close(self) -> None:
        self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in the thread
        self.server.close()
        self.thread.join(5)


@pytest.mark.parametrize("protocol", ["smtp", "pop3"])
def test_a_refused_starttls_is_an_error_not_a_fallback_to_plain(protocol) -> None:
    cm = _RefusingCm(protocol)
    try:
        account = KimAccountFactory(
            smtp_port=cm.port, pop3_port=cm.port, transport=Transport.STARTTLS, tls_fingerprint_sha256="ab" * 32
        )
        checks = _checks(account)
    finally:
        cm.close()
    if protocol == "smtp":
        assert "hat STARTTLS abgelehnt (454 4.7.0 TLS not available due to temporary reason)" in checks["SMTP"]
        assert cm.commands[:2] == ["EHLO", "STARTTLS"] and "AUTH" not in cm.commands
    else:
        assert "hat STLS abgelehnt (-ERR TLS temporarily unavailable)" in checks["POP3"]
        assert cm.commands[-2:] == ["CAPA", "STLS"] and "USER" not in cm.commands


# --- CA verification --------------------------------------------------------------------------------


def test_ca_check_with_the_cms_certificate_and_host_name(make_sim) -> None:
    sim = make_sim()
    cert_pem = ensure_certificate(sim.data_dir / "tls").cert_path.read_text()
    account = _account(
        sim, tls_certificate_check=Check.CA, tls_ca_certificates=cert_pem, tls_check_hostname=True, cm_host="127.0.0.1"
    )
    checks = _checks(account)
    assert checks["SMTP"].startswith("OK") and checks["POP3"].startswith("OK")


@pytest.mark.parametrize("ca", ["system", "other"])
def test_ca_check_refuses_a_certificate_it_cannot_trust(make_sim, tmp_path, ca) -> None:
    sim = make_sim(starttls=True)
    other = ensure_certificate(tmp_path / "other").cert_path.read_text() if ca == "other" else ""
    checks = _checks(_account(sim, tls_certificate_check=Check.CA, tls_ca_certificates=other))
    assert "nicht als vertrauenswürdig erkannt" in checks["SMTP"]
    assert "nicht als vertrauenswürdig erkannt" in checks["POP3"]
    assert _no_credentials_sent(sim)


# --- client certificates ----------------------------------------------------------------------------


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
def test_mtls_with_the_cms_client_ca_works(make_sim, starttls) -> None:
    sim = make_sim(starttls=starttls, require_client_cert=True)
    issued = sim.issue_client_certificate("kim-portal")
    account = _with_client_certificate(_account(sim), issued.cert_pem, issued.key_pem)
    checks = _checks(account)
    assert checks["SMTP"].startswith("OK") and checks["POP3"].startswith("OK")


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
def test_a_missing_client_certificate_is_reported_without_sending_credentials(make_sim, starttls) -> None:
    sim = make_sim(starttls=starttls, require_client_cert=True)
    checks = _checks(_account(sim))
    for protocol in ("SMTP", "POP3"):
        assert "Client-Zertifikat" in checks[protocol] and "keines hinterlegt" in checks[protocol]
        assert "Kein Passwort wurde gesendet" in checks[protocol]
    assert _no_credentials_sent(sim)


@pytest.mark.parametrize("starttls", [False, True], ids=["implicit", "starttls"])
def test_a_client_certificate_of_another_ca_is_reported(make_sim, tmp_path, starttls) -> None:
    sim = make_sim(starttls=starttls, require_client_cert=True)
    stranger = issue_client_certificate(ensure_client_ca(tmp_path / "other-ca"), "kim-portal")
    account = _with_client_certificate(_account(sim), stranger.cert_pem, stranger.key_pem)
    checks = _checks(account)
    for protocol in ("SMTP", "POP3"):
        assert "Client-Zertifikat nicht akzeptiert" in checks[protocol] or "abgelehnt" in checks[protocol]
    assert _no_credentials_sent(sim)


def test_an_expired_client_certificate_is_reported_before_connecting(make_sim) -> None:
    sim = make_sim(require_client_cert=True)
    now = dt.datetime.now(dt.UTC)
    expired = sim.issue_client_certificate(
        "kim-portal", not_before=now - dt.timedelta(days=400), not_after=now - dt.timedelta(days=1)
    )
    account = _with_client_certificate(_account(sim), expired.cert_pem, expired.key_pem)
    checks = _checks(account)
    assert "Client-Zertifikat ist abgelaufen" in checks["SMTP"]
    assert "Client-Zertifikat ist abgelaufen" in checks["POP3"]
    assert sim.commands_seen == []


def test_the_client_key_is_encrypted_at_rest(make_sim) -> None:
    sim = make_sim(require_client_cert=True)
    issued = sim.issue_client_certificate("kim-portal")
    account = _with_client_certificate(_account(sim), issued.cert_pem, issued.key_pem)
    with connection.cursor() as cursor:
        cursor.execute("SELECT tls_client_key_encrypted FROM mailbox_kimaccount WHERE id = %s", [account.pk])
        (stored,) = cursor.fetchone()
    assert "PRIVATE KEY" not in stored
    assert account.get_client_key() == issued.key_pem


def test_the_endpoint_does_not_show_secrets_in_its_repr(make_sim) -> None:
    from mailbox.services.accounts import account_endpoint

    sim = make_sim(require_client_cert=True)
    issued = sim.issue_client_certificate("kim-portal")
    account = _with_client_certificate(_account(sim), issued.cert_pem, issued.key_pem)
    text = repr(account_endpoint(account, "pop3"))
    assert PASSWORD not in text and "PRIVATE KEY" not in text
