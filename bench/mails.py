"""Everyday hospital mail for the benchmarks: ≈50 KB, text and HTML alternatives plus a small PDF.

`hospital_mail(i)` returns the complete RFC 5322 message (CRLF line endings, as the Clientmodul
delivers it over POP3). Every index gives a different mail (sender, patient, subject, dates, lab
values, Message-ID and PDF bytes); the same index always gives the same bytes, so the
content-addressed blob store keeps one copy however often a bench is seeded.

The letter's prose is drawn from a fixed vocabulary by Zipf's law, so it compresses like real prose
(about 2.7x with zlib) and not like one paragraph repeated: PostgreSQL keeps well-compressed bodies
inline and moves others out to TOAST, which changes how wide the table's rows are.
"""

from __future__ import annotations

import base64
import itertools
import quopri
import random
import zlib
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

CRLF = b"\r\n"
RECIPIENT = "bench-kardio@klinikum-bench.kim.telematik-test"
DIENSTKENNUNGEN = [
    "Arztbrief;VHitG-Versand;V1.2",
    "eAU;Lieferung;V1.0",
    "KIM-Mail;Default;V1.0",
    "LDT-Befund;Lieferung;V1.0",
]
SUBJECTS = ["Arztbrief Entlassung", "Befund Labor", "eAU Lieferung", "Rückfrage Termin", "Überweisung Kardiologie"]
SURNAMES = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann"]
FIRST_NAMES = ["Anna", "Jürgen", "Sabine", "Klaus", "Ursula", "Peter", "Monika", "Hans", "Gisela", "Dieter"]
DIAGNOSES = [
    "Dekompensierte Herzinsuffizienz (NYHA III)",
    "Vorhofflimmern mit schneller Überleitung",
    "Arterielle Hypertonie, Grad 2",
    "Koronare Herzkrankheit, Dreigefäßerkrankung",
    "Diabetes mellitus Typ 2, insulinpflichtig",
    "Chronische Niereninsuffizienz, Stadium G3a",
    "Ambulant erworbene Pneumonie",
    "Zustand nach NSTEMI",
]
PRACTICES = 997
TEXT_PARAGRAPHS = 28
PDF_NOISE_BYTES = 9 * 1024  # an embedded font subset or logo: incompressible
EPOCH = datetime(2024, 1, 8, 7, 0, tzinfo=UTC)


FUNCTION_WORDS = (
    "der die das und mit bei im in zu von für ist wurde wurden eine ein nach unter über seit keine nicht sowie "
    "auch am zur zum des dem den als bis bei weiterhin deutlich leicht"
).split()
MEDICAL_WORDS = (
    "Aufnahme Entlassung Befund Verlauf Therapie Diagnostik Kontrolle Sonographie Echokardiographie Röntgen "
    "Thorax Abdomen Niere Leber Lunge Herz Ödeme Dyspnoe Belastung Ruhe Schmerzen Fieber Infekt Antibiose "
    "Diurese Gewicht Blutdruck Herzfrequenz Sinusrhythmus Vorhofflimmern Ejektionsfraktion Klappe Insuffizienz "
    "Stenose Pleuraerguss Stauung Labor Elektrolyte Nierenfunktion Leberwerte Entzündungswerte Medikation "
    "Dosis Einnahme Umstellung Pausierung Wiederaufnahme Hausarzt Facharzt Vorstellung Wiedervorstellung "
    "unauffällig regredient progredient stabil gebessert kompensiert dekompensiert intravenös oral täglich"
).split()


def _vocabulary(size: int = 2_500) -> list[str]:
    """A fixed vocabulary of German-looking words: real prose has thousands of distinct words."""
    syllables = (
        "an be de di ein er ge hal ka kar ko lun me mi na nie no ra re ri sa schi se sta te ti to tri ul ver "
        "wei zu ber ban dung heit keit lich ung ter sen ten gen tom ase ose itis ie ion al ar"
    ).split()
    rng = random.Random(1948)
    words = list(MEDICAL_WORDS)
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 5)))
        words.append(word.capitalize() if rng.random() < 0.45 else word)
    return words


VOCABULARY = _vocabulary()
# Zipf's law: a few words are frequent, most are rare (which is why prose compresses only 2-3x).
ZIPF = list(itertools.accumulate(1 / rank for rank in range(1, len(VOCABULARY) + 1)))


def _sentence(rng: random.Random) -> str:
    words = []
    for _ in range(rng.randint(8, 18)):
        if rng.random() < 0.4:
            words.append(rng.choice(FUNCTION_WORDS))
        else:
            words.append(rng.choices(VOCABULARY, cum_weights=ZIPF)[0])
        if rng.random() < 0.06:
            words.append(f"{rng.uniform(0.1, 250):.1f}".replace(".", ","))
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def _lines(*lines: str | bytes) -> bytes:
    return CRLF.join(line if isinstance(line, bytes) else line.encode("ascii") for line in lines)


