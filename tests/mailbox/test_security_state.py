"""The rule for the CM's result headers (docs/security-headers.md): when the portal says "Sicher empfangen"."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbox.models.kimresults import SecurityState, assess_security, error_explanations, split_cm_note
from mailbox.parsing import parse_message

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "spec" / "kim" / "samples"
S = SecurityState


@pytest.mark.parametrize(
    ("decryption", "integrity", "state"),
    [
        (["00"], ["01"], S.SECURE),
        ([], [], S.NONE),
        (["00"], ["08"], S.FAILED),
        (["00"], ["06", "08"], S.FAILED),  # several failures are normal (FAQ)
        (["00"], ["01", "08"], S.FAILED),  # a forged "01" does not hide the CM's "08"
        (["00"], ["08", "01"], S.FAILED),
        (["4009"], [], S.FAILED),
        (["X99"], ["01"], S.FAILED),
        (["00", "00"], ["01"], S.UNCLEAR),  # one copy came from someone other than the CM
        (["00"], ["01", "01"], S.UNCLEAR),
        (["00"], [], S.UNCLEAR),
        ([], ["01"], S.UNCLEAR),
        (["OK"], ["01"], S.UNCLEAR),
        ([""], ["01"], S.UNCLEAR),
        (["00 01"], ["01"], S.UNCLEAR),
        (["=?utf-8?q?00?="], ["01"], S.UNCLEAR),
        (["0"], ["1"], S.UNCLEAR),  # not IDs a CM writes (two digits at least)
        (["01"], ["00"], S.FAILED),  # well-formed IDs, but not the OK ones
    ],
)
def test_state_from_result_values(decryption, integrity, state):
    assert assess_security(decryption, integrity).state == state


def test_results_in_an_error_mail_or_out_of_office_reply_cannot_be_secure():
    assert assess_security(["00"], ["01"], kim_error_codes=["4018"]).state == S.UNCLEAR
    assert assess_security(["00"], ["01"], dienstkennung=" KIM-Mail ; abwesend ; V1.0").state == S.UNCLEAR
    assert assess_security(["00"], ["01"], dienstkennung="KIM-Mail;Default;V1.0").state == S.SECURE


def test_unclear_says_why():
    reasons = [str(r) for r in assess_security(["00", "00"], ["=?utf-8?q?01?="]).reasons]
    assert any("mehrfach" in r for r in reasons)
    assert any("„=?utf-8?q?01?=“" in r for r in reasons)


HEAD = b"From: a@praxis.kim.telematik\r\nTo: b@klinik.kim.telematik\r\nSubject: Befund\r\n"


@pytest.mark.parametrize(
    ("headers", "decryption", "integrity"),
    [
        (b"X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n", ["00"], ["01"]),
        (b"x-kim-decryptionresult:00\r\nX-Kim-IntegrityCheckResult:\t01 \r\n", ["00"], ["01"]),
        (b"X-KIM-DecryptionResult:\r\n 00\r\nX-KIM-IntegrityCheckResult: 01\r\n", ["00"], ["01"]),
        # RFC 5322 obs-optional: whitespace before the colon is still a field; the stdlib alone
        # would end the header block here and lose the result.
        (b"X-KIM-DecryptionResult : 00\r\nX-KIM-IntegrityCheckResult\t: 01\r\n", ["00"], ["01"]),
        (b"X-KIM-DecryptionResult: =?utf-8?q?00?=\r\nX-KIM-IntegrityCheckResult: 01\r\n", ["=?utf-8?q?00?="], ["01"]),
        (b"X-KIM-DecryptionResult:\r\nX-KIM-IntegrityCheckResult: 01\r\n", [""], ["01"]),
    ],
)
def test_result_headers_are_read_as_written(headers, decryption, integrity):
    result = parse_message(HEAD + headers + b"\r\nText\r\n")
    assert (result.decryption_results, result.integrity_results) == (decryption, integrity)
    assert result.subject == "Befund"
    assert result.text_body.strip() == "Text"


def test_forged_copy_beside_the_cms_is_seen_in_any_spelling():
    raw = (
        b"X-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n"  # the CM's, on top
        + HEAD
        + b"x-kim-decryptionresult : 00\r\nX-KIM-INTEGRITYCHECKRESULT: 01\r\n\r\nText\r\n"
    )
    result = parse_message(raw)
    assert result.decryption_results == ["00", "00"]
    assert assess_security(result.decryption_results, result.integrity_results).state == S.UNCLEAR


def test_results_inside_an_embedded_mail_do_not_count():
    raw = (
        HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nWeitergeleitet\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: x@y\r\nX-KIM-DecryptionResult: 00\r\nX-KIM-IntegrityCheckResult: 01\r\n\r\nalt\r\n--b--\r\n"
    )
    result = parse_message(raw)
    assert (result.decryption_results, result.integrity_results) == ([], [])


def test_a_flood_of_result_headers_is_capped():
    raw = HEAD + b"X-KIM-DecryptionResult: 00\r\n" * 5000 + b"\r\nText\r\n"
    result = parse_message(raw)
    assert len(result.decryption_results) == 20
    assert assess_security(result.decryption_results, []).state == S.UNCLEAR


def test_gematik_samples_get_the_state_they_describe():
    received = parse_message((SAMPLES / "extracted" / "ILF_PS_example_received_client_mail.eml").read_bytes())
    assert assess_security(received.decryption_results, received.integrity_results).state == S.SECURE
    final = parse_message((SAMPLES / "KAS" / "2_4_Client-Mail_finalisiert.txt").read_bytes())
    assert assess_security(final.decryption_results, final.integrity_results).state == S.SECURE
    notice = parse_message(
        (SAMPLES / "extracted" / "FAQ_example_integrity_check_failed_error_message.eml").read_bytes()
    )
    assessment = assess_security(notice.decryption_results, notice.integrity_results)
    assert (assessment.state, assessment.failed_integrity) == (S.FAILED, ("08",))


def test_the_vermerk_of_gematiks_sample_is_split_from_the_letter():
    raw = (SAMPLES / "KAS" / "2_4_Client-Mail_finalisiert.txt").read_bytes()
    # The sample's umlauts are UTF-8 encoded twice (a documentation slip); the split does not care.
    letter, note = split_cm_note(parse_message(raw).text_body)
    assert letter.strip() == "Text der Testnachricht"
    assert note.startswith("Die Nachricht wurde entschl") and note.endswith("erfolgreich geprÃ¼ft.")


def test_split_keeps_text_that_follows_and_text_without_a_note():
    text = "Brief\n\n" + "-" * 45 + "\nDie Nachricht wurde entschlüsselt.\n\nZweiter Teil\n"
    assert split_cm_note(text) == ("Brief\n\nZweiter Teil\n", "Die Nachricht wurde entschlüsselt.")
    assert split_cm_note("Nur Text\n-----\n") == ("Nur Text\n-----\n", "")


def test_known_error_codes_are_explained_and_others_left_as_numbers():
    explained = dict(error_explanations(["4018", "4999", "X012"]))
    assert list(explained) == ["4018"]
    assert "Account Manager" in str(explained["4018"])
