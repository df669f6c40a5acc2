"""Send the demo's seed mails through the simulator's real SMTP (python -m tisim send)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"
KARDIO = "kardiologie@klinikum-demo.kim.telematik-test"
AUFNAHME = "aufnahme@klinikum-demo.kim.telematik-test"


def tiny_pdf(text: str) -> bytes:
    """A valid one-page PDF with one line of text (no PDF library needed for a demo letter)."""
    stream = f"BT /F1 14 Tf 72 760 Td ({text}) Tj ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def send(data_dir: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "tisim", "send", "--data-dir", data_dir, "--from", PRAXIS, *args]
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True)
    data_dir = parser.parse_args().data_dir
    with tempfile.TemporaryDirectory() as tmp:
        letter = Path(tmp) / "Entlassbrief Müller, Jürgen.pdf"
        letter.write_bytes(tiny_pdf("Entlassbrief - Herr Juergen Mueller - Kardiologie"))
        send(
            data_dir,
            "--to",
            KARDIO,
            "--subject",
            "Arztbrief: Entlassung Herr Müller",
            "--dienstkennung",
            "Arztbrief;VHitG-Versand;V1.2",
            "--body",
            "Sehr geehrte Kolleginnen und Kollegen,\n\nanbei der Entlassbrief.\n\n"
            "Mit freundlichen Grüßen\nPraxis Dr. Müller",
            "--attach",
            str(letter),
            # Signed by the practice's physician (QES, PAdES): the page shows the Konnektor's check.
            "--sign",
        )
        send(
            data_dir,
            "--to",
            KARDIO,
            "--subject",
            "eAU Lieferung",
            "--dienstkennung",
            "eAU;Lieferung;V1.0",
            "--body",
            "Arbeitsunfähigkeitsbescheinigung (Demo).",
        )
        send(
            data_dir,
            "--to",
            AUFNAHME,
            "--subject",
            "Rückfrage zur Aufnahme am Montag",
            "--body",
            "Guten Tag,\n\nkönnen Sie den Aufnahmetermin bestätigen?\n\nViele Grüße",
        )
        send(
            data_dir,
            "--to",
            KARDIO,
            "--subject",
            "Laborbefund (manipuliert)",
            "--dienstkennung",
            "LDT-Befund;Lieferung;V1.0",
            "--body",
            "Dieser Befund wurde unterwegs verändert.",
            "--fault",
            "integrity",
        )


if __name__ == "__main__":
    main()
