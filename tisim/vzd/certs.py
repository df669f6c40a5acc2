"""Test encryption certificates for the simulated VZD.

Generating a key and a signed certificate per entry would make 200,000 entries take minutes, so a small,
deterministic pool of template certificates is made once per data set and reused. Each template carries a
fixed-length placeholder as the Telematik-ID (registrationNumber in the admission extension, OID 1.3.36.8.3.3);
the generator patches the entry's Telematik-ID into those bytes. The DER stays well-formed (same length), the
signature no longer verifies — which nobody checks here: slapd only validates DER syntax and the portal (like a
KIM client without the TI trust store) checks subject, validity and Telematik-ID consistency.

Deliberately unusable members of the pool:
- ``expired``: validity ended in the past;
- ``mismatch``: carries a fixed foreign Telematik-ID (not patched);
- ``broken``: well-formed DER that no X.509 parser accepts as a certificate (version field 7), which slapd's
  syntax check still lets through.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# 20 characters; every generated Telematik-ID has exactly this length so patching keeps the DER length.
TELEMATIK_ID_LENGTH = 20
PLACEHOLDER = b"9-9PLACEHOLDER999999"
assert len(PLACEHOLDER) == TELEMATIK_ID_LENGTH
FOREIGN_TELEMATIK_ID = "9-2FREMDE-ID-0000001"
ADMISSION_OID = x509.ObjectIdentifier("1.3.36.8.3.3")


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
    if rsa_key:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        usage = {"key_encipherment": True, "data_encipherment": True, "key_agreement": False}
    else:
        key = ec.generate_private_key(ec.SECP256R1())
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
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(rng.getrandbits(63) | 1)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(
                ADMISSION_OID,
                admission_extension("Betriebsstätte Arzt", "1.2.276.0.76.4.50", registration_number),
            ),
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def _break(der: bytes) -> bytes:
    """Set the X.509 version to 8 (INTEGER 7): still valid DER, no longer a parseable certificate."""
    marker = b"\xa0\x03\x02\x01\x02"  # [0] EXPLICIT INTEGER 2 (= v3) at the start of TBSCertificate
    pos = der.find(marker)
    assert pos > 0
    return der[:pos] + b"\xa0\x03\x02\x01\x07" + der[pos + len(marker) :]


def make_pool(seed: int, *, now: dt.datetime | None = None, size: int = 50) -> list[PoolCert]:
    """A deterministic-in-shape pool: ``size`` valid templates, then 2 expired, 1 mismatch, 1 broken.

    Keys come from the OS RNG (cryptography offers no seeded key generation), so the bytes differ between
    runs; the shape, the order and which entry gets which kind of certificate depend on the seed only.
    """
    rng = random.Random(seed)
    now = now or dt.datetime.now(dt.UTC)
    start = (now - dt.timedelta(days=365)).replace(microsecond=0)
    end = (now + dt.timedelta(days=3 * 365)).replace(microsecond=0)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    pool: list[PoolCert] = []
    for i in range(size):
        # A few RSA-2048 certificates like real SMC-Bs carry; EC keeps generation fast.
        der = _make_cert(
            rng, index=i, rsa_key=i % 10 == 0, not_before=start, not_after=end, registration_number=PLACEHOLDER,
            ca_key=ca_key,
        )  # fmt: skip
        pool.append(PoolCert(der=der, kind="valid", patchable=True))
    for i in range(2):
        der = _make_cert(
            rng, index=size + i, rsa_key=False, not_before=now - dt.timedelta(days=4 * 365),
            not_after=now - dt.timedelta(days=30 + i), registration_number=PLACEHOLDER, ca_key=ca_key,
        )  # fmt: skip
        pool.append(PoolCert(der=der, kind="expired", patchable=True))
    der = _make_cert(
        rng, index=size + 2, rsa_key=False, not_before=start, not_after=end,
        registration_number=FOREIGN_TELEMATIK_ID.encode(), ca_key=ca_key,
    )  # fmt: skip
    pool.append(PoolCert(der=der, kind="mismatch", patchable=False))
    good = _make_cert(
        rng, index=size + 3, rsa_key=False, not_before=start, not_after=end, registration_number=PLACEHOLDER,
        ca_key=ca_key,
    )  # fmt: skip
    pool.append(PoolCert(der=_break(good), kind="broken", patchable=True))
    return pool
