"""From what the user typed to one LDAP filter. Pure functions, no I/O.

Free text is split into tokens: a 5-digit postal code, a Telematik-ID (``<digits>-…``), a KIM address (contains
``@``), and name/organisation/city terms. Terms need at least 3 characters (the directory's substring index
starts at 3; shorter contains-searches would scan everything), shorter ones are reported as ignored. Every term
becomes an OR over *indexed* attributes and over its spellings (ß/ss, ä/ae …, see folding.py; the same in the
name, organisation and place filters), the terms are AND-ed, so "Müller Kardiologie Berlin" means: something
matches Müller, something matches Kardiologie (a specialty word also selects the specialty code), and something
matches Berlin.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field, replace

from directory import codes
from directory import ldapfilter as f
from directory.folding import MAX_SPELLINGS, spellings

MIN_TERM = 3
MAX_TERMS = 8
POSTAL_CODE = re.compile(r"^\d{5}$")
POSTAL_PREFIX = re.compile(r"^\d{3,4}$")
TELEMATIK_ID = re.compile(r"^\d{1,2}-[0-9A-Za-z][0-9A-Za-z.\-]*$")
SPLIT = re.compile(r"[\s,;]+")
# Spellings over the whole query (see folding.py): with many terms each gets fewer, never fewer than two.
MAX_QUERY_SPELLINGS = 24
MAX_SPECIALTIES = 12  # as many eq lookups as before HBA codes joined the tables

# Attributes a name-ish term is looked up in; all carry an eq,sub index in the directory.
TERM_ATTRIBUTES = ("displayName", "organization", "l", "mail")
NAME_ATTRIBUTES = ("displayName", "cn", "sn", "givenName")
ORG_ATTRIBUTES = ("organization", "displayName")


@dataclass
class Criteria:
    """What the search form delivers (all optional)."""

    q: str = ""
    name: str = ""
    organization: str = ""
    place: str = ""  # city or postal code
    specialty: str = ""  # codes.Specialty.key
    kind: str = ""  # codes.Kind.key
    kim_only: bool = False


@dataclass
class ParsedQuery:
    terms: list[str] = field(default_factory=list)  # free-text name/org/city terms
    postal_codes: list[str] = field(default_factory=list)
    postal_prefixes: list[str] = field(default_factory=list)
    telematik_ids: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # too short to search for
    surplus: list[str] = field(default_factory=list)  # searchable, but beyond MAX_TERMS


def normalize(text: str) -> str:
    """What was typed or pasted, as the directory stores it: composed (NFKC) and without invisible characters.

    Text pasted from a PDF, a Mac or a web page carries decomposed umlauts ("u" + U+0308), soft hyphens, zero-width
    spaces or full-width letters: unchanged, "Mül\u00adler" finds nothing and a decomposed "Müller" misses its
    "Mueller" spelling and its ranking.
    """
    return "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")


def _normalized(criteria: Criteria) -> Criteria:
    return replace(
        criteria,
        q=normalize(criteria.q),
        name=normalize(criteria.name),
        organization=normalize(criteria.organization),
        place=normalize(criteria.place),
    )


def parse_free_text(text: str) -> ParsedQuery:
    parsed = ParsedQuery()
    for raw in SPLIT.split(text.strip()):
        token = raw.strip()
        if not token:
            continue
        if POSTAL_CODE.fullmatch(token):
            parsed.postal_codes.append(token)
        elif POSTAL_PREFIX.fullmatch(token):
            parsed.postal_prefixes.append(token)
        elif TELEMATIK_ID.fullmatch(token):
            parsed.telematik_ids.append(token)
        elif "@" in token and len(token) >= MIN_TERM:
            parsed.addresses.append(token.lower())
        elif len(token) >= MIN_TERM:
            parsed.terms.append(token)
        else:
            parsed.ignored.append(token)
    # A pathological query with dozens of words gets the first few only: each term costs an indexed lookup.
    parsed.surplus = parsed.terms[MAX_TERMS:]
    parsed.terms = parsed.terms[:MAX_TERMS]
    return parsed


def _variants(term: str, *, terms: int = 1) -> list[str]:
    """The term's spellings: "Groß" and "Gross" both become groß | gross, "Müller" also finds "mueller"."""
    limit = max(2, min(MAX_SPELLINGS, MAX_QUERY_SPELLINGS // max(1, terms)))
    return spellings(term, limit=limit, min_length=MIN_TERM)


def term_filter(term: str, *, terms: int = 1) -> str:
    parts = [f.contains(attr, v) for v in _variants(term, terms=terms) for attr in TERM_ATTRIBUTES]
    # Each is an eq-indexed lookup, cheap; the cap keeps a word like "medizin" from listing hundreds.
    for spec in codes.specialties_matching(term)[:MAX_SPECIALTIES]:
        parts += [f.eq("specialization", value) for value in spec.ldap_values()]
    for kind in codes.kinds_for_word(term):
        parts += [f.eq("professionOID", oid) for oid in kind.oids]
    return f.or_(*parts)


@dataclass
class BuiltFilter:
    ldap_filter: str | None  # None: nothing searchable
    parsed: ParsedQuery
    ignored: list[str]


def build_filter(criteria: Criteria) -> BuiltFilter:
    criteria = _normalized(criteria)
    parsed = parse_free_text(criteria.q)
    ignored = list(parsed.ignored)
    required: list[str] = []  # at least one indexed condition must be here
    extra: list[str] = []

    # The structured text fields count as terms too: together they share the spelling budget.
    text_fields = [v for v in (criteria.name, criteria.organization, criteria.place) if v.strip()]
    terms = len(parsed.terms) + len(text_fields)
    required += [term_filter(t, terms=terms) for t in parsed.terms]
    required += [f.eq("postalCode", p) for p in parsed.postal_codes]
    required += [f.prefix("postalCode", p) for p in parsed.postal_prefixes]
    required += [f.prefix("telematikID", t) for t in parsed.telematik_ids]
    required += [f.prefix("mail", a) for a in parsed.addresses]

    def text_field(value: str, attrs: tuple[str, ...]) -> None:
        value = value.strip()
        if not value:
            return
        if len(value) < MIN_TERM:
            ignored.append(value)
            return
        required.append(f.or_(*[f.contains(a, v) for v in _variants(value, terms=terms) for a in attrs]))

    text_field(criteria.name, NAME_ATTRIBUTES)
    text_field(criteria.organization, ORG_ATTRIBUTES)
    place = criteria.place.strip()
    if POSTAL_CODE.fullmatch(place):
        required.append(f.eq("postalCode", place))
    elif place.isdigit() and len(place) >= MIN_TERM:
        required.append(f.prefix("postalCode", place))
    else:
        text_field(place, ("l",))

    spec = codes.specialty(criteria.specialty) if criteria.specialty else None
    if spec:
        required.append(f.or_(*[f.eq("specialization", v) for v in spec.ldap_values()]))
    kind = codes.KIND_BY_KEY.get(criteria.kind) if criteria.kind else None
    if kind:
        required.append(f.or_(*[f.eq("professionOID", oid) for oid in kind.oids]))
    if criteria.kim_only:
        # Unindexed presence test: only ever AND-ed with at least one indexed condition.
        extra.append(f.present("mail"))

    if not required:
        return BuiltFilter(None, parsed, ignored)
    return BuiltFilter(f.and_(*required, *extra), parsed, ignored)


def search_words(criteria: Criteria) -> list[str]:
    """Words used for ranking (casefolded): free-text terms and the structured text fields."""
    criteria = _normalized(criteria)
    parsed = parse_free_text(criteria.q)
    words = parsed.terms + parsed.postal_codes + parsed.telematik_ids + parsed.addresses
    words += [v for v in (criteria.name, criteria.organization, criteria.place) if len(v.strip()) >= MIN_TERM]
    return [w.strip().casefold() for w in words]
