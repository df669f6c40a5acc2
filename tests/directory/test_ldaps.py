"""LDAPS to a Konnektor-like slapd: its certificate's CN comes from the card (no host name anywhere) and it demands
a client certificate. Trust through the CA file or a pinned fingerprint, never through the host name."""

from __future__ import annotations

import pytest
from django.urls import reverse

from directory import ldapfilter as f
from directory.clients.vzd import VzdClient, VzdConfig, VzdTlsError, display_fingerprint, normalize_fingerprint
from directory.selectors import unavailable_message
from tisim.vzd.certs import KonnektorTls
from tisim.vzd.slapd import SlapdServer

from .conftest import PRAXIS

pytestmark = pytest.mark.slapd


def _config(server: SlapdServer, tls: KonnektorTls, **overrides: str) -> VzdConfig:
    values = {
        "url": server.ldaps_url,
        "connect_timeout": 3.0,
        "client_cert_file": str(tls.client_cert_path),
        "client_key_file": str(tls.client_key_path),
        "client_key_password": tls.client_key_password,
        **overrides,
    }
    return VzdConfig(**values)  # type: ignore[arg-type]


def _search(config: VzdConfig) -> list[str]:
    client = VzdClient(config)
    try:
        return [r.first("displayName") for r in client.search(f.eq("mail", PRAXIS), ["displayName"]).records]
    finally:
        client.close()


def _failure(config: VzdConfig) -> VzdTlsError:
    with pytest.raises(VzdTlsError) as failure:
        _search(config)
    return failure.value


def test_the_server_certificate_names_the_card_not_the_host(konnektor_tls):
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(konnektor_tls.cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == f"CN={konnektor_tls.common_name}"
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_ca_file_and_client_certificate_without_host_name_check(vzd_konnektor, konnektor_tls, host):
    url = vzd_konnektor.ldaps_url.replace("127.0.0.1", host)
    config = _config(vzd_konnektor, konnektor_tls, url=url, ca_file=str(konnektor_tls.ca_path))
    assert _search(config) == ["Praxis Dr. Müller"]


@pytest.mark.parametrize("notation", ["plain", "colons-upper", "prefixed"])
def test_pinned_fingerprint_in_any_notation(vzd_konnektor, konnektor_tls, notation):
    pin = {
        "plain": konnektor_tls.fingerprint,
        "colons-upper": display_fingerprint(konnektor_tls.fingerprint),
        "prefixed": f"SHA256: {konnektor_tls.fingerprint.upper()} ",
    }[notation]
    assert _search(_config(vzd_konnektor, konnektor_tls, tls_pin=pin)) == ["Praxis Dr. Müller"]


def test_wrong_pin_is_refused_and_names_the_fingerprint_seen(vzd_konnektor, konnektor_tls):
    wrong = "00" * 32
    error = _failure(_config(vzd_konnektor, konnektor_tls, tls_pin=wrong))
    assert error.kind == "pin_mismatch" and error.actual == konnektor_tls.fingerprint
    message = unavailable_message(error)
    assert "passt nicht zum hinterlegten Fingerabdruck" in message
    assert display_fingerprint(konnektor_tls.fingerprint) in message


def test_a_pin_and_a_ca_file_must_both_hold(vzd_konnektor, konnektor_tls):
    config = _config(vzd_konnektor, konnektor_tls, ca_file=str(konnektor_tls.ca_path), tls_pin="ab" * 32)
    assert _failure(config).kind == "pin_mismatch"


@pytest.mark.parametrize("missing", ["certificate", "password"])
def test_without_a_usable_client_certificate(vzd_konnektor, konnektor_tls, missing):
    if missing == "certificate":
        config = _config(vzd_konnektor, konnektor_tls, tls_pin=konnektor_tls.fingerprint, client_cert_file="")
        error = _failure(config)
        assert error.kind == "client_cert_rejected"
        assert "verlangt ein Client-Zertifikat" in unavailable_message(error)
    else:
        config = _config(vzd_konnektor, konnektor_tls, tls_pin=konnektor_tls.fingerprint, client_key_password="falsch")
        error = _failure(config)
        assert (error.kind, error.setting) == ("config", "client_cert")
        assert "Passwort des Schlüssels" in unavailable_message(error)


def test_a_client_certificate_the_server_does_not_know_is_refused(vzd_konnektor, konnektor_tls, tmp_path):
    from tisim.vzd.certs import make_konnektor_tls

    stranger = make_konnektor_tls(tmp_path / "stranger")
    config = _config(
        vzd_konnektor,
        konnektor_tls,
        tls_pin=konnektor_tls.fingerprint,
        client_cert_file=str(stranger.client_cert_path),
        client_key_file=str(stranger.client_key_path),
    )
    assert _failure(config).kind == "client_cert_rejected"


def test_system_trust_store_refuses_the_konnektor(vzd_konnektor, konnektor_tls):
    error = _failure(_config(vzd_konnektor, konnektor_tls))
    assert error.kind == "untrusted"
    assert "Zertifizierungsstelle" in unavailable_message(error)


def test_another_ca_refuses_the_konnektor(vzd_konnektor, konnektor_tls):
    # The client CA is a real CA file, just not the one that issued the server's certificate.
    config = _config(vzd_konnektor, konnektor_tls, ca_file=str(konnektor_tls.client_ca_path))
    assert _failure(config).kind == "untrusted"


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"tls_pin": "not-a-fingerprint"}, "pin"),
        ({"tls_pin": "ab" * 31}, "pin"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"client_cert_file": "/nonexistent/client.pem"}, "client_cert"),
    ],
)
def test_broken_settings_are_reported_before_connecting(vzd_konnektor, konnektor_tls, overrides, setting):
    error = _failure(_config(vzd_konnektor, konnektor_tls, **overrides))
    assert (error.kind, error.setting) == ("config", setting)
    assert unavailable_message(error).startswith("Die TLS-Einstellungen für das Verzeichnis (VZD) sind fehlerhaft.")


