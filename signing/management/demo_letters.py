"""The demo's letters for the signing queue: discharge letters as small real PDFs (written byte by byte, no PDF
library needed), an eAU as XML and a findings report as text — what a ward writes for its physician to sign."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoLetter:
    document_type: str  # a code of signing.doctypes
    patient_reference: str
    subject: str
    filename: str
    content: bytes
    recipients: tuple[str, ...]
    body: str = ""


def letter_pdf(title: str, lines: list[str]) -> bytes:
    """A one-page A4 PDF: a bold title and lines of Helvetica text (WinAnsiEncoding, so umlauts show), with a
    correct cross-reference table so that pyhanko, pdf.js and the Konnektor read it."""

    def literal(text: str) -> bytes:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        return b"(" + escaped.encode("cp1252", "replace") + b")"

    ops = [b"BT /F2 15 Tf 72 770 Td " + literal(title) + b" Tj ET", b"BT /F1 11 Tf 14 TL 72 740 Td"]
    ops += [literal(line) + b" Tj T*" for line in lines]
    ops.append(b"ET")
    stream = b"\n".join(ops)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R /F2 6 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


PRAXIS_MUELLER = "praxis.mueller@praxis-mueller.kim.telematik-test"
PRAXIS_WEBER = "hausarzt.weber@praxis-weber.kim.telematik-test"
PRAXIS_OEZTUERK = "kardiologie.oeztuerk@praxis-oeztuerk.kim.telematik-test"
KASSE = "eau@kasse-demo.kim.telematik-test"
REHA = "aufnahme@reha-seeblick.kim.telematik-test"

# (patient, born, admitted, discharged, diagnoses, treatment, medication, family doctor's address)
_DISCHARGES = [
    ("Müller, Jürgen", "14.03.1951", "02.11.", "09.11.", "Vorhofflimmern, tachykard; arterielle Hypertonie",
     "Elektrische Kardioversion in Sinusrhythmus, Beginn einer oralen Antikoagulation",
     "Apixaban 5 mg 1-0-1, Bisoprolol 2,5 mg 1-0-0, Ramipril 5 mg 1-0-0", PRAXIS_MUELLER),
    ("Schäfer, Renate", "22.07.1944", "28.10.", "06.11.", "Akut dekompensierte Herzinsuffizienz (NYHA III), HFrEF",
     "Diuretische Therapie i. v., Rekompensation, Gewichtsabnahme 6 kg",
     "Sacubitril/Valsartan 49/51 mg 1-0-1, Torasemid 10 mg 1-0-0, Dapagliflozin 10 mg 1-0-0", PRAXIS_WEBER),
    ("Öztürk, Mehmet", "03.01.1962", "04.11.", "07.11.", "NSTEMI; koronare Dreigefäßerkrankung",
     "Koronarangiographie, PCI mit Drug-eluting Stent im RIVA",
     "ASS 100 mg 1-0-0, Ticagrelor 90 mg 1-0-1, Atorvastatin 80 mg 0-0-1", PRAXIS_OEZTUERK),
    ("Weiß, Gertrud", "30.09.1938", "01.11.", "10.11.", "Synkope bei AV-Block III. Grades",
     "Implantation eines Zweikammer-Herzschrittmachers (DDD), komplikationsloser Verlauf",
     "Unverändert; Wundkontrolle am 7. Tag beim Hausarzt", PRAXIS_WEBER),
    ("Brandt, Thomas", "11.12.1970", "06.11.", "08.11.", "Hypertensive Entgleisung; V. a. Schlafapnoe",
     "Blutdruckeinstellung, Langzeit-Blutdruckmessung, Überweisung ins Schlaflabor",
     "Amlodipin 5 mg 1-0-0, Candesartan 16 mg 1-0-0", PRAXIS_MUELLER),
    ("Lehmann, Ingrid", "05.05.1949", "03.11.", "11.11.", "Infektiöse Endokarditis der Mitralklappe (Streptokokken)",
     "Antibiotische Therapie i. v., Verlegung zur Anschlussheilbehandlung",
     "Ceftriaxon 2 g i. v. 1-0-0 bis einschließlich 15.12.", REHA),
    ("Kowalski, Piotr", "19.08.1957", "05.11.", "09.11.", "Lungenarterienembolie beidseits, hämodynamisch stabil",
     "Antikoagulation, Echokardiographie ohne Rechtsherzbelastung",
     "Rivaroxaban 15 mg 1-0-1 für 21 Tage, danach 20 mg 1-0-0", PRAXIS_OEZTUERK),
    ("Hoffmann, Lisa", "27.02.1985", "07.11.", "08.11.", "Perimyokarditis nach viralem Infekt",
     "Überwachung, Troponin rückläufig, Echokardiographie normal",
     "Ibuprofen 600 mg 1-1-1 für 2 Wochen, Colchicin 0,5 mg 1-0-1 für 3 Monate; Sportpause 6 Monate",
     PRAXIS_WEBER),
    ("Richter, Hans-Peter", "08.06.1946", "30.10.", "07.11.", "Hochgradige Aortenklappenstenose",
     "Transfemoraler Aortenklappenersatz (TAVI), gutes Ergebnis",
     "ASS 100 mg 1-0-0 dauerhaft, Clopidogrel 75 mg 1-0-0 für 3 Monate", PRAXIS_MUELLER),
]  # fmt: skip


def _discharge(patient: str, born: str, admitted: str, discharged: str, diagnoses: str, treatment: str,
               medication: str) -> bytes:  # fmt: skip
    surname, given = (part.strip() for part in patient.split(","))
    lines = [
        "Klinikum Demo · Klinik für Kardiologie · Station 3",
        "",
        f"Patient: {patient}, geb. {born}",
        f"Stationärer Aufenthalt vom {admitted} bis {discharged}",
        "",
        "Sehr geehrte Frau Kollegin, sehr geehrter Herr Kollege,",
        f"wir berichten über die stationäre Behandlung von {given} {surname}.",
        "",
        f"Diagnosen: {diagnoses}",
        f"Therapie: {treatment}",
        f"Medikation bei Entlassung: {medication}",
        "",
        "Wir bitten um Kontrolle von Blutbild, Nierenwerten und Elektrolyten in einer Woche.",
        "",
        "Mit freundlichen kollegialen Grüßen",
        "Dr. med. Anna Sommer, Oberärztin Kardiologie",
    ]
    return letter_pdf("Entlassbrief", lines)


def _eau(patient: str, born: str, insurance_number: str, start: str, end: str, icd: str) -> bytes:
    # A small FHIR-shaped eAU (no DOCTYPE: the portal refuses DTDs in XML documents).
    family, given = (part.strip() for part in patient.split(","))
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<Bundle xmlns="http://hl7.org/fhir">
  <type value="document"/>
  <entry><resource><Composition>
    <type><coding><system value="https://fhir.kbv.de/CodeSystem/KBV_CS_AU_Type"/><code value="AU"/></coding></type>
    <title value="Arbeitsunfähigkeitsbescheinigung"/>
  </Composition></resource></entry>
  <entry><resource><Patient>
    <identifier><system value="http://fhir.de/sid/gkv/kvid-10"/><value value="{insurance_number}"/></identifier>
    <name><family value="{family}"/><given value="{given}"/></name>
    <birthDate value="{born}"/>
  </Patient></resource></entry>
  <entry><resource><Condition>
    <code><coding><system value="http://fhir.de/CodeSystem/bfarm/icd-10-gm"/><code value="{icd}"/></coding></code>
  </Condition></resource></entry>
  <entry><resource><Observation>
    <valuePeriod><start value="{start}"/><end value="{end}"/></valuePeriod>
  </Observation></resource></entry>
</Bundle>
"""
    return xml.encode("utf-8")


