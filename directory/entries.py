"""VZD records as the portal shows them, and the portal-side ranking. Pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from directory import codes
from directory.certificates import UNKNOWN, CertState
from directory.clients.vzd import VzdRecord
from directory.folding import fold as _fold
from kimportal.validators import KIM_ADDRESS

# What list searches ask for: only what is shown or ranked — never the certificates (see selectors).
LIST_ATTRIBUTES = (
    "uid",
    "telematikID",
    "displayName",
    "cn",  # the name when displayName is missing (see _display_name)
    "organization",
    "street",
    "postalCode",
    "l",
    "professionOID",
    "specialization",
    "personalEntry",
    "mail",
    "komLeData",
    "kimData",
    "changeDateTime",  # keys the certificate cache (see certcache.py)
)
CERT_ATTRIBUTES = ("uid", "telematikID", "userCertificate;binary")
# KimVersionCS: 1.0, 1.5, 2.0; a "+" marks an address that accepts messages over 15 MiB (seen with 1.5).
VERSION = re.compile(r"^(1\.0|1\.5|2\.0)\+?$")
DEFAULT_VERSION = "1.0"  # no version published: assume 1.0 (gemSpec_VZD)


def _clean(value: str) -> str:
    """The VZD publishes '-' for empty optional values."""
    value = (value or "").strip()
    return "" if value == "-" else value


@dataclass(frozen=True)
class KimAddress:
    address: str
    version: str  # "1.0", "1.5", "1.5+", "2.0"
    app_tags: tuple[str, ...] = ()  # from kimData; none = every KIM application is accepted

    @property
    def large_messages(self) -> bool:
        """'+' = accepts messages over 15 MiB."""
        return self.version.endswith("+")


@dataclass
class DirectoryEntry:
    uid: str
    telematik_id: str
    display_name: str
    organization: str = ""
    street: str = ""
    postal_code: str = ""
    city: str = ""
    kind: str = ""
    specialties: list[str] = field(default_factory=list)
    personal: bool = False
    addresses: list[KimAddress] = field(default_factory=list)
    other_mail: list[str] = field(default_factory=list)  # published in "mail", but no KIM address
    cert: CertState = UNKNOWN
    score: int = 0
    changed: str = ""  # changeDateTime as published by the VZD

    @property
    def address_line(self) -> str:
        place = " ".join(p for p in (self.postal_code, self.city) if p)
        return ", ".join(p for p in (self.street, place) if p)

    @property
    def can_receive(self) -> bool:
        return bool(self.addresses) and self.cert.ok

    def kim_version(self, address: str) -> str:
        """The KIM version of one of this entry's addresses (see parse_versions); "" if not ours."""
        wanted = address.strip().lower()
        return next((a.version for a in self.addresses if a.address.lower() == wanted), "")

    def snapshot(self) -> dict:
        """The fields a local contact keeps, to notice when the VZD entry changed."""
        return {
            "telematik_id": self.telematik_id,
            "display_name": self.display_name,
            "organization": self.organization,
            "address": self.address_line,
            "specialties": list(self.specialties),
            "addresses": {a.address: a.version for a in self.addresses},
            "cert_status": self.cert.status,
            "certs": list(self.cert.fingerprints),
        }


@dataclass(frozen=True)
class _Published:
    version: str
    app_tags: tuple[str, ...] = ()


def parse_kim_data(record: VzdRecord) -> dict[str, _Published]:
    """KIM version (and application tags) per lower-cased address.

    Two attributes carry it, in opposite orders: ``kimData`` = "<mail>,<version>[,<appTag>|<appTag>…]" (the newer
    one, written by KIM providers for KIM 1.5 and later) and ``komLeData`` = "<version>,<mail>" (the older one).
    kimData wins where both name an address. A value with an unknown version is ignored.
    """
    out: dict[str, _Published] = {}
    for value in record.values("komLeData"):
        version, _, address = value.partition(",")
        version, address = version.strip(), address.strip().lower()
        if address and VERSION.fullmatch(version):
            out[address] = _Published(version)
    for value in record.values("kimData"):
        address, _, rest = value.partition(",")
        version, _, tags = rest.partition(",")
        address, version = address.strip().lower(), version.strip()
        if address and VERSION.fullmatch(version):
            app_tags = tuple(t.strip() for t in tags.split("|") if t.strip())
            out[address] = _Published(version, app_tags)
    return out


