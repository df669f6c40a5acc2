"""The KIM account in Django admin: password encrypted on save, and "Verbindung testen" over real sockets."""

from __future__ import annotations

import pytest
from django.urls import reverse

from mailbox.models import KimAccount
from tests.mailbox.conftest import PASSWORD
from tests.mailbox.factories import MailboxFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = UserFactory(username="leitung", is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def _form(mailbox, cm, **overrides) -> dict:
    data = {
        "mailbox": mailbox.pk,
        "is_active": "on",
        "cm_host": "127.0.0.1",
        "smtp_port": cm.smtp_port,
        "pop3_port": cm.pop3_port,
        "transport": "implicit_tls",
        "tls_certificate_check": "pinned",
        "tls_ca_certificates": "",
        "tls_client_certificate": "",
        "tls_fingerprint_sha256": ":".join(cm.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper(),
        "timeout_seconds": "5",
        "fachdienst": "klinikum-test.kim.telematik-test:465",
        "fachdienst_pop3": "",
        "mandant_id": "Mandant1",
        "client_system_id": "KIM-Portal",
        "workplace_id": "AP1",
        "user_id": "",
        "konnektor_id": "",
        "smtp_username_template": "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{konnektor}",
        "pop3_username_template": "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{user}#{konnektor}",
        "password": PASSWORD,
        "poll_interval_seconds": "30",
        "keep_on_server_days": "0",
    }
    data.update(overrides)
    return data


def test_admin_saves_the_password_encrypted_and_normalizes_the_fingerprint(admin_client, cm):
    mailbox = MailboxFactory(address="station-kardio@klinikum-test.kim.telematik-test")
    response = admin_client.post(reverse("admin:mailbox_kimaccount_add"), _form(mailbox, cm))
    assert response.status_code == 302, response.content.decode()[:2000]
    account = KimAccount.objects.get(mailbox=mailbox)
    assert PASSWORD not in account.password_encrypted
    assert account.get_password() == PASSWORD
    assert account.tls_fingerprint_sha256 == cm.fingerprint


def test_admin_refuses_a_bad_fingerprint_and_a_missing_password(admin_client, cm):
    mailbox = MailboxFactory()
    response = admin_client.post(
        reverse("admin:mailbox_kimaccount_add"), _form(mailbox, cm, tls_fingerprint_sha256="abc", password="")
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "64 Hex-Zeichen" in html
    assert "Bitte das Passwort des KIM-Kontos eingeben." in html
    assert not KimAccount.objects.exists()


def test_verbindung_testen_reports_success_and_failure_in_german(admin_client, cm, account):
    bad = KimAccount.objects.get(pk=account.pk)
    url = reverse("admin:mailbox_kimaccount_changelist")
    response = admin_client.post(url, {"action": "test_connection", "_selected_action": [account.pk]}, follow=True)
    html = response.content.decode()
    assert "SMTP-Anmeldung erfolgreich" in html
    assert "POP3-Anmeldung erfolgreich" in html

    bad.set_password("falsch")
    bad.save()
    response = admin_client.post(url, {"action": "test_connection", "_selected_action": [account.pk]}, follow=True)
    assert "Passwort falsch" in response.content.decode()


def test_admin_is_for_staff_only(client, cm, account):
    client.force_login(UserFactory(username="station"))
    response = client.get(reverse("admin:mailbox_kimaccount_changelist"))
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_saving_the_account_in_the_admin_leaves_the_fetch_state_written_meanwhile(admin_client, cm, monkeypatch):
    from mailbox.admin import KimAccountAdmin
    from mailbox.services.fetch import account_lease_acquire

    mailbox = MailboxFactory(address="station-kardio@klinikum-test.kim.telematik-test")
    assert admin_client.post(reverse("admin:mailbox_kimaccount_add"), _form(mailbox, cm)).status_code == 302
    account = KimAccount.objects.get(mailbox=mailbox)
    taken: dict[str, str | None] = {}
    save_form = KimAccountAdmin.save_form

    def fetch_meanwhile(self, request, form, change):
        # The admin read the account before this point; a worker takes the fetch lease and records its outcome now.
        taken["token"] = account_lease_acquire(account_id=account.pk)
        KimAccount.objects.filter(pk=account.pk).update(status=KimAccount.Status.OK, consecutive_failures=0)
        return save_form(self, request, form, change)

    monkeypatch.setattr(KimAccountAdmin, "save_form", fetch_meanwhile)
    url = reverse("admin:mailbox_kimaccount_change", args=[account.pk])
    response = admin_client.post(url, _form(mailbox, cm, timeout_seconds="9"))
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.timeout_seconds == 9
    assert taken["token"] and account.fetch_lease_token == taken["token"]
    assert account.status == KimAccount.Status.OK


def test_saving_the_account_in_the_admin_keeps_a_password_changed_meanwhile(admin_client, cm, monkeypatch):
    """A password change (operations.services.kimadmin) that finished during the request is not undone with the
    password this request read; one entered in the form is saved."""
    from mailbox import crypto
    from mailbox.admin import KimAccountAdmin

    mailbox = MailboxFactory(address="station-kardio@klinikum-test.kim.telematik-test")
    assert admin_client.post(reverse("admin:mailbox_kimaccount_add"), _form(mailbox, cm)).status_code == 302
    account = KimAccount.objects.get(mailbox=mailbox)
    save_form = KimAccountAdmin.save_form

    def password_changed_meanwhile(self, request, form, change):
        # The admin bound the form to the account it read; the password change stores the new one now.
        KimAccount.objects.filter(pk=account.pk).update(password_encrypted=crypto.encrypt("neu-beim-Anbieter"))
        return save_form(self, request, form, change)

    monkeypatch.setattr(KimAccountAdmin, "save_form", password_changed_meanwhile)
    url = reverse("admin:mailbox_kimaccount_change", args=[account.pk])
    response = admin_client.post(url, _form(mailbox, cm, password="", timeout_seconds="9"))
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.timeout_seconds == 9
    assert account.get_password() == "neu-beim-Anbieter"

    response = admin_client.post(url, _form(mailbox, cm, password="eingegeben"))
    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.get_password() == "eingegeben"


def test_the_mailbox_chosen_in_the_admin_is_saved_with_the_settings(admin_client, cm):
    """The change form offers the mailbox; a settings-only save that left it out reported the change as saved."""
    first = MailboxFactory(address="station-kardio@klinikum-test.kim.telematik-test")
    second = MailboxFactory(address="station-onko@klinikum-test.kim.telematik-test")
    assert admin_client.post(reverse("admin:mailbox_kimaccount_add"), _form(first, cm)).status_code == 302
    account = KimAccount.objects.get(mailbox=first)

    url = reverse("admin:mailbox_kimaccount_change", args=[account.pk])
    response = admin_client.post(url, _form(second, cm))

    assert response.status_code == 302, response.content.decode()[:2000]
    account.refresh_from_db()
    assert account.mailbox_id == second.pk


@pytest.mark.parametrize("address", ["kardiologie@klinikum-test.de", "kardiologie@klinikum-töst.kim.telematik-test"])
def test_the_admin_takes_only_kim_addresses_for_a_mailbox(admin_client, address):
    from mailbox.models import Mailbox

    owner = UserFactory(username="owner")
    form = {
        "display_name": "Kardiologie",
        "address": address,
        "kind": "functional",
        "is_active": "on",
        "created_at_0": "2026-11-30",
        "created_at_1": "10:00:00",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-user": str(owner.pk),
        "memberships-0-role": "owner",
    }
    response = admin_client.post(reverse("admin:mailbox_mailbox_add"), form)
    assert response.status_code == 200 and "keine KIM-Adresse" in response.content.decode()
    assert not Mailbox.objects.filter(display_name="Kardiologie").exists()
    form["address"] = "Kardiologie@Klinikum-Test.kim.telematik-test"
    response = admin_client.post(reverse("admin:mailbox_mailbox_add"), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Mailbox.objects.get(display_name="Kardiologie").address == "kardiologie@klinikum-test.kim.telematik-test"
