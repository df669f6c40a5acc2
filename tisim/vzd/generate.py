"""Generate realistic VZD flat-list entries as LDIF (deterministic for a seed).

Entries follow shared/research/vzd.md: flat ``uid=<uuid>,dc=data,dc=vzd`` entries, ``cn`` = ``displayName``,
``sn`` = ``displayName`` for institutions, ``-`` for unused optional values, komLeData/kimData consistent with
``mail``, professionOID/entryType/specialization from the gematik code systems, 0–3 KIM addresses with
versions 1.0 / 1.5 / 1.5+, and encryption certificates from a small reused pool (see certs.py).

A few fixed entries are always present (demo and tests rely on them): "Praxis Dr. Müller", "Klinikum Demo",
three certificate test cases, a KIM 2.0 practice published in kimData only and a physician (HBA) with a
specialty from the physicians' own code system, both in Weißenfels.

Specialties follow the card type: SMC-B entries ``urn:psc:`` with the practice-setting code systems, HBA
entries ``urn:as:`` with the author-specialty code systems (Facharzttitel der Ärztekammern …).

Longer than ~400 lines on purpose: it is mostly data (names, places, code-system values) beside the
few functions that combine them.
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tisim.vzd.certs import TELEMATIK_ID_LENGTH, PoolCert, make_pool

BASE_DN = "dc=data,dc=vzd"
UID_NAMESPACE = uuid.UUID("0f4a2a8e-55a3-4c59-9d5e-1f3f5d2b7c10")
# Bump when the generated data changes: prepared directories are keyed by it and rebuilt.
DATA_VERSION = 2
PSC_AERZTLICH = "urn:psc:1.3.6.1.4.1.19376.3.276.1.5.4"
PSC_NICHT_AERZTLICH = "urn:psc:1.3.6.1.4.1.19376.3.276.1.5.5"
PSC_ZAHN = "urn:psc:1.2.276.0.76.5.494"
# HBA (urn:as): Facharzttitel der Ärztekammern, Qualifikationen nicht ärztlicher Autoren, zahnärztliche Autoren
AS_FACHARZT = "urn:as:1.2.276.0.76.5.514"
AS_NICHT_AERZTLICH = "urn:as:1.3.6.1.4.1.19376.3.276.1.5.11"
AS_ZAHN = "urn:as:1.2.276.0.76.5.492"
# The hospital of the demo: the simulated Konnektor's SMC-B carries this Telematik-ID in the demo (scripts/demo.sh),
# so the simulated Account Manager finds the entry to publish the addresses it registers in.
KLINIKUM_DEMO_TELEMATIK_ID = "5-2-0000000000004711"

SURNAMES = (
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer Richter Klein "
    "Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt Werner Schmitz Krause "
    "Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter Mayer Huber Kaiser Fuchs Peters Lang Scholz "
    "Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther Frank Berger Winkler Roth Beck Lorenz Baumann "
    "Franke Albrecht Schuster Simon Ludwig Böhm Winter Kraus Martin Schumacher Krämer Vogt Stein Jäger Otto Sommer "
    "Groß Seidel Heinrich Brandt Haas Schreiber Graf Schulte Dietrich Ziegler Kuhn Kühn Pohl Engel Horn Busch "
    "Bergmann Thomas Voigt Sauer Arnold Wolff Pfeiffer Löwe Öztürk Yılmaz Nowak Kowalski Büttner Füßer Strauß"
).split()
GIVEN_NAMES = (
    "Anna Maria Sophie Julia Laura Lena Katharina Sarah Lisa Hannah Christina Sabine Petra Monika Ursula Andrea "
    "Claudia Stefanie Birgit Jürgen Hans Peter Michael Thomas Andreas Stefan Klaus Wolfgang Frank Christian Markus "
    "Martin Alexander Jan Tobias Matthias Daniel Sebastian Jörg Uwe Günter Björn Sören Ömer Zoë Renée Chantal "
    "Friederike Elisabeth Dorothea Heinz-Jürgen Karl-Heinz Anne-Kathrin"
).split()
TITLES = {
    "arzt": ["", "", "Dr. med.", "Dr. med.", "Dr.", "Prof. Dr. med."],
    "arztpraxis": ["", "", "Dr. med.", "Dr. med.", "Dr.", "Prof. Dr. med."],
    "zahnarzt": ["", "Dr. med. dent."],
    "zahnarztpraxis": ["", "Dr. med. dent."],
    "psychotherapeut": ["", "Dipl.-Psych.", "Dr."],
    "psychotherapiepraxis": ["", "Dipl.-Psych.", "Dr."],
    "apotheker": ["", "Dr."],
}
# (city, Bundesland, first postal code, count of postal codes)
CITIES = [
    ("Berlin", "Berlin", 10115, 90),
    ("Hamburg", "Hamburg", 20095, 60),
    ("München", "Bayern", 80331, 70),
    ("Köln", "Nordrhein", 50667, 50),
    ("Frankfurt am Main", "Hessen", 60306, 40),
    ("Stuttgart", "Baden-Württemberg", 70173, 30),
    ("Düsseldorf", "Nordrhein", 40210, 30),
    ("Leipzig", "Sachsen", 4103, 20),
    ("Dortmund", "Westfalen-Lippe", 44135, 20),
    ("Essen", "Nordrhein", 45127, 20),
    ("Bremen", "Bremen", 28195, 20),
    ("Dresden", "Sachsen", 1067, 20),
    ("Hannover", "Niedersachsen", 30159, 20),
    ("Nürnberg", "Bayern", 90402, 20),
    ("Duisburg", "Nordrhein", 47051, 10),
    ("Bochum", "Westfalen-Lippe", 44787, 10),
    ("Wuppertal", "Nordrhein", 42103, 10),
    ("Bielefeld", "Westfalen-Lippe", 33602, 10),
    ("Bonn", "Nordrhein", 53111, 10),
    ("Münster", "Westfalen-Lippe", 48143, 10),
    ("Mannheim", "Baden-Württemberg", 68159, 10),
    ("Karlsruhe", "Baden-Württemberg", 76131, 10),
    ("Augsburg", "Bayern", 86150, 10),
    ("Wiesbaden", "Hessen", 65183, 10),
    ("Mönchengladbach", "Nordrhein", 41061, 8),
    ("Gelsenkirchen", "Westfalen-Lippe", 45879, 8),
    ("Braunschweig", "Niedersachsen", 38100, 8),
    ("Kiel", "Schleswig-Holstein", 24103, 8),
    ("Chemnitz", "Sachsen", 9111, 8),
    ("Aachen", "Nordrhein", 52062, 8),
    ("Halle (Saale)", "Sachsen-Anhalt", 6108, 8),
    ("Magdeburg", "Sachsen-Anhalt", 39104, 8),
    ("Freiburg im Breisgau", "Baden-Württemberg", 79098, 8),
    ("Krefeld", "Nordrhein", 47798, 6),
    ("Lübeck", "Schleswig-Holstein", 23552, 6),
    ("Mainz", "Rheinland-Pfalz", 55116, 6),
    ("Erfurt", "Thüringen", 99084, 6),
    ("Rostock", "Mecklenburg-Vorpommern", 18055, 6),
    ("Kassel", "Hessen", 34117, 6),
    ("Saarbrücken", "Saarland", 66111, 6),
    ("Potsdam", "Brandenburg", 14467, 6),
    ("Oldenburg", "Niedersachsen", 26121, 4),
    ("Osnabrück", "Niedersachsen", 49074, 4),
    ("Heidelberg", "Baden-Württemberg", 69115, 4),
    ("Regensburg", "Bayern", 93047, 4),
    ("Würzburg", "Bayern", 97070, 4),
    ("Göttingen", "Niedersachsen", 37073, 4),
    ("Jena", "Thüringen", 7743, 3),
    ("Schwerin", "Mecklenburg-Vorpommern", 19053, 3),
    ("Cottbus", "Brandenburg", 3046, 3),
    ("Garmisch-Partenkirchen", "Bayern", 82467, 1),
    ("Weißenfels", "Sachsen-Anhalt", 6667, 1),
    ("Bad Tölz", "Bayern", 83646, 1),
]
STREETS = (
    "Hauptstraße|Schulstraße|Bahnhofstraße|Gartenstraße|Dorfstraße|Bergstraße|Lindenstraße|Kirchstraße|"
    "Waldstraße|Friedrichstraße|Goethestraße|Schillerstraße|Mühlenweg|Am Markt|Rathausplatz|Marktplatz|"
    "Königsallee|Brückenstraße|Talstraße|Rosenweg|Ringstraße|Poststraße|Kaiserstraße|Wilhelmstraße|"
    "Luisenstraße|Mozartstraße|Beethovenstraße|Sonnenstraße|Weißdornweg|Am Krankenhaus|Klinikstraße|"
    "Universitätsstraße|Parkstraße|Lessingstraße|Jahnstraße|Feldstraße|Heinrich-Heine-Straße|Gneisenaustraße"
).split("|")
PHARMACY_NAMES = (
    "Löwen Stern Rathaus Adler Engel Hirsch Sonnen Linden Markt Bahnhof Park Hof Schloss Stadt Rosen Einhorn "
    "Mohren Kronen Brunnen Berg Tal Post Glück Falken"
).split()
HOSPITAL_PATTERNS = [
    "Klinikum {city}",
    "Städtisches Klinikum {city}",
    "St.-Marien-Krankenhaus {city}",
    "St.-Josef-Hospital {city}",
    "Evangelisches Krankenhaus {city}",
    "Universitätsklinikum {city}",
    "Kreiskrankenhaus {city}",
    "Helios Klinik {city}",
    "Fachklinik für Psychiatrie {city}",
]
HOSPITAL_DEPARTMENTS = [
    ("kardiologie", "Klinik für Kardiologie"),
    ("aufnahme", "Zentrale Notaufnahme"),
    ("chirurgie", "Klinik für Allgemeinchirurgie"),
    ("innere", "Klinik für Innere Medizin"),
    ("radiologie", "Institut für Radiologie"),
    ("sozialdienst", "Sozialdienst"),
    ("labor", "Zentrallabor"),
    ("geburtshilfe", "Geburtshilfe"),
]
INSURERS = [
    "AOK Nordost",
    "AOK Bayern",
    "AOK Rheinland/Hamburg",
    "AOK Niedersachsen",
    "Techniker Krankenkasse",
    "BARMER",
    "DAK-Gesundheit",
    "KKH Kaufmännische Krankenkasse",
    "hkk Krankenkasse",
    "IKK classic",
    "BKK firmus",
    "Knappschaft",
    "SBK Siemens-Betriebskrankenkasse",
    "HEK Hanseatische Krankenkasse",
]
PROVIDER_DOMAINS = ["akquinet", "bitmarck", "tkt", "cgm", "ihk", "arv", "medisign", "t-systems"]
# ärztliche Fachrichtungen (code system 1.3.6.1.4.1.19376.3.276.1.5.4) used for practices and physicians
DOCTOR_SPECIALTIES = (
    "ALLG ALLG ALLG ALLG INNE INNE KARD GAST PNEU KIJU FRAU AUGE HNOH ORTH CHIR HAUT NEUR PSYC UROL RADI ANAE NUKL PATH"
).split()
HOSPITAL_SPECIALTIES = "GESU GESU KARD CHIR INNE RADI ANAE NOTF".split()
# A physician's Facharzttitel for the practice specialty drawn above (same draw, so the data stays seed-stable).
FACHARZT = {
    "ALLG": "011001", "INNE": "141002", "KARD": "141114", "GAST": "141112", "PNEU": "141116", "KIJU": "151002",
    "FRAU": "081002", "AUGE": "051001", "HNOH": "091001", "ORTH": "071103", "CHIR": "071001", "HAUT": "101001",
    "NEUR": "221001", "PSYC": "291002", "UROL": "371001", "RADI": "311002", "ANAE": "021001", "NUKL": "231001",
    "PATH": "251003",
}  # fmt: skip

VERSIONS = ["1.0", "1.5", "1.5", "1.5+", "1.5+"]


@dataclass
class Kind:
    name: str
    weight: int
    profession_oid: str
    entry_type: str
    tid_prefix: str
    personal: bool


KINDS = [
    Kind("arzt", 28, "1.2.276.0.76.4.30", "1", "1-1", True),
    Kind("arztpraxis", 24, "1.2.276.0.76.4.50", "3", "1-20", False),
    Kind("zahnarzt", 7, "1.2.276.0.76.4.31", "1", "2-01", True),
    Kind("zahnarztpraxis", 7, "1.2.276.0.76.4.51", "3", "2-2", False),
    Kind("psychotherapeut", 5, "1.2.276.0.76.4.46", "1", "4-1", True),
    Kind("psychotherapiepraxis", 3, "1.2.276.0.76.4.52", "3", "4-2", False),
    Kind("apotheke", 8, "1.2.276.0.76.4.54", "3", "3-012", False),
    Kind("apotheker", 3, "1.2.276.0.76.4.32", "1", "3-013", True),
    Kind("krankenhaus", 4, "1.2.276.0.76.4.53", "3", "5-2-", False),
    Kind("krankenkasse", 1, "1.2.276.0.76.4.59", "5", "8-01-", False),
    Kind("physiotherapie", 4, "1.2.276.0.76.4.247", "3", "10-67.247-", False),
    Kind("pflege", 3, "1.2.276.0.76.4.245", "3", "10-67.245-", False),
]
KIND_BY_NAME = {k.name: k for k in KINDS}


@dataclass
class Entry:
    telematik_id: str
    kind: Kind
    display_name: str
    sn: str = "-"
    given_name: str = "-"
    title: str = "-"
    organization: str = "-"
    street: str = "-"
    postal_code: str = "-"
    city: str = "-"
    state: str = "-"
    specializations: list[str] = field(default_factory=list)
    mails: list[tuple[str, str]] = field(default_factory=list)  # (address, version)
    app_tags: dict[str, str] = field(default_factory=dict)  # address → "eAU|eEB" (kimData only)
    kom_le_data: bool = True  # False: a provider that publishes kimData only
    certs: list[bytes] = field(default_factory=list)
    domain_id: str = "-"
    change_date_time: str = "2026-11-01T10:00:00.000000+01:00"

    @property
    def uid(self) -> str:
        return str(uuid.uuid5(UID_NAMESPACE, self.telematik_id))

    @property
    def dn(self) -> str:
        return f"uid={self.uid},{BASE_DN}"


def _slug(text: str) -> str:
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "ı": "i", "é": "e", "ë": "e"})
    out = []
    for ch in text.lower().translate(table):
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")


def _telematik_id(prefix: str, number: int) -> str:
    digits = TELEMATIK_ID_LENGTH - len(prefix)
    return f"{prefix}{number:0{digits}d}"


class Generator:
    def __init__(self, seed: int = 1, *, pool: list[PoolCert] | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.pool = pool if pool is not None else make_pool(seed)
        self.valid = [p for p in self.pool if p.kind == "valid"]
        self.by_kind = {k: next(p for p in self.pool if p.kind == k) for k in ("expired", "mismatch", "broken")}
        self._kind_weights = [k.weight for k in KINDS]

    # -- fixed entries -----------------------------------------------------------------------------------------
    def fixed_entries(self) -> list[Entry]:
        valid = self.valid[1]
        praxis = Entry(
            telematik_id=_telematik_id("1-20", 4711),
            kind=KIND_BY_NAME["arztpraxis"],
            display_name="Praxis Dr. Müller",
            organization="Hausarztpraxis Dr. med. Anna Müller",
            street="Friedrichstraße 123",
            postal_code="10117",
            city="Berlin",
            state="Berlin",
            specializations=[f"{PSC_AERZTLICH}:ALLG"],
            mails=[("praxis.mueller@praxis-mueller.kim.telematik-test", "1.5+")],
            domain_id="724711000",
        )
        praxis.certs = [valid.for_telematik_id(praxis.telematik_id)]
        klinikum = Entry(
            telematik_id=KLINIKUM_DEMO_TELEMATIK_ID,
            kind=KIND_BY_NAME["krankenhaus"],
            display_name="Klinikum Demo",
            organization="Klinikum Demo gGmbH",
            street="Am Krankenhaus 1",
            postal_code="10249",
            city="Berlin",
            state="Berlin",
            specializations=[f"{PSC_AERZTLICH}:GESU", f"{PSC_AERZTLICH}:KARD"],
            mails=[
                ("kardiologie@klinikum-demo.kim.telematik-test", "1.5+"),
                ("aufnahme@klinikum-demo.kim.telematik-test", "1.5"),
            ],
            domain_id="261104711",
        )
        klinikum.certs = [self.valid[0].for_telematik_id(klinikum.telematik_id)]
        aerztehaus = Entry(
            telematik_id=_telematik_id("1-20", 4712),
            kind=KIND_BY_NAME["arztpraxis"],
            display_name="Ärztehaus Groß",
            organization="Ärztehaus Groß MVZ GmbH",
            street="Große Burgstraße 12",
            postal_code="06667",
            city="Weißenfels",
            state="Sachsen-Anhalt",
            specializations=[f"{PSC_AERZTLICH}:ALLG", f"{PSC_AERZTLICH}:INNE"],
            mails=[("aerztehaus.gross@tisim.kim.telematik-test", "2.0")],
            app_tags={"aerztehaus.gross@tisim.kim.telematik-test": "eAU|eEB"},
            kom_le_data=False,
        )
        aerztehaus.certs = [self.valid[2].for_telematik_id(aerztehaus.telematik_id)]
        kardiologin = Entry(
            telematik_id=_telematik_id("1-1", 4712),
            kind=KIND_BY_NAME["arzt"],
            display_name="Groß, Sabine",
            sn="Groß",
            given_name="Sabine",
            title="Dr. med.",
            organization="Ärztehaus Groß",
            street="Große Burgstraße 12",
            postal_code="06667",
            city="Weißenfels",
            state="Sachsen-Anhalt",
            specializations=[f"{AS_FACHARZT}:141114"],
            mails=[("sabine.gross@tisim.kim.telematik-test", "1.5+")],
        )
        kardiologin.certs = [self.valid[3].for_telematik_id(kardiologin.telematik_id)]
        out = [praxis, klinikum]
        for i, (kind, label) in enumerate(
            (("broken", "Defekt"), ("expired", "Abgelaufen"), ("mismatch", "Fremd-ID")), start=1
        ):
            entry = Entry(
                telematik_id=_telematik_id("1-20", 9900 + i),
                kind=KIND_BY_NAME["arztpraxis"],
                display_name=f"Zertifikatstest {label}",
                street="Teststraße 1",
                postal_code="99999",
                city="Prüfstadt",
                specializations=[f"{PSC_AERZTLICH}:ALLG"],
                mails=[(f"zertifikatstest-{_slug(label)}@tisim.kim.telematik-test", "1.5")],
            )
            entry.certs = [self.by_kind[kind].for_telematik_id(entry.telematik_id)]
            out.append(entry)
        return [*out, aerztehaus, kardiologin, *self._demo_recipients()]

    def _demo_recipients(self) -> list[Entry]:
        """The other addressees of the demo's letters to sign (signing's demo seed): with a valid certificate, so
        the signed letters pass the outbox's pre-flight and travel on."""
        rows = [
            ("arztpraxis", 4713, "Hausarztpraxis Weber", "hausarzt.weber@praxis-weber.kim.telematik-test", "Leipzig"),
            (
                "arztpraxis",
                4714,
                "Kardiologische Praxis Öztürk",
                "kardiologie.oeztuerk@praxis-oeztuerk.kim.telematik-test",
                "Berlin",
            ),
            ("krankenkasse", 4715, "Krankenkasse Demo", "eau@kasse-demo.kim.telematik-test", "Berlin"),
            ("krankenhaus", 4716, "Reha-Klinik Seeblick", "aufnahme@reha-seeblick.kim.telematik-test", "Waren"),
        ]
        out = []
        for index, (kind, number, name, mail, city) in enumerate(rows):
            prefix = {"arztpraxis": "1-20", "krankenkasse": "8-01-", "krankenhaus": "5-2-"}[kind]
            entry = Entry(
                telematik_id=_telematik_id(prefix, number),
                kind=KIND_BY_NAME[kind],
                display_name=name,
                organization=name,
                street="Demoweg 1",
                postal_code="10117",
                city=city,
                mails=[(mail, "1.5+")],
            )
            entry.certs = [self.valid[index % len(self.valid)].for_telematik_id(entry.telematik_id)]
            out.append(entry)
        return out

    # -- random entries ----------------------------------------------------------------------------------------
    def _address(self, entry: Entry) -> None:
        rng = self.rng
        city, state, first_plz, count = rng.choice(CITIES)
        entry.city = city
        entry.state = state if rng.random() < 0.7 else "-"
        entry.postal_code = f"{first_plz + rng.randrange(count) * 2:05d}"
        entry.street = f"{rng.choice(STREETS)} {rng.randint(1, 180)}"

    def _person_name(self, kind: str) -> tuple[str, str, str]:
        rng = self.rng
        sn = rng.choice(SURNAMES)
        if rng.random() < 0.1:
            sn = f"{sn}-{rng.choice(SURNAMES)}"
        return rng.choice(GIVEN_NAMES), sn, rng.choice(TITLES.get(kind, [""]))

    def entry(self, n: int) -> Entry:
        rng = self.rng
        kind = rng.choices(KINDS, weights=self._kind_weights)[0]
        entry = Entry(telematik_id=_telematik_id(kind.tid_prefix, 100000 + n), kind=kind, display_name="")
        self._address(entry)
        given, sn, title = self._person_name(kind.name)
        slug_city = _slug(entry.city)
        local = ""
        if kind.personal:
            entry.display_name = f"{sn}, {given}"
            entry.sn, entry.given_name, entry.title = sn, given, title or "-"
            if kind.name == "arzt":
                entry.specializations = [f"{AS_FACHARZT}:{FACHARZT[rng.choice(DOCTOR_SPECIALTIES)]}"]
                if rng.random() < 0.4:
                    entry.organization = f"Praxis {title + ' ' if title else ''}{given} {sn}".strip()
            elif kind.name == "psychotherapeut":
                entry.specializations = [f"{AS_NICHT_AERZTLICH}:82"]  # Psychologischer Psychotherapeut
            elif kind.name == "zahnarzt":
                entry.specializations = [f"{AS_ZAHN}:1"]
            elif kind.name == "apotheker":
                entry.specializations = [f"{AS_NICHT_AERZTLICH}:70"]
            local = f"{_slug(given)}.{_slug(sn)}"
        else:
            name = f"{title + ' ' if title else ''}{given} {sn}"
            if kind.name == "arztpraxis":
                pattern = rng.random()
                if pattern < 0.6:
                    entry.display_name = f"Praxis {name}"
                elif pattern < 0.8:
                    entry.display_name = f"Gemeinschaftspraxis {sn} & {rng.choice(SURNAMES)}"
                else:
                    centre = rng.choice(("Gesundheitszentrum", "Ärztehaus", "Medicum"))
                    entry.display_name = f"MVZ {centre} {entry.city}"
                codes = rng.sample(DOCTOR_SPECIALTIES, k=rng.choice((1, 1, 1, 2)))
                entry.specializations = [f"{PSC_AERZTLICH}:{c}" for c in dict.fromkeys(codes)]
            elif kind.name == "zahnarztpraxis":
                entry.display_name = f"Zahnarztpraxis {name}"
                entry.specializations = [f"{PSC_ZAHN}:MZAH"]
            elif kind.name == "psychotherapiepraxis":
                entry.display_name = f"Psychotherapeutische Praxis {given} {sn}"
                entry.specializations = [f"{PSC_NICHT_AERZTLICH}:PST"]
            elif kind.name == "apotheke":
                entry.display_name = f"{rng.choice(PHARMACY_NAMES)}-Apotheke {entry.city}"
                entry.organization = f"Inh. Apotheker/-in {given} {sn} e.K."
                entry.specializations = [rng.choice(("10", "10", "10", "20", "30", "40"))]
            elif kind.name == "krankenhaus":
                entry.display_name = rng.choice(HOSPITAL_PATTERNS).format(city=entry.city)
                if rng.random() < 0.5:
                    entry.display_name += f" {rng.choice(('Nord', 'Süd', 'West', 'Ost', 'Mitte'))}"
                entry.organization = f"{entry.display_name} gGmbH"
                entry.specializations = [f"{PSC_AERZTLICH}:{c}" for c in rng.sample(HOSPITAL_SPECIALTIES, k=2)]
                entry.specializations = list(dict.fromkeys(entry.specializations))
            elif kind.name == "krankenkasse":
                entry.display_name = rng.choice(INSURERS)
                entry.organization = f"{entry.display_name} – Geschäftsstelle {entry.city}"
            elif kind.name == "physiotherapie":
                entry.display_name = f"Physiotherapie {sn}"
                entry.specializations = [f"{PSC_AERZTLICH}:REHA"]
            elif kind.name == "pflege":
                motto = rng.choice(("Sonnenschein", "Lebenswert", "Hand in Hand"))
                entry.display_name = f"Pflegedienst {motto} {entry.city}"
                entry.specializations = [f"{PSC_NICHT_AERZTLICH}:PFL"]
            entry.sn = entry.display_name
            local = _slug(entry.display_name)[:40].strip("-")
        entry.domain_id = str(rng.randrange(10**8, 10**9))
        entry.change_date_time = (
            f"2026-{rng.randint(1, 10):02d}-{rng.randint(1, 28):02d}T{rng.randint(6, 20):02d}:00:00.000000+01:00"
        )
        # KIM addresses: institutions mostly have some, people more often none.
        counts = (0, 1, 1, 1) if kind.personal else (0, 1, 1, 1, 2, 2, 3)
        count = rng.choice(counts)
        if kind.name == "krankenhaus":
            count = rng.randint(1, 3)
        domain = f"{rng.choice(PROVIDER_DOMAINS)}.kim.telematik-test"
        first_dept = rng.randrange(len(HOSPITAL_DEPARTMENTS) - 3) if kind.name == "krankenhaus" else 0
        for j in range(count):
            if kind.name == "krankenhaus":
                dept, _label = HOSPITAL_DEPARTMENTS[first_dept + j]
                address = f"{dept}.{n}@{slug_city}-{_slug(entry.display_name)[:20].strip('-')}.kim.telematik-test"
            else:
                suffix = "" if j == 0 else f"-{j + 1}"
                address = f"{local}{suffix}.{n}@{domain}"
            version = rng.choice(VERSIONS)
            # Newer providers: some KIM 2.0 addresses, published in kimData only (no draw: the data stays stable).
            if (n + j) % 40 == 3:
                version = "2.0"
                entry.kom_le_data = False
                if n % 3 == 0:
                    entry.app_tags[address] = "eAU|eEB"
            entry.mails.append((address, version))
        # Certificates: usually one, sometimes an RSA + EC pair; rarely expired, foreign or broken.
        roll = rng.random()
        if roll < 0.004:
            special = self.by_kind["broken"]
        elif roll < 0.012:
            special = self.by_kind["expired"]
        elif roll < 0.016:
            special = self.by_kind["mismatch"]
        else:
            special = None
        if special is not None:
            entry.certs = [special.for_telematik_id(entry.telematik_id)]
        else:
            picks = rng.sample(self.valid, k=2 if rng.random() < 0.1 else 1)
            entry.certs = [p.for_telematik_id(entry.telematik_id) for p in picks]
        return entry

    def entries(self, count: int) -> Iterator[Entry]:
        fixed = self.fixed_entries()
        yield from fixed[:count]
        for n in range(max(0, count - len(fixed))):
            yield self.entry(n)


