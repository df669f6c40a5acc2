"""The simulator's self-signed TLS certificate, the pinning that goes with it, and a client-certificate CA.

A real Clientmodul presents a self-signed (or TI-issued) certificate whose CN does not match the
host, so clients pin its SHA-256 fingerprint. The certificate is generated once per data directory
and reused, so the fingerprint a client has pinned stays valid across restarts.

A CM may also demand a TLS client certificate from the client system (mTLS, KOM-LE-A_2181). The
simulator keeps its own small CA for that in the same directory and issues client certificates
from it (``python -m tisim client-cert``); only certificates of this CA are accepted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import secrets
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
COMMON_NAME = "KIM-Clientmodul-Simulator"
CLIENT_CA_CERT_FILE = "client-ca.pem"
CLIENT_CA_KEY_FILE = "client-ca-key.pem"
CLIENT_CA_COMMON_NAME = "KIM-Clientmodul-Simulator Client-CA"


class FingerprintMismatch(ssl.SSLError):
    """The peer's certificate is not the pinned one."""

    def __init__(self, expected: str, actual: str) -> None:
        super().__init__(f"certificate fingerprint {actual} does not match pinned {expected}")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class Certificate:
    cert_path: Path
    key_path: Path
    fingerprint: str


def fingerprint_sha256(cert: bytes | str) -> str:
    """SHA-256 over the DER form of a certificate given as PEM (str/bytes) or DER; hex, lowercase, no colons."""
    data = cert.encode("ascii") if isinstance(cert, str) else cert
    if data.lstrip().startswith(b"-----BEGIN"):
        data = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(data).hexdigest()


def normalize_fingerprint(value: str) -> str:
    return value.replace(":", "").replace(" ", "").strip().lower()


def ensure_certificate(tls_dir: Path) -> Certificate:
    """Return the certificate in ``tls_dir``, generating it on first use."""
    cert_path, key_path = tls_dir / CERT_FILE, tls_dir / KEY_FILE
    if not (cert_path.is_file() and key_path.is_file()):
        _generate(cert_path, key_path)
    return Certificate(cert_path, key_path, fingerprint_sha256(cert_path.read_bytes()))


def _generate(cert_path: Path, key_path: Path) -> None:
    # ECDSA P-256: instant to generate (tests start many simulators) and supported by every TLS client.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, COMMON_NAME)])
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = certificate_issue(name, name, key.public_key(), key, san=san)
    _write_pair(cert_path, key_path, cert, key)


def certificate_issue(
    subject: x509.Name,
    issuer_name: x509.Name,
    public_key: CertificatePublicKeyTypes,
    signing_key: CertificateIssuerPrivateKeyTypes,
    *,
    ca: bool = False,
    days: float = 3650,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    serial: int | None = None,
    key_usage: x509.KeyUsage | None = None,
    san: Sequence[x509.GeneralName] = (),
    extended_usage: Sequence[x509.ObjectIdentifier] = (),
    subject_key_id: bool = False,
    authority_key_id: bool = False,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    deterministic: bool = False,
) -> x509.Certificate:
    """A certificate for ``public_key`` named ``subject``, signed with ``signing_key`` (SHA-256) as ``issuer_name``.

    Valid from yesterday for ``days`` unless ``not_before``/``not_after`` say otherwise; a random serial unless
    ``serial`` is given. Extensions, in this order: ``key_usage`` (critical), BasicConstraints (critical; a CA
    with path length 0 when ``ca``, else an end entity), SubjectAlternativeName from ``san``, ExtendedKeyUsage
    from ``extended_usage``, the subject key identifier of ``public_key``, the authority key identifier of
    ``signing_key``'s public key, then ``extensions`` as (extension, critical) pairs. ``deterministic``: ECDSA
    signatures per RFC 6979, so the same inputs give the same bytes.
    """
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number() if serial is None else serial)
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=days))
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if extended_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_usage), critical=False)
    if subject_key_id:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    if authority_key_id:
        issuer_public = signing_key.public_key()
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    if deterministic:
        return builder.sign(signing_key, hashes.SHA256(), ecdsa_deterministic=True)
    return builder.sign(signing_key, hashes.SHA256())


def self_signed_ca(name: x509.Name, *, days: int = 3650) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed P-256 CA (no intermediates below it), valid from yesterday for ``days``."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate_issue(
        name, name, key.public_key(), key, ca=True, days=days, key_usage=_CA_KEY_USAGE, subject_key_id=True
    )
    return cert, key


def ensure_client_ca(tls_dir: Path) -> Certificate:
    """The CA whose client certificates the simulator accepts, generated on first use."""
    cert_path, key_path = tls_dir / CLIENT_CA_CERT_FILE, tls_dir / CLIENT_CA_KEY_FILE
    if not (cert_path.is_file() and key_path.is_file()):
        cert, key = self_signed_ca(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_CA_COMMON_NAME)]))
        _write_pair(cert_path, key_path, cert, key)
    return Certificate(cert_path, key_path, fingerprint_sha256(cert_path.read_bytes()))


@dataclass(frozen=True)
class ClientCertificate:
    cert_pem: str
    key_pem: str


def issue_client_certificate(
    ca: Certificate,
    common_name: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> ClientCertificate:
    """A client certificate signed by ``ca`` (dates overridable, e.g. to make an expired one for tests)."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_path.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key_path.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = certificate_issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        ca_cert.subject,
        key.public_key(),
        ca_key,
        days=825,
        not_before=not_before,
        not_after=not_after,
        key_usage=_CLIENT_KEY_USAGE,
        extended_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        authority_key_id=True,
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ClientCertificate(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), key_pem.decode("ascii"))


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)
_CLIENT_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Key first: a cert without its key would be regenerated anyway, the reverse would not.
    _write_atomic(key_path, key_pem, mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def server_context(cert: Certificate, *, client_ca: Certificate | None = None) -> ssl.SSLContext:
    """The CM's server side; with ``client_ca`` every client must present a certificate issued by it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca.cert_path)
    return ctx


def pinning_client_context() -> ssl.SSLContext:
    """A client context that skips CA checks: trust comes from :func:`check_pinned` after the handshake."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def check_pinned(sock: ssl.SSLSocket, expected: str) -> None:
    """Raise :class:`FingerprintMismatch` unless the peer certificate has the pinned fingerprint."""
    der = sock.getpeercert(binary_form=True)
    actual = fingerprint_sha256(der) if der else ""
    if not hmac.compare_digest(actual, normalize_fingerprint(expected)):
        raise FingerprintMismatch(expected, actual)
