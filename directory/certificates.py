"""Encryption certificates of VZD entries: parse DER, check validity and Telematik-ID consistency.

What is checked — and what the UI says is checked (``CHECKED``): the validity period, the Telematik-ID in the
admission extension against the entry, and that the key usage allows encryption. Not checked: the issuer chain
up to the TI trust list (TSL) and revocation (OCSP). A certificate that passes is "formally valid", not "valid";
the KIM client module checks chain and OCSP itself before it encrypts.

No I/O. Never raises on bad input: anything that is not a usable certificate becomes ``problem="unreadable"``.
The Telematik-ID is the registrationNumber in the admission extension (1.3.36.8.3.3, gemSpec_PKI); KIM clients
refuse to encrypt when an entry's certificates carry a different Telematik-ID (KOM-LE-A_2178).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.utils.translation import gettext_lazy as _

ADMISSION_OID = x509.ObjectIdentifier("1.3.36.8.3.3")

PROBLEM_LABELS = {
    "unreadable": _("Zertifikat nicht lesbar"),
    "expired": _("Zertifikat abgelaufen"),
    "not_yet_valid": _("Zertifikat noch nicht gültig"),
    "telematik_id_mismatch": _("Telematik-ID im Zertifikat passt nicht zum Eintrag"),
    "not_for_encryption": _("Zertifikat nicht zur Verschlüsselung geeignet"),
}


@dataclass(frozen=True)
class CertificateInfo:
    fingerprint: str  # SHA-256 of the DER, hex
    ok: bool
    problem: str | None = None
    subject: str = ""
    issuer: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    telematik_ids: tuple[str, ...] = ()
    key_type: str = ""

    @property
    def problem_label(self) -> str:
        return str(PROBLEM_LABELS.get(self.problem or "", ""))


# -- minimal DER reading for the admission extension ----------------------------------------------------------


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos:end], end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    out, pos = [], 0
    while pos < len(data):
        tag, body, pos = _read_tlv(data, pos)
        out.append((tag, body))
    return out


def admission_registration_numbers(ext_value: bytes) -> tuple[str, ...]:
    """registrationNumber values from an AdmissionSyntax (SEQUENCE {[authority], SEQUENCE OF Admissions})."""
    (tag, body), *_ = _children(ext_value)
    if tag != 0x30:
        raise ValueError("AdmissionSyntax is not a SEQUENCE")
    contents = [b for t, b in _children(body) if t == 0x30][-1]
    numbers: list[str] = []
    for t_adm, admission in _children(contents):
        if t_adm != 0x30:
            continue
        # Admissions: [0] authority, [1] naming authority (both optional), SEQUENCE OF ProfessionInfo
        infos = [b for t, b in _children(admission) if t == 0x30]
        for info_seq in infos[-1:]:
            for t_info, info in _children(info_seq):
                if t_info != 0x30:
                    continue
                for t_field, value in _children(info):
                    if t_field == 0x13:  # PrintableString registrationNumber
                        numbers.append(value.decode("ascii", errors="replace"))
    return tuple(numbers)


# -- parsing ----------------------------------------------------------------------------------------------------


def parse_certificate(
    der: bytes, *, telematik_id: str | None = None, now: dt.datetime | None = None
) -> CertificateInfo:
    fingerprint = hashlib.sha256(der if isinstance(der, bytes | bytearray) else b"").hexdigest()
    try:
        cert = x509.load_der_x509_certificate(bytes(der))
        subject = cert.subject.rfc4514_string()
        issuer = cert.issuer.rfc4514_string()
        not_before = cert.not_valid_before_utc
        not_after = cert.not_valid_after_utc
        key = cert.public_key()
        try:
            ext = cert.extensions.get_extension_for_oid(ADMISSION_OID)
            raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else ext.value.public_bytes()
            tids = admission_registration_numbers(raw)
        except x509.ExtensionNotFound:
            tids = ()
        try:
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            can_encrypt = usage.key_encipherment or usage.data_encipherment or usage.key_agreement
        except x509.ExtensionNotFound:
            can_encrypt = True
    except Exception:  # any parser error means: not a usable certificate
        return CertificateInfo(fingerprint=fingerprint, ok=False, problem="unreadable")

    key_type = (
        f"RSA-{key.key_size}"
        if isinstance(key, rsa.RSAPublicKey)
        else f"ECC {key.curve.name}"
        if isinstance(key, ec.EllipticCurvePublicKey)
        else type(key).__name__
    )
    now = now or dt.datetime.now(dt.UTC)
    problem = None
    if now > not_after:
        problem = "expired"
    elif now < not_before:
        problem = "not_yet_valid"
    elif telematik_id and tids and telematik_id.strip().casefold() not in {t.casefold() for t in tids}:
        problem = "telematik_id_mismatch"
    elif telematik_id and not tids:
        problem = "telematik_id_mismatch"
    elif not can_encrypt:
        problem = "not_for_encryption"
    return CertificateInfo(
        fingerprint=fingerprint,
        ok=problem is None,
        problem=problem,
        subject=subject,
        issuer=issuer,
        not_before=not_before,
        not_after=not_after,
        telematik_ids=tids,
        key_type=key_type,
    )


@dataclass(frozen=True)
class CertState:
    """Certificate state of one VZD entry, as shown next to its KIM addresses."""

    status: str  # "valid", "invalid", "missing", "unknown"
    certificates: tuple[CertificateInfo, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.status == "valid"

    @property
    def label(self) -> str:
        return str(STATE_LABELS.get(self.status, STATE_LABELS["unknown"]))

    @property
    def scope(self) -> str:
        """What the label rests on, for a tooltip and the details."""
        return str(CHECKED) if self.status in ("valid", "invalid") else ""

    @property
    def reasons(self) -> list[str]:
        return list(dict.fromkeys(c.problem_label for c in self.certificates if c.problem))

    @property
    def valid_until(self) -> dt.datetime | None:
        dates = [c.not_after for c in self.certificates if c.ok and c.not_after]
        return min(dates) if dates else None

    @property
    def fingerprints(self) -> tuple[str, ...]:
        return tuple(sorted(c.fingerprint for c in self.certificates))


STATE_LABELS = {
    # "formal": period, Telematik-ID and key usage were checked, chain and revocation were not (see CHECKED).
    "valid": _("Zertifikat formal gültig"),
    "invalid": _("Zertifikat nicht verwendbar"),
    "missing": _("Kein Verschlüsselungszertifikat"),
    "unknown": _("Zertifikat nicht geprüft"),
}
CHECKED = _(
    "Geprüft: Gültigkeitszeitraum, Telematik-ID und Schlüsselverwendung. "
    "Nicht geprüft: Ausstellerkette (TI-Vertrauensliste) und Sperrstatus (OCSP)."
)
UNKNOWN = CertState("unknown")


def entry_cert_state(ders: list[bytes], *, telematik_id: str, now: dt.datetime | None = None) -> CertState:
    """Valid when at least one certificate is usable and none carries a foreign Telematik-ID."""
    if not ders:
        return CertState("missing")
    infos = tuple(parse_certificate(d, telematik_id=telematik_id, now=now) for d in ders)
    usable = any(i.ok for i in infos)
    foreign = any(i.problem == "telematik_id_mismatch" for i in infos)
    return CertState("valid" if usable and not foreign else "invalid", infos)