def test_certificates_with_plain_ldap_are_a_configuration_error(vzd_konnektor, konnektor_tls):
    config = _config(vzd_konnektor, konnektor_tls, url=vzd_konnektor.url, tls_pin=konnektor_tls.fingerprint)
    error = _failure(config)
    assert (error.kind, error.setting) == ("config", "url")
    assert "ldaps://" in unavailable_message(error)


def test_normalize_fingerprint():
    fp = "a1" * 32
    assert normalize_fingerprint(display_fingerprint(fp)) == fp
    assert normalize_fingerprint(f"sha256:{fp.upper()}") == fp
    assert normalize_fingerprint("a1:b2") == ""


def test_search_page_shows_the_tls_error_in_german(logged_in, settings, vzd_konnektor, konnektor_tls):
    settings.KIMPORTAL_VZD_URL = vzd_konnektor.ldaps_url
    settings.KIMPORTAL_VZD_CA_FILE = ""
    settings.KIMPORTAL_VZD_TLS_PIN = "11" * 32
    settings.KIMPORTAL_VZD_CLIENT_CERT_FILE = str(konnektor_tls.client_cert_path)
    settings.KIMPORTAL_VZD_CLIENT_KEY_FILE = str(konnektor_tls.client_key_path)
    settings.KIMPORTAL_VZD_CLIENT_KEY_PASSWORD = konnektor_tls.client_key_password
    response = logged_in.get(reverse("directory:search"), {"q": "müller"})
    content = response.content.decode()
    assert response.status_code == 200
    assert "data-vzd-error" in content
    assert "passt nicht zum hinterlegten Fingerabdruck" in content
    assert display_fingerprint(konnektor_tls.fingerprint) in content
    # and with the right pin the same settings work
    settings.KIMPORTAL_VZD_TLS_PIN = display_fingerprint(konnektor_tls.fingerprint)
    content = logged_in.get(reverse("directory:search"), {"q": "müller"}).content.decode()
    assert "Praxis Dr. Müller" in content and "data-vzd-error" not in content