def _quoted_printable(text: str) -> bytes:
    return quopri.encodestring(text.encode("utf-8")).replace(b"\n", CRLF)


def _base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _encoded_word(text: str) -> str:
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _pdf(title: str, paragraphs: list[str], rng: random.Random) -> bytes:
    """A small one-page PDF: a compressed text stream and an incompressible embedded object."""
    text = "BT /F1 10 Tf 50 800 Td 12 TL " + " ".join(f"({p[:180]}) '" for p in paragraphs) + " ET"
    content = zlib.compress(text.encode("latin-1", "replace"))
    noise = rng.randbytes(PDF_NOISE_BYTES)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /FontFile3 6 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(noise) + noise + b"\nendstream",
        b"<< /Title (" + title.encode("latin-1", "replace") + b") /Producer (KIS Export 7.3) >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def hospital_mail(i: int) -> bytes:
    """Mail number *i*: a discharge letter, lab result or referral from one of 997 practices."""
    rng = random.Random(i)
    practice = i % PRACTICES
    patient = f"{FIRST_NAMES[rng.randrange(10)]} {SURNAMES[rng.randrange(10)]}"
    born = f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1930, 2005)}"
    sent = EPOCH + timedelta(minutes=i, seconds=rng.randrange(60))
    subject = f"{SUBJECTS[i % len(SUBJECTS)]} {patient} {i}"
    diagnoses = rng.sample(DIAGNOSES, 3)
    admitted = sent - timedelta(days=30)
    paragraphs = [
        f"Wir berichten über {patient}, geb. {born}, in unserer Behandlung seit {admitted:%d.%m.%Y}. "
        f"Diagnosen: {', '.join(diagnoses)}."
    ]
    for n in range(2, TEXT_PARAGRAPHS + 1):
        day = sent - timedelta(days=TEXT_PARAGRAPHS - n)
        sentences = " ".join(_sentence(rng) for _ in range(4))
        paragraphs.append(
            f"{n}. Am {day:%d.%m.%Y}: {sentences} Kreatinin {rng.uniform(0.7, 2.4):.2f} mg/dl, Kalium "
            f"{rng.uniform(3.4, 5.6):.1f} mmol/l, NT-proBNP {rng.randint(120, 9000)} pg/ml."
        )
    text = "Sehr geehrte Frau Kollegin, sehr geehrter Herr Kollege,\n\n" + "\n\n".join(paragraphs)
    text += f"\n\nMit freundlichen Grüßen\nPraxis Dr. {SURNAMES[practice % 10]} ({practice})\n"
    rows = "".join(
        f'<tr><td style="padding: 2px 6px">{(sent - timedelta(days=d)):%d.%m.%Y}</td><td>Kreatinin</td>'
        f'<td style="text-align: right">{rng.uniform(0.7, 2.4):.2f} mg/dl</td></tr>'
        for d in range(12)
    )
    html = (
        '<html><head><meta charset="utf-8"><style>p { margin: 0 0 8px } td { font-size: 10pt }</style></head>'
        '<body style="font-family: Arial, sans-serif"><p>Sehr geehrte Frau Kollegin, sehr geehrter Herr Kollege,</p>'
        + "".join(f"<p>{p}</p>" for p in paragraphs)
        + f'<table border="1" cellspacing="0">{rows}</table>'
        + f"<p>Mit freundlichen <b>Grüßen</b><br>Praxis Dr. {SURNAMES[practice % 10]}</p></body></html>"
    )
    pdf = _pdf(subject, paragraphs, rng)
    return _lines(
        f"From: {_encoded_word(f'Praxis Dr. {SURNAMES[practice % 10]} {practice}')} "
        f"<praxis{practice}@praxis.kim.telematik-test>",
        f"To: {RECIPIENT}",
        f"Subject: {_encoded_word(subject)}",
        f"Date: {format_datetime(sent)}",
        f"Message-ID: <bench-{i}.{rng.getrandbits(48):012x}@praxis{practice}.kim.telematik-test>",
        f"X-KIM-Dienstkennung: {DIENSTKENNUNGEN[i % len(DIENSTKENNUNGEN)]}",
        "X-KIM-DecryptionResult: 00",
        "X-KIM-IntegrityCheckResult: 01",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="mixed-{i}"',
        "",
        f"--mixed-{i}",
        f'Content-Type: multipart/alternative; boundary="alt-{i}"',
        "",
        f"--alt-{i}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _quoted_printable(text),
        f"--alt-{i}",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _quoted_printable(html),
        f"--alt-{i}--",
        f"--mixed-{i}",
        f'Content-Type: application/pdf; name="Befund-{i}.pdf"',
        f'Content-Disposition: attachment; filename="Befund-{i}.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        _base64_lines(pdf) + f"--mixed-{i}--".encode("ascii"),
        "",
    )
