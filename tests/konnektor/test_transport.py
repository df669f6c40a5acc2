"""Connection settings: what cannot work is refused with a German text; the client key never stays on disk."""

from __future__ import annotations

import os
import tempfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from konnektor import KonnektorClient, KonnektorConfig, KonnektorError
from konnektor import transport as transport_module
from tisim.tls import certificate_issue


def identity() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "KIMPortal")])
    cert = certificate_issue(name, name, key.public_key(), key, days=1)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"base_url": "http://k:80", "mode": "tls"}, "Unbekannte Verbindungsart"),
        ({"base_url": "ftp://k"}, "Adresse des Konnektors ist ungültig"),
        ({"base_url": "http://k:80", "mode": "basic", "username": "u", "password": "p"}, "HTTPS-Adresse"),
        ({"base_url": "https://k:443", "mode": "basic", "username": "u"}, "Benutzername oder Passwort"),
        ({"base_url": "https://k:443", "mode": "cert"}, "Client-Zertifikat oder Schlüssel"),
        ({"base_url": "https://k:443", "ca_pem": b"not a pem"}, "CA-Zertifikat"),
        (
            {"base_url": "https://k:443", "mode": "cert", "client_cert_pem": b"x", "client_key_pem": b"y"},
            "Client-Zertifikat oder Schlüssel",
        ),
    ],
)
def test_unusable_settings_are_refused(options: dict[str, object], words: str) -> None:
    with pytest.raises(KonnektorError) as caught:
        KonnektorClient(KonnektorConfig(**options))  # type: ignore[arg-type]
    assert caught.value.kind == "config"
    assert words in caught.value.text


def test_a_key_that_does_not_match_the_certificate() -> None:
    cert_pem, _ = identity()
    _, other_key = identity()
    config = KonnektorConfig("https://k:443", mode="cert", client_cert_pem=cert_pem, client_key_pem=other_key)
    with pytest.raises(KonnektorError) as caught:
        KonnektorClient(config)
    assert "passen nicht zusammen" in caught.value.text


def private_folders() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("konnektor-")}


@pytest.mark.parametrize("memfd", [True, False], ids=["memfd", "temporary-file"])
def test_the_client_key_is_not_left_on_disk(monkeypatch: pytest.MonkeyPatch, memfd: bool) -> None:
    cert_pem, key_pem = identity()
    if not memfd:
        # The fallback where memfd is missing: a 0600 file in a private folder, removed after loading.
        monkeypatch.delattr(os, "memfd_create")
    written: list[tuple[str, int]] = []
    real_open = os.open

    def spy_open(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        fd = real_open(path, flags, mode, **kwargs)  # type: ignore[arg-type]
        if str(path).endswith("key.pem"):
            written.append((str(path), os.stat(fd).st_mode & 0o777))
        return fd

    monkeypatch.setattr(transport_module.os, "open", spy_open)
    before = private_folders()
    client = KonnektorClient(
        KonnektorConfig("https://127.0.0.1:9", mode="cert", client_cert_pem=cert_pem, client_key_pem=key_pem)
    )
    client.close()
    if memfd:
        assert written == []
    else:
        assert len(written) == 1 and written[0][1] == 0o600
        assert not os.path.exists(written[0][0])
        assert not os.path.exists(os.path.dirname(written[0][0]))
    assert private_folders() == before