FINDINGS = """Befundbericht Echokardiographie (TTE)

Patientin: Schäfer, Renate, geb. 22.07.1944
Untersuchung: 06.11., Station 3, Klinik für Kardiologie

Linker Ventrikel: mittelgradig eingeschränkte systolische Funktion, LVEF 35 % (Simpson biplan),
  Hypokinesie anterior und septal.
Rechter Ventrikel: normal groß, TAPSE 19 mm.
Klappen: Mitralinsuffizienz II°, Aortenklappe sklerosiert ohne Stenose.
Perikard: kein Erguss.

Beurteilung: Befund vereinbar mit ischämischer Kardiomyopathie; Verlaufskontrolle in 3 Monaten
unter optimierter Herzinsuffizienztherapie empfohlen.

Dr. med. Anna Sommer
"""


def demo_letters() -> list[DemoLetter]:
    letters = [
        DemoLetter(
            document_type="earztbrief",
            patient_reference=f"{patient} ({born})",
            subject=f"Entlassbrief {patient.split(',')[0]}",
            filename=f"Entlassbrief {patient.split(',')[0]}.pdf",
            content=_discharge(patient, born, admitted, discharged, diagnoses, treatment, medication),
            recipients=(recipient,),
            body=f"Sehr geehrte Kolleginnen und Kollegen,\n\nanbei der Entlassbrief für {patient}.\n\n"
            "Mit freundlichen Grüßen\nKlinikum Demo, Kardiologie",
        )
        for patient, born, admitted, discharged, diagnoses, treatment, medication, recipient in _DISCHARGES
    ]
    letters += [
        DemoLetter(
            document_type="eau",
            patient_reference="Brandt, Thomas (11.12.1970)",
            subject="eAU Brandt",
            filename="eAU Brandt.xml",
            content=_eau("Brandt, Thomas", "1970-12-11", "B123456789", "2026-11-06", "2026-11-15", "I10.01"),
            recipients=(KASSE,),
        ),
        DemoLetter(
            document_type="eau",
            patient_reference="Hoffmann, Lisa (27.02.1985)",
            subject="eAU Hoffmann",
            filename="eAU Hoffmann.xml",
            content=_eau("Hoffmann, Lisa", "1985-02-27", "H987654321", "2026-11-07", "2026-11-21", "I30.9"),
            recipients=(KASSE,),
        ),
        DemoLetter(
            document_type="befundbericht",
            patient_reference="Schäfer, Renate (22.07.1944)",
            subject="Befundbericht Echokardiographie Schäfer",
            filename="Befund Echo Schäfer.txt",
            content=FINDINGS.encode("utf-8"),
            recipients=(PRAXIS_WEBER,),
            body="Anbei der Echobefund zur Information.",
        ),
    ]
    return letters
