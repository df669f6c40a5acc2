"""The KIM account form's TLS part: plain only when confirmed, the pin or a CA, a client certificate
whose key belongs to it (stored encrypted), and the migration of the old single TLS choice."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from mailbox.forms import KimAccountAdminForm
from mailbox.models import KimAccount
from tests.mailbox.factories import KimAccountFactory, MailboxFactory, UserFactory
from tisim.tls import ClientCertificate, ensure_certificate, ensure_client_ca, issue_client_certificate

pytestmark = pytest.mark.django_db
PIN = "ab" * 32


def _data(mailbox, **overrides) -> dict:
    data = {
        "mailbox": mailbox.pk,
        "is_active": "on",
        "cm_host": "127.0.0.1",
        "smtp_port": "8465",
        "pop3_port": "8995",
        "transport": "implicit_tls",
        "tls_certificate_check": "pinned",
        "tls_fingerprint_sha256": PIN,
        "tls_ca_certificates": "",
        "tls_client_certificate": "",
        "timeout_seconds": "5",
        "fachdienst": "",
        "fachdienst_pop3": "",
        "mandant_id": "M",
        "client_system_id": "CS",
        "workplace_id": "WP",
        "user_id": "",
        "konnektor_id": "",
        "smtp_username_template": "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{konnektor}",
        "pop3_username_template": "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{user}#{konnektor}",
        "password": "kim-secret",
        "poll_interval_seconds": "30",
        "keep_on_server_days": "0",
    }
    data.update(overrides)
    return data


@pytest.fixture
def issued(tmp_path: Path) -> ClientCertificate:
    return issue_client_certificate(ensure_client_ca(tmp_path / "ca"), "kim-portal")


def test_plain_needs_an_explicit_confirmation() -> None:
    mailbox = MailboxFactory()
    form = KimAccountAdminForm(_data(mailbox, transport="plain", tls_fingerprint_sha256=""))
    assert not form.is_valid()
    assert "ausdrücklich bestätigt" in str(form.errors["confirm_plain"])
    form = KimAccountAdminForm(_data(mailbox, transport="plain", tls_fingerprint_sha256="", confirm_plain="on"))
    assert form.is_valid(), form.errors
    assert form.save().transport == KimAccount.Transport.PLAIN


def test_starttls_with_a_pin_needs_the_fingerprint_and_ca_needs_none() -> None:
    mailbox = MailboxFactory()
    form = KimAccountAdminForm(_data(mailbox, transport="starttls", tls_fingerprint_sha256=""))
    assert "der Fingerabdruck erforderlich" in str(form.errors["tls_fingerprint_sha256"])
    form = KimAccountAdminForm(
        _data(mailbox, transport="starttls", tls_certificate_check="ca", tls_fingerprint_sha256="")
    )
    assert form.is_valid(), form.errors


def test_ca_certificates_must_be_pem(tmp_path: Path) -> None:
    mailbox = MailboxFactory()
    form = KimAccountAdminForm(_data(mailbox, tls_certificate_check="ca", tls_ca_certificates="kein Zertifikat"))
    assert "PEM-Format" in str(form.errors["tls_ca_certificates"])
    pem = ensure_certificate(tmp_path / "cm").cert_path.read_text()
    form = KimAccountAdminForm(_data(mailbox, tls_certificate_check="ca", tls_ca_certificates=pem))
    assert form.is_valid(), form.errors


def test_a_client_certificate_is_saved_with_its_key_encrypted(issued: ClientCertificate) -> None:
    mailbox = MailboxFactory()
    form = KimAccountAdminForm(_data(mailbox, tls_client_certificate=issued.cert_pem, client_key=issued.key_pem))
    assert form.is_valid(), form.errors
    account = form.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT tls_client_key_encrypted FROM mailbox_kimaccount WHERE id = %s", [account.pk])
        (stored,) = cursor.fetchone()
    assert "PRIVATE KEY" not in stored
    assert KimAccount.objects.get(pk=account.pk).get_client_key().strip() == issued.key_pem.strip()

    # Editing without a new key keeps the stored one; removing drops both.
    form = KimAccountAdminForm(_data(mailbox, tls_client_certificate=issued.cert_pem, password=""), instance=account)
    assert form.is_valid(), form.errors
    form.save()
    assert KimAccount.objects.get(pk=account.pk).tls_client_key_encrypted == stored
    form = KimAccountAdminForm(
        _data(mailbox, tls_client_certificate=issued.cert_pem, password="", remove_client_certificate="on"),
        instance=account,
    )
    assert form.is_valid(), form.errors
    form.save()
    account.refresh_from_db()
    assert account.tls_client_certificate == "" and account.tls_client_key_encrypted == ""


def test_an_encrypted_key_needs_its_passphrase(issued: ClientCertificate) -> None:
    key = serialization.load_pem_private_key(issued.key_pem.encode(), password=None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"geheim"),
    ).decode()
    mailbox = MailboxFactory()
    form = KimAccountAdminForm(_data(mailbox, tls_client_certificate=issued.cert_pem, client_key=locked))
    assert "Passphrase angeben" in str(form.errors["client_key_passphrase"])
    form = KimAccountAdminForm(
        _data(mailbox, tls_client_certificate=issued.cert_pem, client_key=locked, client_key_passphrase="falsch")
    )
    assert "Passphrase ist falsch" in str(form.errors["client_key"])
    form = KimAccountAdminForm(
        _data(mailbox, tls_client_certificate=issued.cert_pem, client_key=locked, client_key_passphrase="geheim")
    )
    assert form.is_valid(), form.errors
    stored = form.save().get_client_key()
    assert "ENCRYPTED" not in stored
    assert serialization.load_pem_private_key(stored.encode(), password=None).public_key() == key.public_key()


def test_a_key_of_another_certificate_an_expired_certificate_or_a_lone_key_are_refused(
    tmp_path: Path, issued: ClientCertificate
) -> None:
    ca = ensure_client_ca(tmp_path / "ca")
    other = issue_client_certificate(ca, "other")
    mailbox = MailboxFactory()
    form = KimAccountAdminForm(_data(mailbox, tls_client_certificate=issued.cert_pem, client_key=other.key_pem))
    assert "gehört nicht zu diesem Client-Zertifikat" in str(form.errors["client_key"])

    now = dt.datetime.now(dt.UTC)
    expired = issue_client_certificate(
        ca, "alt", not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1)
    )
    form = KimAccountAdminForm(_data(mailbox, tls_client_certificate=expired.cert_pem, client_key=expired.key_pem))
    assert "abgelaufen" in str(form.errors["tls_client_certificate"])

    form = KimAccountAdminForm(_data(mailbox, client_key=issued.key_pem))
    assert "fehlt das Client-Zertifikat" in str(form.errors["client_key"])
    # The form comes back with its error, without the pasted key in the page.
    key_body = issued.key_pem.strip().splitlines()[1]
    assert key_body not in str(form["client_key"]) and "PRIVATE KEY" not in str(form["client_key"])
    form = KimAccountAdminForm(_data(mailbox, tls_client_certificate=issued.cert_pem))
    assert "privaten Schlüssel" in str(form.errors["client_key"])
    assert not KimAccount.objects.exists()


def test_the_admin_page_shows_the_tls_choices(client) -> None:
    client.force_login(UserFactory(username="leitung", is_staff=True, is_superuser=True))
    account = KimAccountFactory()
    html = client.get(reverse("admin:mailbox_kimaccount_change", args=[account.pk])).content.decode()
    for text in (
        "Transportsicherung",
        "STARTTLS (SMTP) / STLS (POP3)",
        "UNSICHER",
        "Client-Zertifikat",
        "confirm_plain",
    ):
        assert text in html
    listing = client.get(reverse("admin:mailbox_kimaccount_changelist")).content.decode()
    assert "UNSICHER: unverschlüsselt" in listing  # the factory's account is plain


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_accounts_working() -> None:
    executor = MigrationExecutor(connection)
    old = [("mailbox", "0010_notification_work_returned")]
    new = [("mailbox", "0011_kimaccount_transport_security")]
    executor.migrate(old)
    apps = executor.loader.project_state(old).apps
    Mailbox = apps.get_model("mailbox", "Mailbox")
    Account = apps.get_model("mailbox", "KimAccount")
    for i, mode in enumerate(["none", "system_ca", "pinned"]):
        box = Mailbox.objects.create(address=f"m{i}@klinik.kim.telematik", display_name=mode)
        Account.objects.create(mailbox=box, tls_mode=mode, tls_fingerprint_sha256=PIN, mandant_id="M")
    executor = MigrationExecutor(connection)
    executor.migrate(new)
    apps = executor.loader.project_state(new).apps
    rows = {
        a.mailbox.display_name: (a.transport, a.tls_certificate_check, a.tls_check_hostname)
        for a in apps.get_model("mailbox", "KimAccount").objects.select_related("mailbox")
    }
    assert rows == {
        "none": ("plain", "pinned", False),
        "system_ca": ("implicit_tls", "ca", True),
        "pinned": ("implicit_tls", "pinned", False),
    }
    # And back: the old choice is restored.
    executor = MigrationExecutor(connection)
    executor.migrate(old)
    apps = executor.loader.project_state(old).apps
    modes = {a.mailbox.display_name: a.tls_mode for a in apps.get_model("mailbox", "KimAccount").objects.all()}
    assert modes == {"none": "none", "system_ca": "system_ca", "pinned": "pinned"}
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
