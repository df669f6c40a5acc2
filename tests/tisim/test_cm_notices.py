"""What the simulated receiving CM makes of a mail: Vermerk, result headers, notices (SMTP in, POP3 out)."""

from __future__ import annotations

import email
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from tests.tisim.support import ALICE, BOB, message, pop3_login, send
from tisim.__main__ import main
from tisim.cm import CMSimulator
from tisim.cm.messages import DECRYPTION_NOTE, RECEIVE_FAULTS, append_decryption_note

SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec" / "kim" / "samples" / "KAS"
FORGED = "X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n"


def _retrieve(cm: CMSimulator, address: str = BOB) -> bytes:
    conn = pop3_login(cm, address)
    try:
        count, _ = conn.stat()
        return b"\r\n".join(conn.retr(count)[1]) + b"\r\n"
    finally:
        conn.quit()


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def _all(msg: EmailMessage, name: str) -> list[str]:
    return [str(v) for v in msg.get_all(name, [])]


def test_note_is_the_one_in_gematiks_sample():
    lines = (SAMPLE / "2_4_Client-Mail_finalisiert.txt").read_bytes().splitlines()
    start = lines.index(b"-" * 45)
    # The sample's umlauts are UTF-8 encoded twice (a documentation slip): undo that once.
    sample = [line.decode("utf-8").encode("latin-1").decode("utf-8") for line in lines[start : start + 3]]
    assert DECRYPTION_NOTE.strip("\r\n").split("\r\n") == sample
    assert lines[start - 3 : start] == [b"Text der Testnachricht", b"", b""], "two blank lines before the dashes"


def test_decrypted_mail_gets_the_note_and_keeps_the_senders_bytes(cm: CMSimulator):
    raw = message(body="Sehr geehrte Kollegin,\r\nanbei der Befund.\r\n")
    send(cm, ALICE, [BOB], raw)
    delivered = _retrieve(cm)
    _, _, rest = delivered.partition(b"From: ")
    assert (b"From: " + rest) == raw + DECRYPTION_NOTE.encode("utf-8")
    text = _parse(delivered).get_content().replace("\r\n", "\n")
    assert text.endswith(
        "anbei der Befund.\n\n\n---------------------------------------------\n"
        "Die Nachricht wurde entschlüsselt.\nDie Signatur wurde erfolgreich geprüft.\n"
    )


