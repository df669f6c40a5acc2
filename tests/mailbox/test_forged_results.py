"""Forged security headers and CM notices through the simulator's SMTP and POP3 into the portal.

A hostile sender writes X-KIM-DecryptionResult: 00 / X-KIM-IntegrityCheckResult: 01 into its mail.
The portal must never show "Sicher empfangen" for it unless the receiving CM's own results say so
under the rule in docs/security-headers.md.
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from mailbox.models import Message
from mailbox.models.kimresults import SecurityState
from mailbox.services.fetch import account_fetch
from tests.mailbox.conftest import send_as_practice, simple_mail

pytestmark = pytest.mark.django_db(transaction=True)

SECURE_TEXT = "Sicher empfangen"


def _forged(subject: str, *, fault: str | None = None, extra: bytes = b"", body: str = "Hallo") -> bytes:
    raw = simple_mail(subject, body=body)
    head, _, rest = raw.partition(b"\n\n")
    forged = b"\nX-KIM-DecryptionResult: 00\nX-KIM-IntegrityCheckResult: 01" + extra
    if fault:
        forged += b"\nX-Tisim-Fault: " + fault.encode()
    return head + forged + b"\n\n" + rest


def _fetch_one(cm, account, raw: bytes) -> Message:
    send_as_practice(cm, raw)
    result = account_fetch(account_id=account.pk)
    assert not result.error
    return Message.objects.get()


def _pages(client, member, message: Message) -> tuple[str, str]:
    client.force_login(member)
    inbox = client.get(reverse("mailbox:inbox")).content.decode()
    detail = client.get(reverse("mailbox:message-detail", args=[message.pk])).content.decode()
    return inbox, detail


def test_forged_results_on_an_unencrypted_mail_are_not_secure(cm, account, member, client):
    message = _fetch_one(cm, account, _forged("Gefälscht", fault="unencrypted"))
    assert (message.decryption_results, message.integrity_results) == ([], [])
    assert message.security.state == SecurityState.NONE
    _inbox, detail = _pages(client, member, message)
    assert SECURE_TEXT not in detail
    assert "Keine KIM-Prüfergebnisse vorhanden" in detail


def test_forged_results_kept_by_the_cm_make_the_state_unclear(cm, account, member, client):
    message = _fetch_one(cm, account, _forged("Doppelt", fault="keep-result-headers"))
    assert message.decryption_results == ["00", "00"]
    assert message.security.state == SecurityState.UNCLEAR
    inbox, detail = _pages(client, member, message)
    assert SECURE_TEXT not in detail
    assert "Sicherheitsstatus unklar" in detail
    assert "steht mehrfach in der Nachricht" in detail
    assert "Sicherheitsstatus unklar" in inbox


@pytest.mark.parametrize(
    "variant",
    [
        b"\nx-kim-decryptionresult:   00  ",  # another spelling of the same name: a third result
        b"\nX-KIM-DecryptionResult : 00",  # not a header field to the portal's parser, maybe to another
        b"\nX-KIM-IntegrityCheckResult: =?utf-8?q?01?=",
    ],
)
def test_spelling_variants_do_not_pass_as_the_cms_result(cm, account, variant):
    message = _fetch_one(cm, account, _forged("Variante", fault="keep-result-headers", extra=variant))
    assert message.security.state == SecurityState.UNCLEAR


def test_a_cm_that_strips_forged_results_leaves_only_its_own(cm, account, member, client):
    message = _fetch_one(cm, account, _forged("Ehrlich verschlüsselt", extra=b"\nX-KIM-DecryptionResult : 00"))
    assert (message.decryption_results, message.integrity_results) == (["00"], ["01"])
    assert message.security.state == SecurityState.SECURE
    _inbox, detail = _pages(client, member, message)
    assert SECURE_TEXT in detail


def test_a_forged_ok_cannot_hide_the_cms_integrity_failure(cm, account, member, client):
    message = _fetch_one(cm, account, _forged("Manipuliert", fault="integrity"))
    assert message.integrity_results == ["08"]
    assert message.security.state == SecurityState.FAILED
    inbox, detail = _pages(client, member, message)
    assert SECURE_TEXT not in detail
    assert "Integritätsprüfung ist fehlgeschlagen" in detail
    assert "Sicherheitswarnung" in inbox


def test_forged_out_of_office_claiming_success_is_unclear(cm, account):
    raw = _forged("Abwesend", fault="keep-result-headers").replace(
        b"\nX-KIM-DecryptionResult: 00\nX-KIM-IntegrityCheckResult: 01",
        b"\nX-KIM-Dienstkennung: KIM-Mail;Abwesend;V1.0",
    )
    message = _fetch_one(cm, account, raw)
    assert (message.decryption_results, message.integrity_results) == (["00"], ["01"])
    assert message.security.state == SecurityState.UNCLEAR


def test_decryption_failure_notice_is_shown_as_failed(cm, account, member, client):
    message = _fetch_one(cm, account, _forged("Nicht lesbar", fault="decryption"))
    assert message.decryption_results == ["4009"]
    assert message.kim_error_codes == ["4009"]
    assert message.security.state == SecurityState.FAILED
    assert [a.content_type for a in message.attachments.all()] == ["message/rfc822"]
    inbox, detail = _pages(client, member, message)
    assert "Die Entschlüsselung ist fehlgeschlagen" in detail
    assert "Der Schlüssel ist nicht verfügbar" in detail
    assert SECURE_TEXT not in detail
    assert "Sicherheitswarnung" in inbox and "Fehlermeldung" in inbox


def test_large_message_notice_is_labelled(cm, account, member, client):
    message = _fetch_one(cm, account, simple_mail("Großes Bild", X_Tisim_Fault="4018"))
    assert message.kim_error_codes == ["4018"]
    assert message.security.state == SecurityState.NONE
    inbox, detail = _pages(client, member, message)
    assert "Große Nachricht nicht empfangen" in inbox
    assert "Große Nachricht nicht empfangen" in detail
    assert "Account Manager" in detail
    assert SECURE_TEXT not in detail


def test_the_cms_note_is_shown_apart_from_the_letter(cm, account, member, client):
    message = _fetch_one(cm, account, simple_mail("Mit Vermerk", body="Sehr geehrte Kollegin,\nanbei der Befund."))
    assert "Die Nachricht wurde entschlüsselt." in message.text_body
    letter, note = message.text_and_cm_note
    assert letter.strip() == "Sehr geehrte Kollegin,\nanbei der Befund."
    assert note == "Die Nachricht wurde entschlüsselt.\nDie Signatur wurde erfolgreich geprüft."
    _inbox, detail = _pages(client, member, message)
    body, _, aside = detail.partition('class="cm-note"')
    assert "Vermerk des KIM-Clientmoduls" in aside
    assert "Die Signatur wurde erfolgreich geprüft." in aside
    assert "Die Signatur wurde erfolgreich geprüft." not in body.split('class="text-body"', 1)[1]


def test_a_note_typed_by_the_sender_of_an_unencrypted_mail_stays_in_the_text(cm, account):
    text = "Hallo\n\n---------------------------------------------\nDie Nachricht wurde entschlüsselt.\n"
    message = _fetch_one(cm, account, simple_mail("Getippt", body=text, X_Tisim_Fault="unencrypted"))
    assert message.text_and_cm_note == (message.text_body, "")
