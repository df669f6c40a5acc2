from __future__ import annotations

import socket
import threading
import time

import pytest

from directory import ldapfilter as f
from directory.clients import vzd as vzd_client
from directory.clients.vzd import VzdClient, VzdConfig, VzdTimeout, VzdUnavailable, get_client
from directory.selectors import unavailable_message
from tisim.tls import ensure_certificate
from tisim.vzd.slapd import free_port

from .conftest import PRAXIS


def test_search_returns_records_with_normalised_lists(vzd):
    result = get_client().search(f.eq("mail", PRAXIS), ["displayName", "mail"])
    assert not result.truncated
    [record] = result.records
    assert record.first("displayName") == "Praxis Dr. Müller"
    assert record.values("mail") == [PRAXIS]


def test_size_limit_is_a_truncated_result_not_an_error(vzd):
    result = get_client().search(f.eq("professionOID", "1.2.276.0.76.4.50"), ["uid"])
    assert result.truncated
    assert len(result.records) == 100


def test_certificates_come_back_as_bytes(vzd):
    result = get_client().search(f.prefix("mail", "zertifikatstest-"), ["uid", "userCertificate;binary"])
    assert len(result.records) == 3
    for record in result.records:
        assert all(isinstance(v, bytes) for v in record.values("userCertificate;binary"))


def test_directory_down_raises_unavailable(vzd_down):
    with pytest.raises(VzdUnavailable):
        get_client().search("(uid=x)", ["uid"])


def test_directory_that_never_answers_times_out(vzd_silent):
    started = time.monotonic()
    with pytest.raises(VzdTimeout):
        get_client().search("(uid=x)", ["uid"])
    assert time.monotonic() - started < 10


def test_after_a_timeout_the_directory_is_not_asked_again_until_the_pause_ends(monkeypatch):
    # A hung directory held a request thread (and one of the server's few request slots) for the whole timeout on
    # every keystroke of a live search.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    held: list[socket.socket] = []

    def accepted() -> int:
        while True:
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                return len(held)

    now = [1000.0]
    monkeypatch.setattr(vzd_client, "_clock", lambda: now[0])
    url = f"ldap://127.0.0.1:{listener.getsockname()[1]}"
    client = VzdClient(VzdConfig(url=url, connect_timeout=1, search_timeout=1, retry_pause=15))
    try:
        with pytest.raises(VzdTimeout):
            client.search("(uid=x)", ["uid"])
        assert accepted() == 1
        now[0] += 14
        with pytest.raises(VzdTimeout):
            client.search("(uid=x)", ["uid"])
        assert accepted() == 1  # failed at once, without a connection
        assert unavailable_message(VzdTimeout("x")).startswith("Das Verzeichnis (VZD) antwortet nicht rechtzeitig")
        now[0] += 2
        with pytest.raises(VzdTimeout):
            client.search("(uid=x)", ["uid"])
        assert accepted() == 2  # the pause is over: asked again
    finally:
        client.close()
        for conn in held:
            conn.close()
        listener.close()


def test_a_directory_that_refuses_is_asked_again_at_once(vzd_down):
    # Refused is an answer, and a quick one: it costs no thread time, so no pause hides the directory's return.
    client = get_client()
    for _ in range(2):
        with pytest.raises(VzdUnavailable) as failure:
            client.search("(uid=x)", ["uid"])
        assert type(failure.value) is VzdUnavailable
    assert client._quiet_until == 0.0


def test_pool_is_safe_under_concurrent_use(vzd):
    client = VzdClient(VzdConfig(url=vzd.url, pool_size=3))
    errors: list[BaseException] = []
    counts: list[int] = []

    def worker(term: str) -> None:
        try:
            for _ in range(5):
                result = client.search(f.contains("displayName", term), ["uid", "displayName"])
                assert all(term.lower() in r.first("displayName").lower() for r in result.records)
                counts.append(len(result.records))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in ("müller", "schmidt", "klinikum", "apotheke") * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(counts) == 40 and all(counts)
    assert client._idle.qsize() <= 3
    client.close()


def _ldaps_failure(url: str, ca_file: str) -> str:
    client = VzdClient(VzdConfig(url=url, ca_file=ca_file, connect_timeout=2))
    with pytest.raises(VzdUnavailable) as failure:
        client.search(f.eq("mail", PRAXIS), ["uid"])
    return str(failure.value)


def test_ldaps_with_the_directory_ca_finds_entries(vzd_ldaps):
    client = VzdClient(VzdConfig(url=vzd_ldaps.ldaps_url, ca_file=str(vzd_ldaps.ca_file)))
    result = client.search(f.eq("mail", PRAXIS), ["displayName"])
    assert [r.first("displayName") for r in result.records] == ["Praxis Dr. Müller"]
    client.close()


@pytest.mark.parametrize("trusted", ["system-store", "another-ca"])
def test_ldaps_without_the_directory_ca_fails_certificate_verification(vzd_ldaps, tmp_path, trusted):
    # The server is up and speaks TLS: only the missing trust may fail, never the connection itself.
    ca_file = "" if trusted == "system-store" else str(ensure_certificate(tmp_path).cert_path)
    message = _ldaps_failure(vzd_ldaps.ldaps_url, ca_file)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert "refused" not in message.lower()


def test_ldaps_with_an_unreadable_ca_file_is_a_configuration_error(vzd_ldaps):
    message = _ldaps_failure(vzd_ldaps.ldaps_url, "/nonexistent/ca.pem")
    # Reported before any connection is tried: the running server is neither reached nor blamed.
    assert message.startswith("TLS configuration") and "/nonexistent/ca.pem" in message
    assert "refused" not in message.lower()


def test_ldaps_port_without_a_server_is_connection_refused(vzd_ldaps):
    message = _ldaps_failure(f"ldaps://127.0.0.1:{free_port()}", str(vzd_ldaps.ca_file))
    assert "refused" in message.lower()
    assert "CERTIFICATE" not in message.upper()


def test_bad_url_is_rejected():
    with pytest.raises(ValueError):
        VzdClient(VzdConfig(url="http://example.org"))
