"""TLS towards the KIM Clientmodul: system CAs, or a pinned certificate fingerprint.

A CM's certificate is self-signed or TI-issued and its CN rarely matches the host, so pinning
the SHA-256 fingerprint is the normal way to trust it.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
from dataclasses import dataclass


class CmError(Exception):
    """Base of all errors talking to the Clientmodul."""


class CmUnreachable(CmError):
    pass


class CmTimeout(CmError):
    pass


class CmAuthFailed(CmError):
    pass


class CmTlsError(CmError):
    pass


class CmFingerprintMismatch(CmTlsError):
    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"certificate fingerprint {actual} does not match pinned {expected}")
        self.expected = expected
        self.actual = actual


class CmProtocolError(CmError):
    pass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls_mode: str  # "none" | "system_ca" | "pinned"
    fingerprint: str
    username: str
    password: str
    timeout: float


def normalize_fingerprint(value: str) -> str:
    return value.replace(":", "").replace(" ", "").strip().lower()


def client_context(tls_mode: str) -> ssl.SSLContext | None:
    if tls_mode == "none":
        return None
    if tls_mode == "system_ca":
        return ssl.create_default_context()
    # Pinned: the chain is not checked against CAs; the fingerprint check below replaces it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def verify_pin(sock: ssl.SSLSocket, endpoint: Endpoint) -> None:
    """Compare the server certificate with the pinned fingerprint before any credential is sent."""
    if endpoint.tls_mode != "pinned":
        return
    der = sock.getpeercert(binary_form=True) or b""
    actual = hashlib.sha256(der).hexdigest()
    expected = normalize_fingerprint(endpoint.fingerprint)
    if not expected or not hmac.compare_digest(actual, expected):
        raise CmFingerprintMismatch(expected, actual)


def open_connection(endpoint: Endpoint, plain, implicit_tls):
    """Connect with the protocol's plain or implicit-TLS class and check the pin before any credential.

    `plain`/`implicit_tls` are e.g. poplib.POP3/POP3_SSL or smtplib.SMTP/SMTP_SSL.
    """
    ctx = client_context(endpoint.tls_mode)
    if ctx is None:
        return plain(endpoint.host, endpoint.port, timeout=endpoint.timeout)
    conn = implicit_tls(endpoint.host, endpoint.port, context=ctx, timeout=endpoint.timeout)
    try:
        verify_pin(conn.sock, endpoint)
    except CmFingerprintMismatch:
        conn.sock.close()
        raise
    return conn


def classify_os_error(exc: BaseException) -> CmError:
    if isinstance(exc, CmError):
        return exc
    # smtplib wraps a read timeout in SMTPServerDisconnected; the timeout is in the chain.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return CmTimeout(str(exc) or "timeout")
    if isinstance(exc, ssl.SSLError):
        return CmTlsError(str(exc))
    return CmUnreachable(str(exc) or exc.__class__.__name__)
