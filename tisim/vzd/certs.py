"""Test encryption certificates for the simulated VZD.

Generating a key and a signed certificate per entry would make 200,000 entries take minutes, so a small,
deterministic pool of template certificates is made once per data set and reused. Each template carries a
fixed-length placeholder as the Telematik-ID (registrationNumber in the admission extension, OID 1.3.36.8.3.3);
the generator patches the entry's Telematik-ID into those bytes. The DER stays well-formed (same length), the
signature no longer verifies — which nobody checks here: slapd only validates DER syntax and the portal (like a
KIM client without the TI trust store) checks subject, validity and Telematik-ID consistency.

``make_konnektor_tls`` writes the TLS side instead: a server certificate like a Konnektor's LDAP proxy presents
(no host name in it) and a client-system certificate for ``TLSVerifyClient demand``.

Deliberately unusable members of the pool:
- ``expired``: validity ended in the past;
- ``mismatch``: carries a fixed foreign Telematik-ID (not patched);
- ``broken``: well-formed DER that no X.509 parser accepts as a certificate (version field 7), which slapd's
  syntax check still lets through.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tisim.tls import certificate_issue, self_signed_ca

# 20 characters; every generated Telematik-ID has exactly this length so patching keeps the DER length.
TELEMATIK_ID_LENGTH = 20
PLACEHOLDER = b"9-9PLACEHOLDER999999"
assert len(PLACEHOLDER) == TELEMATIK_ID_LENGTH
FOREIGN_TELEMATIK_ID = "9-2FREMDE-ID-0000001"
ADMISSION_OID = x509.ObjectIdentifier("1.3.36.8.3.3")
# Fixed dates keep the data deterministic; "valid" certificates outlive any sensible test run.
VALID_FROM = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
VALID_UNTIL = dt.datetime(2035, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
EXPIRED_FROM = dt.datetime(2019, 1, 1, tzinfo=dt.UTC)
EXPIRED_UNTIL = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out.extend(reversed(chunk))
    return _tlv(0x06, bytes(out))


def admission_extension(profession_item: str, profession_oid: str, registration_number: bytes) -> bytes:
    """DER of AdmissionSyntax (Common PKI / gemSpec_PKI) with one ProfessionInfo."""
    profession_info = _tlv(
        0x30,
        _tlv(0x30, _tlv(0x0C, profession_item.encode()))  # professionItems
        + _tlv(0x30, _oid(profession_oid))  # professionOIDs
        + _tlv(0x13, registration_number),  # registrationNumber (PrintableString)
    )
    admissions = _tlv(0x30, _tlv(0x30, profession_info))
    return _tlv(0x30, _tlv(0x30, admissions))


@dataclass(frozen=True)
class PoolCert:
    der: bytes
    kind: str  # "valid", "expired", "mismatch", "broken"
    patchable: bool

    def for_telematik_id(self, telematik_id: str) -> bytes:
        if not self.patchable:
            return self.der
        tid = telematik_id.encode()
        if len(tid) != TELEMATIK_ID_LENGTH:
            raise ValueError(f"Telematik-ID must have {TELEMATIK_ID_LENGTH} characters: {telematik_id!r}")
        return self.der.replace(PLACEHOLDER, tid)


_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _is_probable_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(rng: random.Random, bits: int, e: int) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if (candidate - 1) % e and _is_probable_prime(candidate, rng):
            return candidate


def seeded_rsa_key(rng: random.Random, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key from a seeded RNG — test data only: cryptography has no seeded key generation."""
    e = 65537
    p = _prime(rng, bits // 2, e)
    q = _prime(rng, bits // 2, e)
    while q == p:
        q = _prime(rng, bits // 2, e)
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    return rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    ).private_key()


def seeded_ec_key(rng: random.Random) -> ec.EllipticCurvePrivateKey:
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order
    return ec.derive_private_key(rng.randrange(1, order), ec.SECP256R1())


def _make_cert(
    rng: random.Random,
    *,
    index: int,
    rsa_key: bool,
    not_before: dt.datetime,
    not_after: dt.datetime,
    registration_number: bytes,
    ca_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if rsa_key:
        key = seeded_rsa_key(rng)
        usage = {"key_encipherment": True, "data_encipherment": True, "key_agreement": False}
    else:
        key = seeded_ec_key(rng)
        usage = {"key_encipherment": False, "data_encipherment": False, "key_agreement": True}
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tisim KIM-Testzertifikat NOT-VALID"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"ENC-Testzertifikat {index:02d} TEST-ONLY"),
        ]
    )
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tisim Test-CA NOT-VALID"),
            x509.NameAttribute(NameOID.COMMON_NAME, "TISIM.SMCB-CA1 TEST-ONLY"),
        ]
    )
    usage_ext = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
        **usage,
    )
    admission = admission_extension("Betriebsstätte Arzt", "1.2.276.0.76.4.50", registration_number)
    cert = certificate_issue(
        subject,
        issuer,
        key.public_key(),
        ca_key,
        serial=rng.getrandbits(63) | 1,
        not_before=not_before,
        not_after=not_after,
        key_usage=usage_ext,
        extensions=[(x509.UnrecognizedExtension(ADMISSION_OID, admission), False)],
        deterministic=True,  # RFC 6979: same seed, same bytes
    )
    return cert.public_bytes(serialization.Encoding.DER)


