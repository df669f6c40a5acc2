"""Letters with a qualified signature from the sending practice (``python -m tisim send --sign``).

The sending physician ("Dr. med. Klaus Müller" unless told otherwise) holds a QES certificate issued by the
simulated Konnektor's QES CA (tisim.konnektor.pki, in the same data directory): a portal whose Konnektor is that
simulator finds the signature valid, as a real Konnektor trusts the TSPs' QES CAs. A PDF is signed as PAdES
(the signed PDF replaces it), any other file gets a detached CAdES signature beside it (``<name>.p7s``).

``tamper=True`` (``--fault bad-signature``) changes the signed bytes after signing, as an attacker or a broken
relay would: the signature stays well-formed but no longer matches the document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tisim.konnektor.pki import OID_ARZT, Issued, Pki, iccsn_for, pki_directory
from tisim.konnektor.signatures import cades, pades

DEFAULT_SIGNER = "Dr. med. Klaus Müller"
DEFAULT_TELEMATIK_ID = "1-20099887766"
# The characters a signature's ShortText may carry (SignatureService 7.5, SIG:ShortText), at most 30.
_SHORT_TEXT_DROP = re.compile(r"[^a-zA-Z 0-9_.\-äöüÄÖÜß]")


@dataclass(frozen=True)
class SignedFile:
    """A file as it goes into the mail: its name and bytes (a signed PDF, a document or its .p7s)."""

    name: str
    content: bytes


def signer_certificate(
    data_dir: Path, *, name: str = DEFAULT_SIGNER, telematik_id: str = DEFAULT_TELEMATIK_ID
) -> Issued:
    """The physician's QES key and certificate (RSA 2048), issued once by the QES CA of ``data_dir``'s Konnektor
    PKI and kept there (the same name and Telematik-ID get the same certificate next time)."""
    pki = Pki(pki_directory(data_dir))
    return pki.card_certificate(
        iccsn_for(telematik_id, "HBA"),
        holder_name=name,
        telematik_id=telematik_id,
        profession_item="Ärztin/Arzt",
        profession_oid=OID_ARZT,
        algorithm="RSA",
    )


def short_text(filename: str) -> str:
    """The document's name as a signature's ShortText: the allowed characters only, at most 30."""
    return _SHORT_TEXT_DROP.sub("", filename)[:30].strip() or "Dokument"


def is_pdf(content: bytes) -> bool:
    return content[:1024].lstrip().startswith(b"%PDF-")


def sign_files(
    files: list[tuple[str, bytes]],
    *,
    data_dir: Path,
    signer_name: str = DEFAULT_SIGNER,
    telematik_id: str = DEFAULT_TELEMATIK_ID,
    tamper: bool = False,
) -> list[SignedFile]:
    """Each (name, content) signed: a PDF as PAdES (same name), anything else with ``<name>.p7s`` beside it."""
    pki = Pki(pki_directory(data_dir))
    signer = signer_certificate(data_dir, name=signer_name, telematik_id=telematik_id)
    out: list[SignedFile] = []
    for name, content in files:
        if is_pdf(content):
            signed = pades(content, signer, pki.qes_ca, short_text=short_text(name))
            out.append(SignedFile(name, tamper_pdf(signed) if tamper else signed))
        else:
            signature = cades(content, signer, short_text=short_text(name))
            out.append(SignedFile(name, tamper_bytes(content) if tamper else content))
            out.append(SignedFile(f"{name}.p7s", signature))
    return out


def tamper_pdf(signed: bytes) -> bytes:
    """The signed PDF with one byte inside the signed range changed and the file still a valid PDF: the space in
    the first "N 0 obj" becomes a line break (the same to a PDF reader, not to the signature's digest)."""
    byte_range = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)", signed)
    first_range_end = int(byte_range.group(2)) if byte_range else len(signed)
    obj = re.search(rb"\d+( )0 obj", signed[:first_range_end])
    if obj is None:
        return tamper_bytes(signed)
    at = obj.start(1)
    return signed[:at] + b"\n" + signed[at + 1 :]


def tamper_bytes(content: bytes) -> bytes:
    """The content with its middle byte changed (or one byte added to an empty file)."""
    if not content:
        return b"x"
    at = len(content) // 2
    return content[:at] + bytes([content[at] ^ 0x01]) + content[at + 1 :]
