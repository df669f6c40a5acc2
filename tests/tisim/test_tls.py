from __future__ import annotations

import smtplib
import ssl
import stat
from pathlib import Path

import pytest

from tisim.cm import CMSimulator
from tisim.tls import (
    FingerprintMismatch,
    check_pinned,
    ensure_certificate,
    fingerprint_sha256,
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
