"""Test PKI of the simulated Konnektor: a QES CA for the eHBA certificates, a CA for its HTTPS server certificate.

Everything is generated once per data directory and kept there, so a certificate the portal has read
(and a signature it has stored) stays verifiable across restarts of the simulator. Names carry
"TEST-ONLY": these certificates must never be mistaken for TI ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tisim.tls import Certificate, fingerprint_sha256

QES_CA_NAME = "TISIM HBA-qCA TEST-ONLY"
# The CA of the institution cards' authentication certificates (C.HCI.AUT of the SMC-B), as a TSP's SMC-B CA.
SMCB_CA_NAME = "TISIM SMCB-CA TEST-ONLY"
SERVER_CA_NAME = "TISIM GEM.KOMP-CA TEST-ONLY"
SERVER_CN = "Konnektor-Simulator"
# Profession OIDs (gemSpec_OID): Ärztin/Arzt on an eHBA, Krankenhaus on an SMC-B.
OID_ARZT = "1.2.276.0.76.4.30"
OID_KRANKENHAUS = "1.2.276.0.76.4.53"
VALIDITY = dt.timedelta(days=5 * 365)
# ETSI EN 319 412-5 QCStatements: QcCompliance (0.4.0.1862.1.1) and QcSSCD (0.4.0.1862.1.4) — an EU qualified
# certificate whose key lives on a secure signature creation device, as on the eHBA's C.QES certificates.
QC_STATEMENTS_OID = "1.3.6.1.5.5.7.1.3"
QC_STATEMENTS = bytes.fromhex("30143008060604008e4601013008060604008e460104")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    key: PrivateKey
    cert: x509.Certificate

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode=0o600 if private else 0o644)
    tmp.write_bytes(data)
    tmp.replace(path)


def _load(cert_path: Path, key_path: Path) -> Issued | None:
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        return None
    return Issued(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))


def _save(issued: Issued, cert_path: Path, key_path: Path) -> Issued:
    # Key first: a certificate without its key is regenerated, the reverse would be a dead certificate.
    _write(key_path, _key_pem(issued.key), private=True)
    _write(cert_path, issued.cert_pem)
    return issued


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _ensure_ca(directory: Path, stem: str, common_name: str) -> Issued:
    cert_path, key_path = directory / f"{stem}.pem", directory / f"{stem}-key.pem"
    existing = _load(cert_path, key_path)
    if existing is not None:
        return existing
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tisim NOT-VALID"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _save(Issued(key, cert), cert_path, key_path)


class Pki:
    """The CAs and issued certificates below ``directory`` (``<data_dir>/konnektor/pki``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.qes_ca = _ensure_ca(directory, "qes-ca", QES_CA_NAME)
        self.server_ca = _ensure_ca(directory, "server-ca", SERVER_CA_NAME)
        self.smcb_ca = _ensure_ca(directory, "smcb-ca", SMCB_CA_NAME)

    @property
    def qes_ca_path(self) -> Path:
        return self.directory / "qes-ca.pem"

    @property
    def server_ca_path(self) -> Path:
        return self.directory / "server-ca.pem"

    def server_certificate(self) -> Certificate:
        """The HTTPS server certificate (SAN 127.0.0.1, ::1 and localhost), issued by the server CA."""
        cert_path, key_path = self.directory / "server.pem", self.directory / "server-key.pem"
        if _load(cert_path, key_path) is None:
            key = ec.generate_private_key(ec.SECP256R1())
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_CN)]))
                .issuer_name(self.server_ca.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=825))
                .add_extension(
                    x509.SubjectAlternativeName(
                        [
                            x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                            x509.IPAddress(ipaddress.ip_address("::1")),
                        ]
                    ),
                    critical=False,
                )
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(self.server_ca.key)),
                    critical=False,
                )
                .sign(_issuer_key(self.server_ca.key), hashes.SHA256())
            )
            _save(Issued(key, cert), cert_path, key_path)
        return Certificate(cert_path, key_path, fingerprint_sha256(cert_path.read_bytes()))

    def card_certificate(
        self,
        iccsn: str,
        *,
        holder_name: str,
        telematik_id: str,
        profession_item: str,
        profession_oid: str,
        algorithm: str,
    ) -> Issued:
        """The card's key and certificate for ``algorithm`` "RSA" (2048 bit) or "ECC" (brainpoolP256r1, as
        gematik's G2.1 cards carry it), reused while holder and Telematik-ID stay the same. An eHBA's is its
        C.QES certificate: nonRepudiation and the QcCompliance statement of a qualified certificate."""
        rsa_key = algorithm == "RSA"
        qualified = profession_oid == OID_ARZT
        return self._card_certificate(
            iccsn if rsa_key else f"{iccsn}-ecc",
            issuer=self.qes_ca,
            holder_name=holder_name,
            telematik_id=telematik_id,
            profession=(profession_item, profession_oid),
            algorithm=algorithm,
            usage=_usage(digital_signature=not rsa_key, content_commitment=True),
            qualified=qualified,
            client_auth=False,
        )

    def auth_certificate(
        self, iccsn: str, *, holder_name: str, telematik_id: str, profession_item: str, profession_oid: str,
        algorithm: str,
    ) -> Issued:  # fmt: skip
        """The SMC-B's C.AUT (C.HCI.AUT) key and certificate for ``algorithm`` "ECC" (brainpoolP256r1) or "RSA",
        issued by the SMC-B CA: digitalSignature, extended key usage clientAuth (what ExternalAuthenticate signs
        with, e.g. the Account Manager's JWT)."""
        return self._card_certificate(
            f"{iccsn}-aut-{algorithm.lower()}",
            issuer=self.smcb_ca,
            holder_name=holder_name,
            telematik_id=telematik_id,
            profession=(profession_item, profession_oid),
            algorithm=algorithm,
            usage=_usage(digital_signature=True, key_encipherment=algorithm == "RSA"),
            qualified=False,
            client_auth=True,
        )

    def _card_certificate(
        self,
        stem: str,
        *,
        issuer: Issued,
        holder_name: str,
        telematik_id: str,
        profession: tuple[str, str],
        algorithm: str,
        usage: x509.KeyUsage,
        qualified: bool,
        client_auth: bool,
    ) -> Issued:
        cert_path = self.directory / "cards" / f"{stem}.pem"
        key_path = self.directory / "cards" / f"{stem}-key.pem"
        existing = _load(cert_path, key_path)
        if (
            existing is not None
            and _matches(existing.cert, holder_name, telematik_id)
            and existing.cert.issuer == issuer.cert.subject
            and _has_qc_statements(existing.cert) == qualified
        ):
            return existing
        key: PrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if algorithm == "RSA"
            else ec.generate_private_key(ec.BrainpoolP256R1())
        )
        iccsn = stem.split("-", 1)[0]
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, iccsn),
                x509.NameAttribute(NameOID.COMMON_NAME, holder_name),
            ]
        )
        admissions = x509.Admissions(
            authority=None,
            admissions=[
                x509.Admission(
                    admission_authority=None,
                    naming_authority=None,
                    profession_infos=[
                        x509.ProfessionInfo(
                            naming_authority=None,
                            profession_items=[profession[0]],
                            profession_oids=[x509.ObjectIdentifier(profession[1])],
                            registration_number=telematik_id,
                            add_profession_info=None,
                        )
                    ],
                )
            ],
        )
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(admissions, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(issuer.key)), critical=False)
        )
        if client_auth:
            builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        if qualified:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(QC_STATEMENTS_OID), QC_STATEMENTS),
                critical=False,
            )
        cert = builder.sign(_issuer_key(issuer.key), hashes.SHA256())
        return _save(Issued(key, cert), cert_path, key_path)