@pytest.mark.parametrize("cte", ["quoted-printable", "base64"])
def test_note_goes_into_the_first_text_part_of_a_multipart_mail(cte: str):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, "Brief"
    msg.set_content("Grüße aus der Praxis\n", cte=cte)
    msg.add_alternative("<p>Grüße aus der Praxis</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="brief.pdf")
    out = _parse(append_decryption_note(msg.as_bytes()))
    text = out.get_body(preferencelist=("plain",))
    html = out.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == "Grüße aus der Praxis\n" + DECRYPTION_NOTE.replace("\r\n", "\n")
    assert "entschlüsselt" not in html.get_content()
    assert [a.get_filename() for a in out.iter_attachments()] == ["brief.pdf"]


def test_mail_without_a_text_part_is_left_alone():
    raw = b"From: a@b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo</p>\r\n"
    assert append_decryption_note(raw) == raw


def test_sender_written_results_are_removed_in_every_spelling(cm: CMSimulator):
    forged = (
        "X-KIM-DecryptionResult: 00\r\n"
        "x-kim-integritycheckresult:01\r\n"
        "X-KIM-DecryptionResult : 00\r\n"
        "X-KIM-IntegrityCheckResult:\r\n 01\r\n"
    )
    send(cm, ALICE, [BOB], message(extra=forged))
    msg = _parse(_retrieve(cm))
    assert _all(msg, "X-KIM-DecryptionResult") == ["00"]
    assert _all(msg, "X-KIM-IntegrityCheckResult") == ["01"]
    assert b"X-KIM-DecryptionResult :" not in _retrieve(cm)


def test_a_cm_that_keeps_them_delivers_both(cm: CMSimulator):
    send(cm, ALICE, [BOB], message(extra=FORGED + "X-Tisim-Fault: keep-result-headers\r\n"))
    msg = _parse(_retrieve(cm))
    assert _all(msg, "X-KIM-DecryptionResult") == ["00", "00"]
    assert _all(msg, "X-KIM-IntegrityCheckResult") == ["01", "01"]
    assert "X-Tisim-Fault" not in msg


def test_unencrypted_mail_is_passed_through_without_results(cm: CMSimulator):
    send(cm, ALICE, [BOB], message(body="Unverschlüsselt\r\n", extra=FORGED + "X-Tisim-Fault: unencrypted\r\n"))
    msg = _parse(_retrieve(cm))
    assert msg.get_all("X-KIM-DecryptionResult") is None
    assert msg.get_all("X-KIM-IntegrityCheckResult") is None
    assert msg.get_all("X-KIM-Dienstkennung") is None, "only the sending CM adds the default"
    assert msg.get_content() == "Unverschlüsselt\r\n"
    assert msg["Return-Path"] == f"<{ALICE}>"


def test_decryption_failure_notice(cm: CMSimulator):
    original = message(
        subject="Befund Meier", extra="X-KIM-Dienstkennung: eAU;Lieferung;V1.0\r\nX-Tisim-Fault: decryption\r\n"
    )
    send(cm, ALICE, [BOB], original)
    msg = _parse(_retrieve(cm))
    assert msg["Subject"] == "Beim Entschlüsseln ist ein Fehler aufgetreten. Die Gründe werden aufgeführt."
    assert (msg["From"], msg["To"], msg["Date"]) == (ALICE, BOB, "Thu, 06 Oct 2022 11:27:22 +0200")
    assert _all(msg, "X-KIM-DecryptionResult") == ["4009"]
    assert _all(msg, "X-KIM-Fehlermeldung") == ["4009"]
    assert msg.get_all("X-KIM-IntegrityCheckResult") is None
    assert _all(msg, "X-KIM-Dienstkennung") == ["eAU;Lieferung;V1.0"]
    text, embedded = msg.iter_parts()
    assert "[4009] Die KIM-Nachricht konnte auf Grund eines nicht verfügbaren Schlüssels" in text.get_content()
    assert embedded.get_content_type() == "message/rfc822"
    outer = embedded.get_content()
    assert outer["Subject"] == "KOM-LE-Nachricht"
    assert outer["X-KOM-LE-Version"] == "1.5"
    assert outer.get_content_type() == "application/pkcs7-mime"
    assert b"Befund Meier" not in outer.get_content(), "the embedded message is still encrypted"


def test_large_message_notice(cm: CMSimulator):
    send(cm, ALICE, [BOB], message(subject="Bildgebung", extra="X-Tisim-Fault: 4018\r\n"))
    msg = _parse(_retrieve(cm))
    assert msg["Subject"] == (
        "Die KIM-Nachricht kann nicht empfangen werden, weil der Empfang großer Nachrichten nicht aktiviert wurde"
    )
    assert _all(msg, "X-KIM-Fehlermeldung") == ["4018"]
    assert msg.get_all("X-KIM-DecryptionResult") is None
    text, embedded = msg.iter_parts()
    assert "an Ihre eigene KIM-Adresse weiter" in text.get_content()
    assert embedded.get_content().get_content_type() == "application/pkcs7-mime"


def test_an_unknown_fault_is_refused(cm: CMSimulator):
    with pytest.raises(Exception, match="Unknown X-Tisim-Fault"):
        send(cm, ALICE, [BOB], message(extra="X-Tisim-Fault: nonsense\r\n"))


@pytest.mark.parametrize("fault", RECEIVE_FAULTS)
def test_every_fault_is_offered_by_tisim_send(cm: CMSimulator, fault: str, capsys: pytest.CaptureFixture[str]):
    argv = ["send", "--data-dir", str(cm.data_dir), "--from", ALICE, "--to", BOB, "--subject", "s", "--fault", fault]
    assert main(argv) == 0, capsys.readouterr().err
    msg = _parse(_retrieve(cm))
    assert "X-Tisim-Fault" not in msg
    expected = {
        "integrity": ["08"],
        "decryption": None,
        "4018": None,
        "unencrypted": None,
        "keep-result-headers": ["01"],
    }
    assert msg.get_all("X-KIM-IntegrityCheckResult") == expected[fault]