def _break(der: bytes) -> bytes:
    """Set the X.509 version to 8 (INTEGER 7): still valid DER, no longer a parseable certificate."""
    marker = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2 (= v3) at the start of TBSCertificate
    pos = der.find(marker)
    assert pos > 0
    return der[:pos] + b"\xa0\x03\x02\x01\x07" + der[pos + len(marker) :]


def make_pool(seed: int, *, size: int = 50) -> list[PoolCert]:
    """A pool that depends on the seed only: ``size`` valid templates, then 2 expired, 1 mismatch, 1 broken.

    Keys come from the seeded RNG, the CA signs with deterministic ECDSA (RFC 6979) and validity dates are
    fixed, so the same seed always gives the same bytes.
    """
    rng = random.Random(f"vzd-certs-{seed}")
    ca_key = seeded_ec_key(rng)
    pool: list[PoolCert] = []
    for i in range(size):
        # A few RSA-2048 certificates like real SMC-Bs carry; EC keeps generation fast.
        der = _make_cert(
            rng, index=i, rsa_key=i % 25 == 0, not_before=VALID_FROM, not_after=VALID_UNTIL,
            registration_number=PLACEHOLDER, ca_key=ca_key,
        )  # fmt: skip
        pool.append(PoolCert(der=der, kind="valid", patchable=True))
    for i in range(2):
        der = _make_cert(
            rng, index=size + i, rsa_key=False, not_before=EXPIRED_FROM, not_after=EXPIRED_UNTIL,
            registration_number=PLACEHOLDER, ca_key=ca_key,
        )  # fmt: skip
        pool.append(PoolCert(der=der, kind="expired", patchable=True))
    der = _make_cert(
        rng, index=size + 2, rsa_key=False, not_before=VALID_FROM, not_after=VALID_UNTIL,
        registration_number=FOREIGN_TELEMATIK_ID.encode(), ca_key=ca_key,
    )  # fmt: skip
    pool.append(PoolCert(der=der, kind="mismatch", patchable=False))
    good = _make_cert(
        rng, index=size + 3, rsa_key=False, not_before=VALID_FROM, not_after=VALID_UNTIL,
        registration_number=PLACEHOLDER, ca_key=ca_key,
    )  # fmt: skip
    pool.append(PoolCert(der=_break(good), kind="broken", patchable=True))
    return pool


# -- TLS of the Konnektor's LDAP proxy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KonnektorTls:
    """Files for an LDAPS endpoint that looks like a Konnektor's: the server certificate's CN is derived from the
    card (ICCSN + date, as on the gSMC-K's ID.AK.AUT) with no host name anywhere, issued by a component CA; and a
    client-system certificate (as the Konnektor's admin UI exports it) with a password-protected key, issued by a
    second CA the server trusts for client authentication."""

    ca_path: Path  # the component CA: what the portal configures as its CA file
    cert_path: Path
    key_path: Path
    fingerprint: str  # SHA-256 of the server certificate's DER, hex
    client_ca_path: Path
    client_cert_path: Path
    client_key_path: Path
    client_key_password: str
    common_name: str


KONNEKTOR_CN = "80276883110000118001-20250101"  # ICCSN + date: what a real one carries instead of a host name
CLIENT_KEY_PASSWORD = "clientsystem-test"


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tisim NOT-VALID"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    cert, key = self_signed_ca(subject)
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, common_name: str, usage: x509.ObjectIdentifier
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return key, certificate_issue(subject, ca.subject, key.public_key(), ca_key, extended_usage=[usage])


def make_konnektor_tls(directory: Path) -> KonnektorTls:
    """Write a Konnektor-like server certificate and a client-system certificate into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    plain = serialization.NoEncryption()
    pkcs8 = serialization.PrivateFormat.PKCS8

    ca_key, ca = _ca("GEM.KOMP-CA TISIM TEST-ONLY")
    key, cert = _leaf(ca_key, ca, KONNEKTOR_CN, ExtendedKeyUsageOID.SERVER_AUTH)
    client_ca_key, client_ca = _ca("Konnektor Clientsystem-CA TISIM TEST-ONLY")
    client_key, client_cert = _leaf(
        client_ca_key, client_ca, "Clientsystem KIM-Portal", ExtendedKeyUsageOID.CLIENT_AUTH
    )

    paths = {
        name: directory / name
        for name in ("ca.pem", "server.pem", "server.key", "client-ca.pem", "client.pem", "client.key")
    }
    paths["ca.pem"].write_bytes(ca.public_bytes(pem))
    paths["server.pem"].write_bytes(cert.public_bytes(pem))
    paths["server.key"].write_bytes(key.private_bytes(pem, pkcs8, plain))
    paths["client-ca.pem"].write_bytes(client_ca.public_bytes(pem))
    paths["client.pem"].write_bytes(client_cert.public_bytes(pem))
    encrypted = serialization.BestAvailableEncryption(CLIENT_KEY_PASSWORD.encode())
    paths["client.key"].write_bytes(client_key.private_bytes(pem, pkcs8, encrypted))
    for name in ("server.key", "client.key"):
        paths[name].chmod(0o600)
    return KonnektorTls(
        ca_path=paths["ca.pem"],
        cert_path=paths["server.pem"],
        key_path=paths["server.key"],
        fingerprint=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        client_ca_path=paths["client-ca.pem"],
        client_cert_path=paths["client.pem"],
        client_key_path=paths["client.key"],
        client_key_password=CLIENT_KEY_PASSWORD,
        common_name=KONNEKTOR_CN,
    )
