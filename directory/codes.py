"""German labels for VZD codes (professionOID, specialization) and the participant kinds offered as a filter.

The code → label tables live in ``directory/data/codesystems.json``, derived once from the gematik FHIR code
systems (source noted in the file), so the portal runs without the spec folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from django.utils.functional import Promise
from django.utils.translation import get_language
from django.utils.translation import gettext_lazy as _

from directory.folding import fold

DATA_FILE = Path(__file__).with_name("data") / "codesystems.json"
OID_PREFIX = "1.2.276.0.76.4."


@cache
def _tables() -> dict:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def profession_label(oid: str) -> str:
    return _tables()["professions"].get(oid.strip(), oid)


def _split_specialization(value: str) -> tuple[str, str | None, str]:
    """``urn:psc:<oid>:<code>`` → ("psc", oid, code), ``urn:as:<oid>:<code>`` → ("as", oid, code); a plain
    pharmacy code → ("", None, code)."""
    value = value.strip()
    if value.startswith(("urn:psc:", "urn:as:")):
        _, scheme, rest = value.split(":", 2)
        oid, _, code = rest.rpartition(":")
        return scheme, oid, code
    return "", None, value


def specialty_label(value: str) -> str | None:
    """German label of a specialization value; None for the VZD's empty marker ``-``.

    SMC-B entries (``urn:psc``) use the practice-setting code systems, HBA entries (``urn:as``) their own author
    specialty code systems (Facharzttitel der Ärztekammern, Qualifikationen nicht ärztlicher Autoren …): the same
    code means different things in the two, so each is looked up in its own table.
    """
    if not value or value.strip() == "-":
        return None
    scheme, oid, code = _split_specialization(value)
    if oid is None:
        return _tables()["pharmacy_types"].get(code, code)
    own, other = ("hba_specialties", "specialties") if scheme == "as" else ("specialties", "hba_specialties")
    tables = _tables()
    # An entry with a code system of the other card type is mislabelled data; its label is still better than a code.
    return tables[own].get(oid, {}).get(code) or tables[other].get(oid, {}).get(code) or code


class SpecialtyGroup:
    ORGANIZATION = _("Einrichtungen (SMC-B)")
    PERSON = _("Personen (HBA)")
    PHARMACY = _("Apotheken")


@dataclass(frozen=True)
class Specialty:
    key: str  # "<oid>:<code>" (SMC-B), "hba:<oid>:<code>" (HBA) or "pharmacy:<code>"
    label: str

    def ldap_values(self) -> list[str]:
        system, _, code = self.key.rpartition(":")
        if system == "pharmacy":
            return [code]
        if system.startswith("hba:"):
            return [f"urn:as:{system.removeprefix('hba:')}:{code}"]
        return [f"urn:psc:{system}:{code}"]

    @property
    def group(self) -> Promise:
        if self.key.startswith("hba:"):
            return SpecialtyGroup.PERSON
        if self.key.startswith("pharmacy:"):
            return SpecialtyGroup.PHARMACY
        return SpecialtyGroup.ORGANIZATION


@cache
def specialties() -> tuple[Specialty, ...]:
    tables = _tables()
    out = [
        Specialty(f"{oid}:{code}", label)
        for oid, codes in tables["specialties"].items()
        for code, label in codes.items()
    ]
    out += [
        Specialty(f"hba:{oid}:{code}", label)
        for oid, codes in tables["hba_specialties"].items()
        for code, label in codes.items()
    ]
    out += [Specialty(f"pharmacy:{code}", label) for code, label in tables["pharmacy_types"].items()]
    return tuple(sorted(out, key=lambda s: s.label.casefold()))


@cache
def _by_key() -> dict[str, Specialty]:
    return {s.key: s for s in specialties()}


@cache
def _folded() -> tuple[tuple[str, Specialty], ...]:
    return tuple((fold(s.label), s) for s in specialties())


def specialty(key: str) -> Specialty | None:
    return _by_key().get(key)


def specialties_matching(term: str) -> list[Specialty]:
    """Specialties whose German label contains the term ("kardio" → Kardiologie, FA Innere Medizin und
    Kardiologie …), spelling-folded ("Gynaekologie" finds Gynäkologie). Best first: the whole label, then labels
    starting with the term, then SMC-B before HBA — callers cap the list."""
    needle = fold(term)
    found = [(label, s) for label, s in _folded() if needle in label]
    return [
        s
        for label, s in sorted(
            found, key=lambda m: (m[0] != needle, not m[0].startswith(needle), m[1].key.startswith("hba:"))
        )
    ]


@dataclass(frozen=True)
class Kind:
    key: str
    label: Promise
    oids: tuple[str, ...]
    words: tuple[str, ...] = ()  # free-text words that select this kind


def _oids(*suffixes: int) -> tuple[str, ...]:
    return tuple(f"{OID_PREFIX}{s}" for s in suffixes)


KINDS: tuple[Kind, ...] = (
    Kind("arzt", _("Arzt/Ärztin"), _oids(30), ("arzt", "ärztin")),
    Kind("arztpraxis", _("Arztpraxis"), _oids(50), ("arztpraxis",)),
    Kind("zahnarzt", _("Zahnarzt/Zahnärztin"), _oids(31, 51), ("zahnarzt", "zahnarztpraxis", "zahnärztin")),
    Kind("psychotherapeut", _("Psychotherapeut/-in"), _oids(45, 46, 47, 52), ("psychotherapeut",)),
    Kind("krankenhaus", _("Krankenhaus"), _oids(53, 55), ("krankenhaus", "klinik", "klinikum")),
    Kind("apotheke", _("Apotheke"), _oids(54, 55, 56, 32), ("apotheke", "apotheker")),
    Kind("krankenkasse", _("Krankenkasse"), _oids(59, 273, 284), ("krankenkasse", "kasse")),
    Kind("pflege", _("Pflege"), _oids(232, 233, 234, 245), ("pflege", "pflegedienst")),
    Kind("heilmittel", _("Therapiepraxis (Physio, Ergo, Logo)"), _oids(236, 247, 274, 275, 278, 279, 280)),
)
KIND_BY_KEY = {k.key: k for k in KINDS}


def kinds_for_word(term: str) -> list[Kind]:
    needle = fold(term)
    return [k for k in KINDS if any(fold(w) == needle for w in k.words)]


_KIND_BY_OID = {oid: kind for kind in reversed(KINDS) for oid in kind.oids}  # first listed kind wins


def kind_label_for(oids: list[str]) -> str | None:
    """A short German kind label for an entry's professionOIDs (falls back to the code system's label)."""
    for oid in oids:
        kind = _KIND_BY_OID.get(oid)
        if kind is not None:
            return _kind_label(kind.key, get_language())
    return profession_label(oids[0]) if oids else None


@cache
def _kind_label(key: str, language: str | None) -> str:
    # str() of a lazy translation costs a gettext lookup; entries are mapped by the hundred per search.
    return str(KIND_BY_KEY[key].label)
