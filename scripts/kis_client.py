#!/usr/bin/env python3
"""A sample client of the KIM Portal's KIS API (docs/kis-api.md), standard library only.

The token comes from --token-file, or the environment variable KIS_API_TOKEN; the portal from --url or KIS_API_URL
(default http://127.0.0.1:8000/api/kis/v1).

  kis_client.py --token-file var/demo/kis-token submit --demo
  kis_client.py submit --document-id KIS-4711 --file brief.pdf --type earztbrief \\
      --mailbox kardiologie@klinikum-demo.kim.telematik-test --author assistenz --signer aerztin \\
      --patient "Fall 4711" --subject "Entlassbrief" --recipient hausarzt.weber@praxis-weber.kim.telematik-test
  kis_client.py status KIS-4711
  kis_client.py replace KIS-4711 --file brief-v2.pdf ... (the same options as submit)
  kis_client.py withdraw KIS-4711 --reason "Patient verlegt"
  kis_client.py download KIS-4711 --output brief-signiert.pdf

Answers are printed as JSON; a refusal prints its code and German text and exits with status 1.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000/api/kis/v1"
DEMO_MAILBOX = "kardiologie@klinikum-demo.kim.telematik-test"

# Three discharge letters of the demo's cardiology ward (fictitious patients), to addressees the demo directory
# knows with valid certificates, so that the signed letters can travel on.
DEMO_LETTERS = [
    (
        "DEMO-ARZTBRIEF-1",
        "Fall 2026-10001",
        "Entlassbrief Weber, Karl (geb. 02.05.1949)",
        "hausarzt.weber@praxis-weber.kim.telematik-test",
        "Diagnose: Vorhofflattern, Ablation des cavotrikuspidalen Isthmus. Entlassung in gutem Allgemeinzustand.",
    ),
    (
        "DEMO-ARZTBRIEF-2",
        "Fall 2026-10002",
        "Entlassbrief Yilmaz, Ayse (geb. 17.09.1958)",
        "kardiologie.oeztuerk@praxis-oeztuerk.kim.telematik-test",
        "Diagnose: Hypertensive Entgleisung; Umstellung der antihypertensiven Therapie, Blutdruck stabil.",
    ),
    (
        "DEMO-ARZTBRIEF-3",
        "Fall 2026-10003",
        "Verlegungsbrief Hoffmann, Erika (geb. 30.01.1940)",
        "aufnahme@reha-seeblick.kim.telematik-test",
        "Diagnose: Zustand nach Aortenklappenersatz (TAVI); Verlegung zur kardiologischen Rehabilitation.",
    ),
]


class ApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}: {body.get('detail')}")
        self.status = status
        self.body = body


def simple_pdf(lines: list[str]) -> bytes:
    """A small valid PDF with some lines of text (Helvetica, Latin-1), built byte by byte."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    content = "BT /F1 12 Tf 72 770 Td 16 TL " + " ".join(f"({escape(line)}) '" for line in lines) + " ET"
    stream = content.encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
        b"/Contents 5 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
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


