"""TLS towards the KIM Clientmodul: transport security, certificate check and client certificate.

Three separate choices, as real CMs offer them:

* transport: implicit TLS (SMTPS/POP3S), STARTTLS (``STARTTLS`` for SMTP, ``STLS`` for POP3,
  never falling back to plain text), or plain text only when the admin chose it explicitly;
* certificate check: a pinned SHA-256 fingerprint (a CM's certificate is self-signed or TI-issued
  and its CN rarely matches the host), or CA verification against given CA certificates or the
  system CAs, with or without the host-name check;
* an optional client certificate and key (mTLS, KOM-LE-A_2181).

Whatever the transport, the pin check runs right after the handshake, before any credential.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509

IMPLICIT_TLS = "implicit_tls"
STARTTLS = "starttls"
PLAIN = "plain"
PINNED = "pinned"
CA = "ca"


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


class CmCertificateUntrusted(CmTlsError):
    """CA verification (or the host-name check) refused the CM's certificate."""


class CmStartTlsUnavailable(CmTlsError):
    """The CM does not offer STARTTLS/STLS or refused it; the connection is not continued in plain text."""

    def __init__(self, command: str, reply: str = "") -> None:
        super().__init__(f"{command} {'refused: ' + reply if reply else 'not offered'}")
        self.command = command
        self.reply = reply


class CmClientCertificateError(CmTlsError):
    """The client certificate is missing, refused by the CM, or unusable here.

    ``reason``: "required" (CM wants one, none configured), "expired" (by the local clock),
    "rejected" (the CM refused the one we sent), "unusable" (certificate/key cannot be loaded),
    "closed" (the CM hung up right after the handshake, typically a refused or missing certificate).
    """

    def __init__(self, reason: str, detail: str = "", *, sent: bool = False) -> None:
        super().__init__(f"client certificate {reason}: {detail}" if detail else f"client certificate {reason}")
        self.reason = reason
        self.detail = detail
        self.sent = sent  # whether a client certificate went out in the handshake


class CmProtocolError(CmError):
    pass


@dataclass(frozen=True)
class TlsSettings:
    transport: str = IMPLICIT_TLS  # IMPLICIT_TLS | STARTTLS | PLAIN
    certificate_check: str = PINNED  # PINNED | CA
    fingerprint: str = ""
    ca_certificates: str = ""  # PEM; empty = the system's CAs
    check_hostname: bool = False
    client_certificate: str = ""  # PEM
    client_key: str = field(default="", repr=False)  # PEM, decrypted

    @property
    def uses_tls(self) -> bool:
        return self.transport != PLAIN


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: TlsSettings
    username: str
    password: str = field(repr=False)
    timeout: float


def normalize_fingerprint(value: str) -> str:
    return value.replace(":", "").replace(" ", "").strip().lower()


def client_context(tls: TlsSettings) -> ssl.SSLContext:
    if tls.certificate_check == CA:
        # No CA certificates given: create_default_context() loads the system's.
        ctx = ssl.create_default_context(cadata=tls.ca_certificates or None)
        ctx.check_hostname = tls.check_hostname
    else:
        # Pinned: the chain is not checked against CAs; verify_pin() replaces it after the handshake.
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.client_certificate:
        _load_client_certificate(ctx, tls.client_certificate, tls.client_key)
    return ctx


def _load_client_certificate(ctx: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode("ascii"))
    except ValueError as exc:
        raise CmClientCertificateError("unusable", str(exc)) from exc
    # A certificate past its date would only earn an alert from the CM; say so precisely instead.
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise CmClientCertificateError("expired", cert.not_valid_after_utc.isoformat())
    try:
        with _secret_file(cert_pem + "\n" + key_pem) as path:
            ctx.load_cert_chain(path)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise CmClientCertificateError("unusable", str(exc)) from exc


@contextlib.contextmanager
def _secret_file(text: str) -> Iterator[str]:
    """A path OpenSSL can read the key from (ssl takes no in-memory keys), for as short as possible.

    Linux: an anonymous memory file, so the decrypted key never reaches a disk. Elsewhere: a
    private temporary file, removed right after loading.
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("kim-client-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, text.encode("ascii"))
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "client.pem")
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="ascii") as fh:
            fh.write(text)
        yield path


def verify_pin(sock: socket.socket | None, tls: TlsSettings) -> None:
    """Compare the server certificate with the pinned fingerprint before any credential is sent."""
    if tls.certificate_check != PINNED:
        return
    der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    actual = hashlib.sha256(der).hexdigest() if der else ""
    expected = normalize_fingerprint(tls.fingerprint)
    if not expected or not actual or not hmac.compare_digest(actual, expected):
        raise CmFingerprintMismatch(expected, actual)


# OpenSSL reasons (ssl.SSLError.reason) for a CM that refused our client certificate.
_CLIENT_CERT_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "required",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "rejected",
    "TLSV1_ALERT_UNKNOWN_CA": "rejected",
    "SSLV3_ALERT_BAD_CERTIFICATE": "rejected",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "rejected",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "rejected",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "rejected",
    "TLSV1_ALERT_ACCESS_DENIED": "rejected",
}


def classify_os_error(exc: BaseException) -> CmError:
    if isinstance(exc, CmError):
        return exc
    # smtplib wraps a read timeout in SMTPServerDisconnected; the timeout is in the chain.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return CmTimeout(str(exc) or "timeout")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CmCertificateUntrusted(exc.verify_message or str(exc))
    if isinstance(exc, ssl.SSLError):
        reason = _CLIENT_CERT_ALERTS.get(exc.reason or "")
        if reason:
            return CmClientCertificateError(reason, exc.reason or "", sent=reason != "required")
        return CmTlsError(str(exc))
    return CmUnreachable(str(exc) or exc.__class__.__name__)


def classify_after_handshake(exc: BaseException, tls: TlsSettings) -> CmError:
    """An error in the first exchange after a TLS handshake.

    In TLS 1.3 the server checks the client certificate after the client's handshake is done, so a
    refusal shows up at the first read. When the client had to speak first (after STARTTLS) the alert
    can be lost and the CM seems to just hang up; that too is almost always about the certificate.
    """
    error = classify_os_error(exc)
    if isinstance(error, CmUnreachable | CmProtocolError) or type(error) is CmTlsError:
        return CmClientCertificateError("closed", str(exc) or type(exc).__name__, sent=bool(tls.client_certificate))
    return error


__all__ = [
    "CA",
    "IMPLICIT_TLS",
    "PINNED",
    "PLAIN",
    "STARTTLS",
    "CmAuthFailed",
    "CmCertificateUntrusted",
    "CmClientCertificateError",
    "CmError",
    "CmFingerprintMismatch",
    "CmProtocolError",
    "CmStartTlsUnavailable",
    "CmTimeout",
    "CmTlsError",
    "CmUnreachable",
    "Endpoint",
    "TlsSettings",
    "classify_after_handshake",
    "classify_os_error",
    "client_context",
    "normalize_fingerprint",
    "verify_pin",
]
