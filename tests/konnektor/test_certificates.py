"""telematik_id_of: the registrationNumber of the admission extension (1.3.36.8.3.3), as gematik encodes it.

The extension is encoded here by hand (DER, tag-length-value), independently of the parser under test.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from konnektor import telematik_id_of


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        encoded = bytes([length])
    else:
        raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
        encoded = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + encoded + content


def seq(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def oid(dotted: str) -> bytes:
    numbers = [int(n) for n in dotted.split(".")]
    body = bytes([numbers[0] * 40 + numbers[1]])
    for n in numbers[2:]:
        chunk = [n & 0x7F]
        n >>= 7
        while n:
            chunk.insert(0, 0x80 | (n & 0x7F))
            n >>= 7
        body += bytes(chunk)
    return tlv(0x06, body)


def printable(text: str) -> bytes:
    return tlv(0x13, text.encode("ascii"))


def utf8(text: str) -> bytes:
    return tlv(0x0C, text.encode("utf-8"))


def admission(registration_number: str | None, *, naming_authority: bool = False, authority: bool = False) -> bytes:
    info_parts = []
    if naming_authority:
        # namingAuthority [0] EXPLICIT NamingAuthority (a SEQUENCE with an optional OID)
        info_parts.append(tlv(0xA0, seq(oid("1.2.276.0.76.4.1"))))
    info_parts.append(seq(utf8("Ärztin/Arzt")))
    info_parts.append(seq(oid("1.2.276.0.76.4.30")))
    if registration_number is not None:
        info_parts.append(printable(registration_number))
    profession_info = seq(*info_parts)
    admissions_parts = []
    if authority:
        # admissionAuthority [0] EXPLICIT GeneralName (directoryName [4] of an empty Name)
        admissions_parts.append(tlv(0xA0, tlv(0xA4, seq())))
    admissions_parts.append(seq(profession_info))
    return seq(seq(seq(*admissions_parts)))


def certificate(extension_value: bytes | None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dr. med. Anna Sommer")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if extension_value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.36.8.3.3"), extension_value), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_reads_the_registration_number() -> None:
    assert telematik_id_of(certificate(admission("1-20014123456789"))) == "1-20014123456789"


def test_reads_it_with_naming_and_admission_authorities_present() -> None:
    der = certificate(admission("1-2-ARZT-Sommer-01", naming_authority=True, authority=True))
    assert telematik_id_of(der) == "1-2-ARZT-Sommer-01"


def test_none_without_extension_or_number_or_certificate() -> None:
    assert telematik_id_of(certificate(None)) is None
    assert telematik_id_of(certificate(admission(None))) is None
    assert telematik_id_of(b"not a certificate") is None
    assert telematik_id_of(certificate(b"\x30\x03\x02\x01\x05")) is None  # garbage inside the extension
