"""The registration wizard for a new KIM address: the provider's registration code, a password against its policy,
the 1.5+ choice with its warning, then the portal's mailbox and account (through mailbox's services) and a fetch
test — against the simulated Account Manager, which creates the Clientmodul account."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.models import KimAccount, Mailbox, Membership
from operations.models import KimRegistration
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import SMCB_TELEMATIK_ID, KimWorld

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture

NEW = "notaufnahme@klinikum-test.kim.telematik-test"
CHOSEN = "Gewaehlt-Passwort-2027!"


def _start(world: KimWorld, client: Client, **overrides: Any) -> Any:
    code = world.am.am.issue_registration_code(NEW, telematik_id=SMCB_TELEMATIK_ID)
    data = {
        "address": NEW,
        "display_name": "Notaufnahme",
        "kind": "functional",
        "owners": [world.owner.pk],
        "template_account": world.account.pk,
        "reference_id": code.reference_id,
        "initial_password": code.initial_password,
    }
    data.update(overrides)
    return client.post(reverse("operations:kim-register-start"), data)


def _step(client: Client, registration: KimRegistration, **data: Any) -> Any:
    return client.post(reverse("operations:kim-register", args=[registration.pk]), data)


def _through_step_3(world: KimWorld, client: Client, version: str = "1.5") -> KimRegistration:
    response = _start(world, client)
    assert response.status_code == 302, response.content.decode()[:3000]
    registration = KimRegistration.objects.get()
    assert _step(client, registration, action="next", password=CHOSEN, password_repeat=CHOSEN).status_code == 302
    data = {"action": "next", "kim_version": version}
    if version == "1.5+":
        data["confirm_plus"] = "on"
    assert _step(client, registration, **data).status_code == 302
    registration.refresh_from_db()
    assert registration.step == KimRegistration.Step.CONFIRM
    return registration


def test_a_manager_registers_a_new_address_and_the_fetch_test_passes(kim: KimWorld) -> None:
    client = kim.client_for(kim.manager)
    page = client.get(reverse("operations:kim-register-start")).content.decode()
    assert "Registrierungscode (referenceID)" in page and "Initialpasswort des Anbieters" in page
    response = _start(kim, client)
    assert response.status_code == 302
    registration = KimRegistration.objects.get()
    # Secrets lie encrypted between the steps.
    assert registration.reference_id_encrypted and registration.get_secret("reference_id") not in str(
        KimRegistration.objects.filter(pk=registration.pk).values().get()
    )
    page = client.get(response.url).content.decode()
    assert "Mindestens 12 und höchstens 256 Zeichen" in page  # the provider's policy, shown before typing
    response = _step(client, registration, action="next", password="zu-kurz", password_repeat="zu-kurz")
    assert response.status_code == 422
    assert "erfüllt die Regeln des KIM-Anbieters nicht" in response.content.decode()
    assert _step(client, registration, action="next", password=CHOSEN, password_repeat=CHOSEN).status_code == 302
    page = client.get(reverse("operations:kim-register", args=[registration.pk])).content.decode()
    assert "KAS" in page and "1.5+" in page  # the spec's warning next to the choice
    response = _step(client, registration, action="next", kim_version="1.5+")
    assert response.status_code == 422
    assert "Für KIM 1.5+ bitte bestätigen" in response.content.decode()
    assert _step(client, registration, action="next", kim_version="1.5+", confirm_plus="on").status_code == 302
    page = client.get(reverse("operations:kim-register", args=[registration.pk])).content.decode()
    assert NEW in page and "Notaufnahme" in page and kim.owner.get_full_name() in page

    response = _step(client, registration, action="register")
    assert response.status_code == 200, response.content.decode()[:3000]
    page = response.content.decode()
    assert "ist registriert" in page
    assert "SMTP-Anmeldung erfolgreich." in page and "POP3-Anmeldung erfolgreich" in page

    mailbox = Mailbox.objects.get(address=NEW)
    account = KimAccount.objects.get(mailbox=mailbox)
    assert account.get_password() == CHOSEN and kim.cm_password(NEW) == CHOSEN
    assert account.cm_host == kim.account.cm_host and account.pop3_port == kim.account.pop3_port
    assert account.client_system_id == kim.account.client_system_id
    assert Membership.objects.get(mailbox=mailbox, user=kim.owner).role == Membership.Role.OWNER
    record = kim.am.am.account_record(NEW)
    assert record is not None and record["kimVersion"] == "1.5+"
    registration.refresh_from_db()
    assert registration.state == KimRegistration.State.DONE and registration.mailbox == mailbox
    r = registration
    assert (r.reference_id_encrypted, r.initial_password_encrypted, r.password_encrypted) == ("", "", "")
    assert AuditEvent.objects.get(action="kim.registered").details == {"address": NEW, "kim_version": "1.5+"}
    assert AuditEvent.objects.filter(action="mailbox.created", mailbox_address=NEW).exists()
    # The new owner administers it from now on.
    owner_page = kim.client_for(kim.owner).get(reverse("operations:kim-account", args=[mailbox.pk]))
    assert owner_page.status_code == 200 and "1.5+" in owner_page.content.decode()


def test_a_wrong_registration_code_creates_nothing(kim: KimWorld) -> None:
    client = kim.client_for(kim.manager)
    registration = _through_step_3(kim, client)
    registration.set_secret("reference_id", "FALSCH-123")
    registration.save()
    response = _step(client, registration, action="register")
    assert response.status_code == 422
    page = response.content.decode()
    assert "Registrierung abgelehnt: Registrierungscode, Initialpasswort oder SMC-B passen nicht zusammen." in page
    assert "Es wurde nichts geändert." in page
    assert not Mailbox.objects.filter(address=NEW).exists()
    assert kim.cm_password(NEW) is None
    registration.refresh_from_db()
    assert registration.state == KimRegistration.State.DRAFT
    assert AuditEvent.objects.get(action="kim.registration_failed").details["status"] == 401


def test_an_address_taken_at_the_provider_is_409_in_german(kim: KimWorld) -> None:
    kim.cm.add_account(NEW, "Jemand-Anderes-2026!")
    client = kim.client_for(kim.manager)
    registration = _through_step_3(kim, client)
    response = _step(client, registration, action="register")
    assert response.status_code == 422
    assert "Diese KIM-Adresse ist bereits vergeben." in response.content.decode()
    assert not Mailbox.objects.filter(address=NEW).exists()
    assert kim.cm_password(NEW) == "Jemand-Anderes-2026!"


def test_registered_at_the_provider_but_the_mailbox_cannot_be_created_a_second_click_finishes(
    kim: KimWorld,
) -> None:
    client = kim.client_for(kim.manager)
    registration = _through_step_3(kim, client)
    # Meanwhile someone created a mailbox with that address by hand.
    blocker = Mailbox.objects.create(address=NEW, display_name="Von Hand")
    response = _step(client, registration, action="register")
    assert response.status_code == 422
    assert "Ein Postfach mit der Adresse" in response.content.decode()
    registration.refresh_from_db()
    assert registration.state == KimRegistration.State.REGISTERED
    assert kim.cm_password(NEW) == CHOSEN  # the provider has it
    page = client.get(reverse("operations:kim-register", args=[registration.pk])).content.decode()
    assert "Postfach im Portal anlegen" in page
    blocker.delete()
    response = _step(client, registration, action="register")
    assert response.status_code == 200
    assert KimAccount.objects.get(mailbox__address=NEW).get_password() == CHOSEN
    registrations = [r for r in kim.am.am.seen if r.method == "POST" and r.path.endswith("/account")]
    assert len(registrations) == 1  # registered once, not twice


def test_step_one_refuses_what_the_portal_can_tell(kim: KimWorld) -> None:
    client = kim.client_for(kim.manager)
    response = _start(kim, client, address=kim.mailbox.address, reference_id="", owners=[])
    assert response.status_code == 422
    page = response.content.decode()
    assert "Ein Postfach mit dieser Adresse gibt es im Portal schon." in page
    assert "Dieses Feld ist zwingend erforderlich." in page  # reference id (the provider requires one) and owners
    assert not KimRegistration.objects.exists()


@pytest.mark.parametrize("address", ["notaufnahme@klinikum-müller.kim.telematik-test", "notaufnahme@klinikum-test.de"])
def test_step_one_refuses_an_address_that_is_no_kim_address(kim: KimWorld, address: str) -> None:
    """An e-mail address is not yet a KIM address: one with an umlaut in its domain was taken, and its mailbox could
    never send (building the mail failed with a 500) nor fetch."""
    seen = len(kim.am.am.seen)
    response = _start(kim, kim.client_for(kim.manager), address=address)
    assert response.status_code == 422
    assert "ist keine KIM-Adresse (…@….kim.telematik)" in html.unescape(response.content.decode())
    assert not KimRegistration.objects.exists()
    # Only the provider's rules were read for the form; nothing was registered.
    assert [r.method for r in list(kim.am.am.seen)[seen:]] == ["GET"]


@pytest.mark.parametrize("name", ["Notauf\x07nahme", "Notauf\u202enahme", "Notauf\nnahme"])
def test_step_one_refuses_a_display_name_with_control_characters(kim: KimWorld, name: str) -> None:
    """The name becomes the new mailbox's in every list and its mail's From: no bell, line break or bidi override."""
    response = _start(kim, kim.client_for(kim.manager), display_name=name)
    assert response.status_code == 422
    assert "Der Anzeigename darf keine Steuerzeichen enthalten." in response.content.decode()
    assert not KimRegistration.objects.exists()


@pytest.mark.parametrize("value", ["²", "①", "9" * 30, "-1"])
def test_step_one_takes_any_connection_template_choice_without_a_500(kim: KimWorld, value: str) -> None:
    """The choice is read before the form to ask the provider for its rules: "²" passed str.isdigit() and the
    database lookup raised."""
    client = kim.client_for(kim.manager)
    client.raise_request_exception = False
    assert client.get(reverse("operations:kim-register-start"), {"template_account": value}).status_code == 200
    response = _start(kim, client, template_account=value)
    assert response.status_code == 422
    assert "template_account" in response.context["form"].errors
    assert not KimRegistration.objects.exists()


def test_cancel_wipes_the_secrets_and_back_goes_back(kim: KimWorld) -> None:
    client = kim.client_for(kim.manager)
    registration = _through_step_3(kim, client)
    assert _step(client, registration, action="back").status_code == 302
    registration.refresh_from_db()
    assert registration.step == KimRegistration.Step.VERSION
    assert _step(client, registration, action="cancel").status_code == 302
    registration.refresh_from_db()
    assert registration.state == KimRegistration.State.ABANDONED
    assert not (registration.reference_id_encrypted or registration.password_encrypted)
    assert client.get(reverse("operations:kim-register", args=[registration.pk])).status_code == 404


def test_a_lost_answer_to_the_registration_is_found_out_on_the_next_click(
    kim: KimWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider registers the address but its answer is lost (500): the next click is refused (the code is used
    up), and the portal sees that the account takes the chosen password — it is ours — and creates the mailbox."""
    from tisim.accountmanager.server import ApiError

    original = kim.am.am.register

    def registered_then_500(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise ApiError(500, "Internal Server Error")

    client = kim.client_for(kim.manager)
    registration = _through_step_3(kim, client)
    monkeypatch.setattr(kim.am.am, "register", registered_then_500)
    response = _step(client, registration, action="register")
    assert response.status_code == 422
    assert "ist ungewiss" in response.content.decode()
    assert not Mailbox.objects.filter(address=NEW).exists()
    monkeypatch.setattr(kim.am.am, "register", original)
    response = _step(client, registration, action="register")
    assert response.status_code == 200, response.content.decode()[:3000]
    assert KimAccount.objects.get(mailbox__address=NEW).get_password() == CHOSEN


def test_someone_elses_account_behind_a_refusal_is_not_taken_for_ours(kim: KimWorld) -> None:
    kim.cm.add_account(NEW, "Jemand-Anderes-2026!")
    client = kim.client_for(kim.manager)
    registration = _through_step_3(kim, client)
    registration.set_secret("reference_id", "FALSCH-123")
    registration.save()
    response = _step(client, registration, action="register")
    assert "Registrierung abgelehnt" in response.content.decode()
    assert not Mailbox.objects.filter(address=NEW).exists()