class Client:
    def __init__(self, base_url: str, token: str, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        url = self.base_url + path
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError(f"not an http(s) URL: {url}")
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, dict(response.headers.items()), response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                error = json.loads(raw)
            except ValueError:
                error = {"code": "http_error", "detail": raw.decode("utf-8", "replace")[:500]}
            raise ApiError(exc.code, error) from exc

    def json(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        status, _headers, raw = self.request(method, path, body)
        return status, json.loads(raw)

    def submit(self, submission: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.json("POST", "/drafts", submission)

    def replace(self, document_id: str, submission: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return self.json("PUT", f"/drafts/{document_id}", submission)

    def status(self, document_id: str) -> tuple[int, dict[str, Any]]:
        return self.json("GET", f"/drafts/{document_id}")

    def withdraw(self, document_id: str, reason: str = "") -> tuple[int, dict[str, Any]]:
        return self.json("POST", f"/drafts/{document_id}/withdraw", {"reason": reason} if reason else None)

    def download(self, document_id: str) -> tuple[str, bytes]:
        _status, headers, raw = self.request("GET", f"/drafts/{document_id}/signed")
        disposition = {k.lower(): v for k, v in headers.items()}.get("content-disposition", "")
        name = disposition.split("filename=", 1)[-1].strip('"') if "filename=" in disposition else document_id
        return name, raw


def read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get("KIS_API_TOKEN", "").strip()
    if not token:
        raise SystemExit("Kein Token: --token-file DATEI oder die Umgebungsvariable KIS_API_TOKEN angeben.")
    return token


def submission_from(args: argparse.Namespace, document_id: str) -> dict[str, Any]:
    path = Path(args.file)
    signer = {"telematik_id": args.signer_telematik_id} if args.signer_telematik_id else {"username": args.signer}
    return {
        "document_id": document_id,
        "document_type": args.type,
        "mailbox": args.mailbox,
        "author": args.author,
        "signer": signer,
        "patient_reference": args.patient,
        "subject": args.subject,
        "body": args.body,
        "recipients": args.recipient,
        "document": {"filename": path.name, "content_base64": base64.b64encode(path.read_bytes()).decode()},
    }


def demo_submissions(mailbox: str, author: str, signer: str) -> list[dict[str, Any]]:
    letters = []
    for document_id, case, subject, recipient, finding in DEMO_LETTERS:
        pdf = simple_pdf(
            [
                "Klinikum Demo - Klinik fuer Kardiologie",
                "",
                subject,
                case,
                "",
                finding,
                "",
                "Mit freundlichen kollegialen Gruessen",
                "Dr. med. Anna Sommer, Oberaerztin",
            ]
        )
        letters.append(
            {
                "document_id": document_id,
                "document_type": "earztbrief",
                "mailbox": mailbox,
                "author": author,
                "signer": {"username": signer},
                "patient_reference": case,
                "subject": subject,
                "body": "Sehr geehrte Kolleginnen und Kollegen,\nanbei der Arztbrief.",
                "recipients": [recipient],
                "document": {
                    "filename": f"{document_id.lower()}.pdf",
                    "content_base64": base64.b64encode(pdf).decode(),
                },
            }
        )
    return letters


def print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2))


def add_letter_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument("--file", required=required, help="das Dokument (PDF, Text oder XML)")
    parser.add_argument("--type", default="earztbrief", help="Dokumenttyp (earztbrief, eau, befundbericht, sonstiges)")
    parser.add_argument("--mailbox", default=DEMO_MAILBOX, help="Absender-Postfach (Abteilung)")
    parser.add_argument("--author", default="assistenz", help="Benutzername des Verfassers")
    parser.add_argument("--signer", default="aerztin", help="Benutzername des Unterzeichners")
    parser.add_argument("--signer-telematik-id", default="", help="statt --signer: Telematik-ID des eHBA")
    parser.add_argument("--patient", required=required, help="Patientenbezug (z. B. Fallnummer)")
    parser.add_argument("--subject", required=required, help="Betreff")
    parser.add_argument("--body", default="", help="Nachrichtentext")
    parser.add_argument("--recipient", action="append", default=[], help="KIM-Adresse (mehrfach möglich)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("KIS_API_URL", DEFAULT_URL), help="Basis-URL der Schnittstelle")
    parser.add_argument("--token-file", default="", help="Datei mit dem Token (sonst $KIS_API_TOKEN)")
    commands = parser.add_subparsers(dest="command", required=True)
    submit = commands.add_parser("submit", help="Entwurf einreichen")
    submit.add_argument("--demo", action="store_true", help="die drei eArztbriefe der Demo einreichen")
    submit.add_argument("--document-id", default="", help="die Dokument-ID des KIS")
    add_letter_options(submit, required=False)
    replace = commands.add_parser("replace", help="durch eine neue Fassung ersetzen")
    replace.add_argument("document_id")
    add_letter_options(replace, required=True)
    status = commands.add_parser("status", help="Stand abfragen")
    status.add_argument("document_id")
    withdraw = commands.add_parser("withdraw", help="zurückziehen")
    withdraw.add_argument("document_id")
    withdraw.add_argument("--reason", default="")
    download = commands.add_parser("download", help="signiertes Ergebnis herunterladen")
    download.add_argument("document_id")
    download.add_argument("--output", "-o", default="", help="Zieldatei (sonst der Dateiname des Portals)")
    args = parser.parse_args(argv)

    client = Client(args.url, read_token(args))
    try:
        if args.command == "submit" and args.demo:
            for letter in demo_submissions(args.mailbox, args.author, args.signer):
                code, draft = client.submit(letter)
                what = "eingereicht" if code == 201 else "lag schon vor"
                state = f"{draft['state_label']}, {draft['review_label']}"
                print(f"{draft['document_id']}: {what} – {state} (Nr. {draft['id']})")
        elif args.command == "submit":
            missing = [n for n in ("document_id", "file", "patient", "subject") if not getattr(args, n)]
            if missing or not args.recipient:
                parser.error("submit braucht --document-id, --file, --patient, --subject und --recipient (oder --demo)")
            print_json(client.submit(submission_from(args, args.document_id))[1])
        elif args.command == "replace":
            print_json(client.replace(args.document_id, submission_from(args, args.document_id))[1])
        elif args.command == "status":
            print_json(client.status(args.document_id)[1])
        elif args.command == "withdraw":
            print_json(client.withdraw(args.document_id, args.reason)[1])
        elif args.command == "download":
            name, data = client.download(args.document_id)
            target = Path(args.output or Path(name).name)
            target.write_bytes(data)
            print(f"{target} ({len(data)} Bytes)")
    except ApiError as exc:
        print(f"Fehler {exc.status} {exc.body.get('code')}: {exc.body.get('detail')}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"Portal nicht erreichbar: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
