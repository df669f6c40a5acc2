"""Reading the Telematik-ID from a card certificate (no I/O).

gematik's certificates carry it as the ``registrationNumber`` of the admission extension (Common PKI
AdmissionSyntax, OID 1.3.36.8.3.3): AdmissionSyntax → contentsOfAdmissions → Admissions → professionInfos →
ProfessionInfo.registrationNumber (gemSpec_PKI). The eHBA's C.QES certificate is read with ReadCardCertificate.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import core, x509

ADMISSION_OID = "1.3.36.8.3.3"


class _DirectoryStrings(core.SequenceOf):  # type: ignore[misc]
    _child_spec = x509.DirectoryString


class _Oids(core.SequenceOf):  # type: ignore[misc]
    _child_spec = core.ObjectIdentifier


class _NamingAuthority(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("naming_authority_id", core.ObjectIdentifier, {"optional": True}),
        ("naming_authority_url", core.IA5String, {"optional": True}),
        ("naming_authority_text", x509.DirectoryString, {"optional": True}),
    ]


class _ProfessionInfo(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("naming_authority", _NamingAuthority, {"explicit": 0, "optional": True}),
        ("profession_items", _DirectoryStrings),
        ("profession_oids", _Oids, {"optional": True}),
        ("registration_number", core.PrintableString, {"optional": True}),
        ("add_profession_info", core.OctetString, {"optional": True}),
    ]


class _ProfessionInfos(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _ProfessionInfo


class _Admissions(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("admission_authority", x509.GeneralName, {"explicit": 0, "optional": True}),
        ("naming_authority", _NamingAuthority, {"explicit": 1, "optional": True}),
        ("profession_infos", _ProfessionInfos),
    ]


class _AdmissionsList(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _Admissions


class AdmissionSyntax(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("admission_authority", x509.GeneralName, {"optional": True}),
        ("contents_of_admissions", _AdmissionsList),
    ]


def telematik_id_of(certificate_der: bytes) -> str | None:
    """The Telematik-ID of a certificate, or None when it has no admission extension with a registration number
    (or is not a certificate at all)."""
    try:
        certificate = x509.Certificate.load(certificate_der)
        extensions = certificate["tbs_certificate"]["extensions"]
        for extension in extensions:
            if extension["extn_id"].dotted != ADMISSION_OID:
                continue
            syntax = AdmissionSyntax.load(extension["extn_value"].native)
            for admissions in syntax["contents_of_admissions"]:
                for info in admissions["profession_infos"]:
                    number = _native(info["registration_number"])
                    if number:
                        return str(number).strip()
    except (ValueError, TypeError, KeyError):
        return None
    return None


def _native(value: Any) -> Any:
    if isinstance(value, core.Void):
        return None
    return value.native
