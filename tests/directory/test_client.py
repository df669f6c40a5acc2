from __future__ import annotations

import threading
import time

import pytest

from directory import ldapfilter as f
from directory.clients.vzd import VzdClient, VzdConfig, VzdTimeout, VzdUnavailable, get_client


def test_search_returns_records_with_normalised_lists(vzd):
    result = get_client().search(
        f.eq("mail", "praxis.mueller@praxis-mueller.kim.telematik-test"), ["displayName", "mail"]
    )
    assert not result.truncated
    [record] = result.records
    assert record.first("displayName") == "Praxis Dr. Müller"
    assert record.values("mail") == ["praxis.mueller@praxis-mueller.kim.telematik-test"]


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


def test_ldaps_requires_ca_file_to_validate():
    client = VzdClient(VzdConfig(url="ldaps://127.0.0.1:1", ca_file="/nonexistent/ca.pem", connect_timeout=1))
    with pytest.raises(VzdUnavailable):
        client.search("(uid=x)", ["uid"])


def test_bad_url_is_rejected():
    with pytest.raises(ValueError):
        VzdClient(VzdConfig(url="http://example.org"))
