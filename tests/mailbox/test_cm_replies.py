"""POP3 (RFC 2449) and SMTP answers of the Clientmodul read right: German text and retry per code.

The POP3 codes come from the simulator's real login over TLS; SMTP replies are smtplib's own
exception objects, as the client gets them.
"""

from __future__ import annotations

import smtplib

import pytest

from mailbox.clients.pop3 import Pop3Refused
from mailbox.clients.smtp import SmtpRefused, smtp_error
from mailbox.clients.tls import CmAuthFailed
from mailbox.models import KimAccount, Message
from mailbox.services.accounts import account_test_connection, cm_error_message
from mailbox.services.fetch import account_fetch
from tests.mailbox.conftest import HOSPITAL, simple_mail

pytestmark = pytest.mark.django_db(transaction=True)

# code → (words the German text must carry, account status, retry seconds at poll interval 30 s)
POP3_CODES = {
    "AUTH": ("Passwort falsch", KimAccount.Status.AUTH_FAILED, 30),
    "IN-USE": ("KIS", KimAccount.Status.UNREACHABLE, 30),
    "LOGIN-DELAY": ("zwischen zwei Abrufen", KimAccount.Status.UNREACHABLE, 300),
    "SYS/TEMP": ("Vorübergehender Fehler", KimAccount.Status.UNREACHABLE, 30),
    "SYS/PERM": ("Dauerhafter Fehler", KimAccount.Status.ERROR, 3600),
}


@pytest.mark.parametrize("code", sorted(POP3_CODES))
def test_each_pop3_login_code_has_its_text_status_and_retry(cm, account, code):
    words, status, retry = POP3_CODES[code]
    cm.deliver(HOSPITAL, simple_mail("Wartet"))
    cm.faults.add_login(HOSPITAL, code=code, times=1)

    result = account_fetch(account_id=account.pk)

    assert words in result.error
    assert f"[{code}]" in result.error or code == "AUTH"
    if code != "AUTH":
        assert "Passwort falsch" not in result.error
    account.refresh_from_db()
    assert account.status == status
    assert (account.next_fetch_at - account.last_attempt_at).total_seconds() == retry
    assert Message.objects.count() == 0 and len(cm.maildrop_uidls(HOSPITAL)) == 1

    # The code answered once; the next fetch gets in.
    assert account_fetch(account_id=account.pk).error == ""
    assert Message.objects.count() == 1


def test_in_use_backs_off_gently_and_not_beyond_five_minutes(cm, account):
    cm.faults.add_login(HOSPITAL, code="IN-USE", times=None)
    delays = []
    for _ in range(6):
        account_fetch(account_id=account.pk)
        account.refresh_from_db()
        delays.append((account.next_fetch_at - account.last_attempt_at).total_seconds())
    assert delays == [30, 60, 120, 240, 300, 300]


def test_the_connection_test_tells_in_use_from_a_wrong_password(cm, account):
    cm.faults.add_login(HOSPITAL, code="IN-USE", times=1)
    pop3 = next(c for c in account_test_connection(account=account) if c.protocol == "POP3")
    assert not pop3.ok
    assert "belegt" in pop3.message and "Passwort falsch" not in pop3.message


def test_a_real_in_use_from_a_second_session_is_not_a_password_problem(cm, account):
    from mailbox.clients.pop3 import pop3_session
    from mailbox.services.accounts import account_endpoint

    endpoint = account_endpoint(account, "pop3")
    with pop3_session(endpoint), pytest.raises(Pop3Refused) as refused, pop3_session(endpoint):
        pass  # the KIS (here: a first session) holds the maildrop
    assert refused.value.code == "IN-USE"
    assert "belegt" in cm_error_message(refused.value, host="cm", port=8995)


def _smtp_exc(code: int, text: bytes, cls: type[smtplib.SMTPResponseException] = smtplib.SMTPResponseException):
    return cls(code, text)


@pytest.mark.parametrize(
    ("code", "text", "words", "temporary"),
    [
        (421, b"4.3.2 Service not available, closing channel", "vorübergehend nicht bereit", True),
        (454, b"4.7.0 Temporary authentication failure", "vorübergehend nicht prüfen", True),
        (452, b"4.3.1 Insufficient system storage", "keinen Platz", True),
        (530, b"5.7.0 Authentication required", "verlangt eine Anmeldung", False),
        (552, b"5.3.4 Message size exceeds fixed limit", "zu groß", False),
        (550, b"5.1.1 Recipient unknown", "Empfängeradresse", False),
        (554, b"5.6.0 Transaction failed", "dauerhaft abgelehnt", False),
        (451, b"Local error in processing", "vorübergehend abgelehnt", True),
    ],
)
def test_smtp_replies_get_german_text_by_code_and_enhanced_code(code, text, words, temporary):
    error = smtp_error(_smtp_exc(code, text))
    assert isinstance(error, SmtpRefused)
    assert error.temporary is temporary
    message = cm_error_message(error, host="cm", port=8465)
    assert words in message
    assert ("später erneut" in message) is temporary
    assert str(code) in message


def test_smtp_535_is_the_password_and_454_is_not():
    wrong = smtp_error(_smtp_exc(535, b"5.7.8 Authentication credentials invalid", smtplib.SMTPAuthenticationError))
    assert isinstance(wrong, CmAuthFailed)
    assert "Passwort falsch" in cm_error_message(wrong, host="cm", port=8465)
    busy = smtp_error(_smtp_exc(454, b"4.7.0 Temporary authentication failure", smtplib.SMTPAuthenticationError))
    assert not isinstance(busy, CmAuthFailed)
    assert "Passwort falsch" not in cm_error_message(busy, host="cm", port=8465)