def parse_versions(record: VzdRecord) -> dict[str, str]:
    """KIM version per lower-cased address (kimData before komLeData, see parse_kim_data)."""
    return {address: published.version for address, published in parse_kim_data(record).items()}


def _address(mail: str, published: _Published | None) -> KimAddress:
    if published is None:
        return KimAddress(mail, DEFAULT_VERSION)
    return KimAddress(mail, published.version, published.app_tags)


def _display_name(record: VzdRecord) -> str:
    """displayName is optional in the VZD schema: then cn, then the organization (the picker shows no organization
    of its own, so a bare Telematik-ID was all a user saw there); the Telematik-ID (mandatory) is the last resort."""
    return (
        _clean(record.first("displayName"))
        or _clean(record.first("cn"))
        or _clean(record.first("organization"))
        or record.first("telematikID")
    )


def entry_from_record(record: VzdRecord) -> DirectoryEntry:
    published = parse_kim_data(record)
    mails = [m.strip() for m in record.values("mail") if _clean(m)]
    # Only KIM addresses are recipients: anything else in "mail" was shown as "KIM 1.0", offered in the picker
    # and as a favorite (a 404 when it is no address at all); it is listed apart.
    kim_mails = [m for m in mails if KIM_ADDRESS.fullmatch(m)]
    specialties = [label for label in (codes.specialty_label(s) for s in record.values("specialization")) if label]
    uid = record.first("uid") or record.dn.split(",", 1)[0].partition("=")[2]
    return DirectoryEntry(
        uid=uid,
        telematik_id=record.first("telematikID"),
        display_name=_display_name(record),
        organization=_clean(record.first("organization")),
        street=_clean(record.first("street")),
        postal_code=_clean(record.first("postalCode")),
        city=_clean(record.first("l")),
        kind=codes.kind_label_for(list(record.values("professionOID"))) or "",
        specialties=list(dict.fromkeys(specialties)),
        personal=record.first("personalEntry").strip().lower() == "true",
        addresses=[_address(m, published.get(m.lower())) for m in kim_mails],
        other_mail=[m for m in mails if m not in kim_mails],
        changed=_clean(record.first("changeDateTime")),
    )


# -- ranking ------------------------------------------------------------------------------------------------------


class _Matcher:
    """Scores one search word against texts: whole word > word start > anywhere (case- and umlaut-folded)."""

    def __init__(self, word: str) -> None:
        self.word = _fold(word)
        escaped = re.escape(self.word)
        self.exact = re.compile(rf"(?<![\w]){escaped}(?![\w])")
        self.start = re.compile(rf"(?<![\w]){escaped}")

    def __call__(self, folded: str, exact: int, start: int, inside: int) -> int:
        if not folded or self.word not in folded:
            return 0
        if self.exact.search(folded):
            return exact
        return start if self.start.search(folded) else inside


def score(entry: DirectoryEntry, matchers: list[_Matcher]) -> int:
    name, org, city = _fold(entry.display_name), _fold(entry.organization), _fold(entry.city)
    specialties = [_fold(s) for s in entry.specialties]
    addresses = [a.address.lower() for a in entry.addresses]
    ids = (entry.postal_code, _fold(entry.telematik_id))
    total = 0
    for m in matchers:
        total += max(
            m(name, 30, 20, 10),
            m(org, 12, 8, 5),
            m(city, 10, 6, 4),
            max((m(s, 8, 6, 4) for s in specialties), default=0),
            max((m(a, 6, 4, 3) for a in addresses), default=0),
            10 if m.word in ids else 0,
        )
    # Recipients are mostly institutions with a KIM address (functional mailboxes).
    if entry.addresses:
        total += 5
    if not entry.personal:
        total += 3
    return total


def rank(entries: list[DirectoryEntry], words: list[str]) -> list[DirectoryEntry]:
    matchers = [_Matcher(w) for w in dict.fromkeys(words) if w]
    for entry in entries:
        entry.score = score(entry, matchers)
    # Among equal scores the shorter name wins: more of it is what the user typed. The uid last makes the order
    # total, whatever order the directory answered in: "Weitere Treffer anzeigen" asks again and must continue
    # exactly where the first page ended.
    return sorted(entries, key=lambda e: (-e.score, len(e.display_name), e.display_name.casefold(), e.uid))