# -- LDIF -----------------------------------------------------------------------------------------------------


def _needs_base64(value: str) -> bool:
    if not value:
        return False
    if value[0] in " :<" or value[-1] == " ":
        return True
    return not value.isascii() or any(ch in value for ch in "\r\n\0")


def _line(attr: str, value: str | bytes) -> str:
    if isinstance(value, bytes):
        return f"{attr}:: {base64.b64encode(value).decode()}\n"
    if _needs_base64(value):
        return f"{attr}:: {base64.b64encode(value.encode()).decode()}\n"
    return f"{attr}: {value}\n"


def entry_ldif(entry: Entry) -> str:
    # Lines are left unfolded: RFC 2849 allows long lines and slapadd reads them fine.
    parts = [
        f"dn: {entry.dn}\n",
        "objectClass: top\n",
        "objectClass: vzd-komleview\n",
        f"uid: {entry.uid}\n",
        f"telematikID: {entry.telematik_id}\n",
        _line("displayName", entry.display_name),
        _line("cn", entry.display_name),
        _line("sn", entry.sn if entry.kind.personal or entry.sn != "-" else entry.display_name),
    ]
    if entry.kind.personal:
        parts.append(_line("givenName", entry.given_name))
    parts += [
        _line("title", entry.title),
        _line("organization", entry.organization),
        _line("street", entry.street),
        _line("postalCode", entry.postal_code),
        _line("l", entry.city),
        _line("st", entry.state),
        "countryCode: DE\n",
        f"professionOID: {entry.kind.profession_oid}\n",
        f"entryType: {entry.kind.entry_type}\n",
        f"domainID: {entry.domain_id}\n",
        f"personalEntry: {'TRUE' if entry.kind.personal else 'FALSE'}\n",
        "dataFromAuthority: TRUE\n",
        f"changeDateTime: {entry.change_date_time}\n",
    ]
    parts += [_line("specialization", s) for s in entry.specializations]
    # Values of one attribute must be contiguous: slapadd keeps only the last run of a repeated attribute.
    parts += [f"mail: {address}\n" for address, _ in entry.mails]
    if entry.kom_le_data:
        parts += [f"komLeData: {version},{address}\n" for address, version in entry.mails]
    parts += [
        f"kimData: {address},{version}{',' + entry.app_tags[address] if address in entry.app_tags else ''}\n"
        for address, version in entry.mails
    ]
    parts += [_line("userCertificate;binary", der) for der in entry.certs]
    parts.append("\n")
    return "".join(parts)


BASE_ENTRY = f"dn: {BASE_DN}\nobjectClass: top\nobjectClass: domain\ndc: data\n\n"


def write_ldif(out: IO[str], count: int, *, seed: int = 1) -> int:
    gen = Generator(seed)
    out.write(f"# tisim VZD test data: {count} entries, seed {seed}\n\n")
    out.write(BASE_ENTRY)
    written = 0
    for entry in gen.entries(count):
        out.write(entry_ldif(entry))
        written += 1
    return written


def generate_file(path: Path, count: int, *, seed: int = 1) -> int:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        written = write_ldif(fh, count, seed=seed)
    tmp.replace(path)
    return written
