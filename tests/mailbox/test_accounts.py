"""'Verbindung testen' against the simulator's real SMTP and POP3, and credentials at rest."""

from __future__ import annotations

import socket
import threading

import pytest
from django.db import connection

from mailbox.models import KimAccount, build_username
from mailbox.services.accounts import account_test_connection
from tests.mailbox.conftest import HOSPITAL, simple_mail

pytestmark = pytest.mark.django_db


def _checks(account):
    return {c.protocol: c for c in account_test_connection(account=account)}


def test_connection_test_succeeds_with_pinned_tls(cm, account):
    cm.deliver(HOSPITAL, simple_mail())
    checks = _checks(account)
    assert checks["SMTP"].ok and checks["POP3"].ok
    assert "1 Nachricht" in checks["POP3"].message


def test_wrong_password_is_reported_in_german(cm, account):
    account.set_password("falsch")
    checks = _checks(account)
    assert not checks["SMTP"].ok and not checks["POP3"].ok
    assert "Passwort falsch" in checks["SMTP"].message
    assert "Passwort falsch" in checks["POP3"].message


def test_fingerprint_mismatch_is_reported(cm, account):
    account.tls_fingerprint_sha256 = "ab" * 32
    checks = _checks(account)
    assert "Fingerabdruck" in checks["SMTP"].message
    assert "Fingerabdruck" in checks["POP3"].message


def test_host_unreachable_is_reported(cm, account):
    cm.stop()
    checks = _checks(account)
    assert "nicht erreichbar" in checks["SMTP"].message
    assert "nicht erreichbar" in checks["POP3"].message


def test_timeout_is_reported():
    # A listener that accepts and never says a word: the CM hangs.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    accepted = []
    stop = threading.Event()

    def accept_loop() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        from tests.mailbox.factories import KimAccountFactory

        account = KimAccountFactory(smtp_port=port, pop3_port=port, timeout_seconds=0.5)
        checks = _checks(account)
    finally:
        stop.set()
        thread.join()
        for sock in accepted:
            sock.close()
        server.close()
    assert "Zeitüberschreitung" in checks["SMTP"].message
    assert "Zeitüberschreitung" in checks["POP3"].message


def test_password_is_encrypted_at_rest(account):
    with connection.cursor() as cursor:
        cursor.execute("SELECT password_encrypted FROM mailbox_kimaccount WHERE id = %s", [account.pk])
        (stored,) = cursor.fetchone()
    assert "kim-secret" not in stored
    assert KimAccount.objects.get(pk=account.pk).get_password() == "kim-secret"


def test_credentials_survive_key_rotation(settings, account):
    from cryptography.fernet import Fernet

    from mailbox import crypto

    old_keys = list(settings.KIMPORTAL_CREDENTIALS_KEYS)
    settings.KIMPORTAL_CREDENTIALS_KEYS = [Fernet.generate_key().decode(), *old_keys]
    crypto._fernet.cache_clear()
    try:
        assert KimAccount.objects.get(pk=account.pk).get_password() == "kim-secret"
    finally:
        settings.KIMPORTAL_CREDENTIALS_KEYS = old_keys
        crypto._fernet.cache_clear()


@pytest.mark.parametrize(
    ("template", "parts", "expected"),
    [
        (
            "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{konnektor}",
            {"fachdienst": "fd.kim.telematik:465", "konnektor": ""},
            "a@b.kim.telematik#fd.kim.telematik:465#M#CS#WP",
        ),
        (
            "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{user}#{konnektor}",
            {"fachdienst": "fd.kim.telematik:995", "user": "", "konnektor": "Konn_1"},
            "a@b.kim.telematik#fd.kim.telematik:995#M#CS#WP#*#Konn_1",
        ),
        (
            "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}",
            {"fachdienst": ""},
            "a@b.kim.telematik#*#M#CS#WP",
        ),
        ("{address}", {}, "a@b.kim.telematik"),
    ],
)
def test_username_uses_placeholders_for_skipped_parts(template, parts, expected):
    values = {"address": "a@b.kim.telematik", "mandant": "M", "clientsystem": "CS", "workplace": "WP", "user": ""}
    values.update({"fachdienst": "", "konnektor": ""} | parts)
    assert build_username(template, **values) == expected
