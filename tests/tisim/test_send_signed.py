"""``python -m tisim send --sign``: letters signed by a physician of the sending practice, through the real CLI
and the simulated CM's SMTP; the signatures are checked here independently (pyhanko for PAdES, the CMS by hand
for CAdES) against the QES CA of the simulator's data directory."""

from __future__ import annotations

import email
import io
import subprocess
import sys
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from tests.fixtures.konnektor_sim import sample_pdf, verify_cades
from tests.tisim.support import ALICE, BOB, REPO
from tisim.cm import CMSimulator
from tisim.konnektor.pki import Pki, pki_directory
from tisim.signedmail import DEFAULT_SIGNER


def tisim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tisim", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _send(cm: CMSimulator, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return tisim("send", "--data-dir", cm.data_dir, "--from", ALICE, "--to", BOB, "--subject", "Arztbrief", *args)


def _attachments(cm: CMSimulator) -> dict[str, tuple[str, bytes]]:
    """The one delivered message's attachments: file name → (content type, bytes)."""
    [uidl] = cm.maildrop_uidls(BOB)
    msg = email.message_from_bytes(cm.maildrop_read(BOB, uidl), policy=default)
    assert isinstance(msg, EmailMessage)
    out = {}
    for part in msg.iter_attachments():
        assert isinstance(part, EmailMessage)
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        out[part.get_filename() or ""] = (part.get_content_type(), payload)
    return out


def _qes_ca(cm: CMSimulator) -> x509.Certificate:
    return Pki(pki_directory(cm.data_dir)).qes_ca.cert


def _pades_status(pdf: bytes, cm: CMSimulator):  # type: ignore[no-untyped-def]
    from asn1crypto import x509 as asn1_x509

    root = asn1_x509.Certificate.load(_qes_ca(cm).public_bytes(serialization.Encoding.DER))
    [signature] = PdfFileReader(io.BytesIO(pdf)).embedded_signatures
    return validate_pdf_signature(signature, ValidationContext(trust_roots=[root], allow_fetching=False))


def _signer_of_cms(signature: bytes) -> x509.Certificate:
    signed_data = cms.ContentInfo.load(signature)["content"]
    [cert] = signed_data["certificates"]
    return x509.load_der_x509_certificate(cert.chosen.dump())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def test_a_pdf_is_sent_signed_as_pades_by_the_practice_physician(cm: CMSimulator, tmp_path: Path) -> None:
    letter = tmp_path / "Entlassbrief Müller.pdf"
    letter.write_bytes(sample_pdf("Entlassbrief"))

    result = _send(cm, "--sign", "--attach", letter)

    assert result.returncode == 0, result.stderr
    files = _attachments(cm)
    assert list(files) == ["Entlassbrief Müller.pdf"], "PAdES: the signed PDF replaces the PDF, no extra file"
    content_type, pdf = files["Entlassbrief Müller.pdf"]
    assert content_type == "application/pdf"
    assert pdf.startswith(letter.read_bytes()), "an incremental signature keeps the original bytes as a prefix"
    status = _pades_status(pdf, cm)
    assert status.intact and status.valid and status.trusted
    assert _cn(x509.load_der_x509_certificate(status.signing_cert.dump())) == DEFAULT_SIGNER
    assert DEFAULT_SIGNER == "Dr. med. Klaus Müller"


def test_another_file_gets_a_detached_p7s_beside_it(cm: CMSimulator, tmp_path: Path) -> None:
    befund = tmp_path / "befund.txt"
    befund.write_text("Kalium 4,1 mmol/l\n", encoding="utf-8")

    result = _send(cm, "--sign", "--signer", "Dr. med. Eva Müller", "--attach", befund)

    assert result.returncode == 0, result.stderr
    files = _attachments(cm)
    assert list(files) == ["befund.txt", "befund.txt.p7s"]
    assert files["befund.txt"][1] == befund.read_bytes()
    content_type, signature = files["befund.txt.p7s"]
    assert content_type == "application/pkcs7-signature"
    cert = _signer_of_cms(signature)
    assert _cn(cert) == "Dr. med. Eva Müller"
    assert cert.issuer == _qes_ca(cm).subject
    verify_cades(signature, befund.read_bytes(), cert.public_bytes(serialization.Encoding.DER))


def test_bad_signature_changes_the_signed_pdf_after_signing(cm: CMSimulator, tmp_path: Path) -> None:
    letter = tmp_path / "brief.pdf"
    letter.write_bytes(sample_pdf("Befund"))

    result = _send(cm, "--fault", "bad-signature", "--attach", letter)

    assert result.returncode == 0, result.stderr
    _, pdf = _attachments(cm)["brief.pdf"]
    status = _pades_status(pdf, cm)
    assert not status.intact, "the signed bytes were changed: the digest no longer matches"
    assert status.valid, "the signature over its attributes still holds: only the document is wrong"
    assert _cn(x509.load_der_x509_certificate(status.signing_cert.dump())) == DEFAULT_SIGNER
    # Still a PDF a reader opens: one space became a line break.
    assert PdfFileReader(io.BytesIO(pdf)).root["/Pages"]["/Count"] == 1


def test_bad_signature_changes_a_document_beside_its_p7s(cm: CMSimulator, tmp_path: Path) -> None:
    befund = tmp_path / "befund.xml"
    befund.write_bytes(b"<befund><kalium>4.1</kalium></befund>")

    result = _send(cm, "--fault", "bad-signature", "--attach", befund)

    assert result.returncode == 0, result.stderr
    files = _attachments(cm)
    assert files["befund.xml"][1] != befund.read_bytes()
    signature = files["befund.xml.p7s"][1]
    cert_der = _signer_of_cms(signature).public_bytes(serialization.Encoding.DER)
    verify_cades(signature, befund.read_bytes(), cert_der)  # it signed the original …
    with pytest.raises(AssertionError):
        verify_cades(signature, files["befund.xml"][1], cert_der)  # … not what arrives


def test_the_same_physician_keeps_one_certificate(cm: CMSimulator, tmp_path: Path) -> None:
    befund = tmp_path / "a.txt"
    befund.write_text("eins", encoding="utf-8")
    assert _send(cm, "--sign", "--attach", befund).returncode == 0
    assert _send(cm, "--sign", "--attach", befund).returncode == 0
    serials = set()
    for uidl in cm.maildrop_uidls(BOB):
        msg = email.message_from_bytes(cm.maildrop_read(BOB, uidl), policy=default)
        assert isinstance(msg, EmailMessage)
        for part in msg.iter_attachments():
            if (part.get_filename() or "").endswith(".p7s"):
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                serials.add(_signer_of_cms(payload).serial_number)
    assert len(serials) == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--sign",), "give at least one --attach"),
        (("--fault", "bad-signature"), "give at least one --attach"),
        (("--signer", "Dr. X"), "use it with --sign"),
    ],
)
def test_signing_needs_attachments_and_says_so(cm: CMSimulator, args: tuple[str, ...], error: str) -> None:
    result = _send(cm, *args)
    assert result.returncode == 1
    assert error in result.stderr
    assert cm.maildrop_uidls(BOB) == [], "nothing half-sent"


def test_sign_is_refused_with_a_prepared_eml(cm: CMSimulator, tmp_path: Path) -> None:
    eml = tmp_path / "m.eml"
    eml.write_bytes(f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: x\r\n\r\nHallo\r\n".encode())
    result = tisim("send", "--data-dir", cm.data_dir, "--eml", eml, "--sign")
    assert result.returncode == 1
    assert "--eml sends the file as it is" in result.stderr