def _usage(
    *, digital_signature: bool = False, content_commitment: bool = False, key_encipherment: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=content_commitment,
        key_encipherment=key_encipherment, data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _has_qc_statements(cert: x509.Certificate) -> bool:
    return any(ext.oid.dotted_string == QC_STATEMENTS_OID for ext in cert.extensions)


def _matches(cert: x509.Certificate, holder_name: str, telematik_id: str) -> bool:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names or names[0].value != holder_name:
        return False
    try:
        admissions = cert.extensions.get_extension_for_class(x509.Admissions).value
    except x509.ExtensionNotFound:
        return False
    return any(
        info.registration_number == telematik_id for admission in admissions for info in admission.profession_infos
    )


def _ec_public(key: PrivateKey) -> ec.EllipticCurvePublicKey:
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.public_key()


def _issuer_key(key: PrivateKey) -> CertificateIssuerPrivateKeyTypes:
    return key


def iccsn_for(telematik_id: str, card_type: str) -> str:
    """A stable 20-digit ICCSN (80 276 + issuer + serial), derived so a restart keeps the card's identity."""
    digest = int.from_bytes(hashlib.sha256(f"{card_type}:{telematik_id}".encode()).digest()[:8], "big")
    return "80276883" + f"{digest % 10**12:012d}"


# --- for the other simulators (the Account Manager verifies JWTs signed through ExternalAuthenticate) ----------


class CertificateRejected(ValueError):
    """A certificate or signature the simulated TI does not accept; the message says why (English, for logs)."""


def pki_directory(data_dir: Path) -> Path:
    """Where the Konnektor simulator keeps its PKI inside a tisim data directory."""
    return Path(data_dir).resolve() / "konnektor" / "pki"


def ca_certificate_pem(data_dir: Path) -> bytes:
    """PEM of the CA that issues the simulated SMC-Bs' C.AUT certificates (created on first use, then kept in the
    data directory, so the Konnektor simulator started later with the same directory uses the same CA)."""
    return Pki(pki_directory(data_dir)).smcb_ca.cert_pem


def verify_card_certificate(cert_der: bytes, data_dir: Path, *, at: dt.datetime | None = None) -> x509.Certificate:
    """The certificate if tisim's SMC-B CA issued it and it is valid ``at`` (default: now); else
    CertificateRejected with the reason."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise CertificateRejected(f"not a DER certificate: {exc}") from None
    ca = x509.load_pem_x509_certificate(ca_certificate_pem(data_dir))
    if cert.issuer != ca.subject:
        raise CertificateRejected(f"issuer {cert.issuer.rfc4514_string()} is not {ca.subject.rfc4514_string()}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise CertificateRejected(f"not signed by the CA: {exc!r}") from None
    moment = at or _now()
    if not (cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc):
        raise CertificateRejected(
            f"not valid at {moment.isoformat()} ({cert.not_valid_before_utc} .. {cert.not_valid_after_utc})"
        )
    return cert


def verify_auth_signature(cert_der: bytes, digest: bytes, signature: bytes) -> None:
    """Check an ExternalAuthenticate signature: ``signature`` over the SHA-256 ``digest`` (32 bytes) with the key
    of ``cert_der``. ECC: plain r||s (BSI TR-03111, as the Konnektor and JWS return it); RSA: RSASSA-PSS
    (SHA-256, MGF1-SHA-256, salt 32). Raises CertificateRejected."""
    from cryptography.hazmat.primitives.asymmetric import padding, utils

    cert = x509.load_der_x509_certificate(cert_der)
    public_key = cert.public_key()
    prehashed = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            size = (public_key.curve.key_size + 7) // 8
            if len(signature) != 2 * size:
                raise CertificateRejected(f"ECDSA signature must be {2 * size} bytes (r||s), not {len(signature)}")
            r = int.from_bytes(signature[:size], "big")
            s = int.from_bytes(signature[size:], "big")
            public_key.verify(utils.encode_dss_signature(r, s), digest, ec.ECDSA(prehashed))
        elif isinstance(public_key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            public_key.verify(signature, digest, pss, prehashed)
        else:
            raise CertificateRejected(f"unsupported key type {type(public_key).__name__}")
    except InvalidSignature:
        raise CertificateRejected("signature does not match the certificate's key") from None
