"""Throttling and lockout (django-axes): per account and per address, the German message on the login page,
the cool-off, the managers' unlock page, and the audit of every step."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from mailbox.services.audit import AuditEvent
from tests.mailbox.factories import UserFactory
from tests.signin.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WARD_PC = "10.20.30.40"
OTHER_PC = "10.20.30.41"
LOCKED_TEXT = "Die Anmeldung ist vorübergehend gesperrt"


def sign_in(client, username: str, password: str, address: str = WARD_PC):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def test_thirty_wrong_passwords_lock_the_account_and_the_right_one_is_refused(client, station, settings):
    answers = [sign_in(client, "station", f"falsch-{i}") for i in range(30)]

    limit = settings.AXES_FAILURE_LIMIT
    assert [a.status_code for a in answers[: limit - 1]] == [200] * (limit - 1)
    assert "Benutzername oder Passwort ist falsch." in answers[0].content.decode()
    assert {a.status_code for a in answers[limit - 1 :]} == {429}
    page = sign_in(client, "station", PASSWORD)
    text = page.content.decode()
    assert page.status_code == 429
    assert LOCKED_TEXT in text and "15 Minuten" in text and "Leitung" in text
    assert "Traceback" not in text and 'name="username"' in text and 'value="station"' in text
    assert not signed_in(client)

    failed = AuditEvent.objects.filter(action="signin.failed")
    assert failed.count() == 31
    assert {(e.details["username"], e.details["address"]) for e in failed} == {("station", WARD_PC)}
    assert "falsch" not in str(list(failed.values_list("details", flat=True)))
    locked = AuditEvent.objects.get(action="signin.locked")
    assert (locked.details["username"], locked.details["address"]) == ("station", WARD_PC)
    assert not AuditEvent.objects.filter(action="signin.succeeded").exists()


def test_the_account_stays_locked_from_another_pc_and_in_another_spelling(client, station, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}", address=f"10.0.0.{i + 1}")
    # Every address tried once: the account is what is locked.
    assert sign_in(client, " Station", PASSWORD, address=OTHER_PC).status_code == 429
    assert not signed_in(client)


def test_an_address_trying_many_accounts_is_locked_for_every_account(client, station, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, f"raten{i}", "falsch")
    page = sign_in(client, "station", PASSWORD)
    assert page.status_code == 429 and LOCKED_TEXT in page.content.decode()
    assert not signed_in(client)
    # From another PC the same account signs in.
    assert sign_in(client, "station", PASSWORD, address=OTHER_PC).status_code == 302
    assert signed_in(client)


def test_a_forged_forwarded_address_does_not_escape_the_lock(client, station, settings):
    """Django reads REMOTE_ADDR only; behind nginx uvicorn puts the forwarded address there (tests/deploy)."""
    for i in range(settings.AXES_FAILURE_LIMIT):
        client.post(
            reverse("login"),
            {"username": f"raten{i}", "password": "x"},
            REMOTE_ADDR=WARD_PC,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {WARD_PC}
    assert sign_in(client, "station", PASSWORD).status_code == 429


def test_the_lock_ends_after_the_cool_off(client, station, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    assert sign_in(client, "station", PASSWORD).status_code == 429
    # The clock moved on: the last failure is older than the cool-off.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert sign_in(client, "station", PASSWORD).status_code == 302
    assert signed_in(client)


def test_tries_during_the_lock_do_not_extend_it(client, station, settings):
    """A refused try during the lock no longer restarts the cool-off: one try every 14 minutes from anywhere kept an
    account (the chief physician's) locked for as long as someone kept trying."""
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    cool_off = settings.AXES_COOLOFF_TIME
    AccessAttempt.objects.update(attempt_time=timezone.now() - cool_off + timedelta(minutes=1))
    assert sign_in(client, "station", "noch-ein-versuch").status_code == 429
    # Two minutes on: the lock's last counted failure is older than the cool-off; the refused try does not count.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=2))
    assert sign_in(client, "station", PASSWORD).status_code == 302
    assert signed_in(client)


def test_without_cool_off_only_a_manager_unlocks(client, station, settings):
    settings.AXES_COOLOFF_TIME = None
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(days=30))
    page = sign_in(client, "station", PASSWORD)
    assert page.status_code == 429
    assert "Bitten Sie die Leitung, die Sperre aufzuheben." in page.content.decode()


def test_own_typos_are_forgiven_by_a_sign_in_but_not_a_guessers_tries(client, station, settings):
    limit = settings.AXES_FAILURE_LIMIT
    for i in range(limit - 2):
        sign_in(client, f"raten{i}", "falsch")
    sign_in(client, "station", "vertippt")
    assert sign_in(client, "station", PASSWORD).status_code == 302
    client.post(reverse("logout"), REMOTE_ADDR=WARD_PC)
    # The typo is forgiven: one more guess leaves the address one below the limit …
    sign_in(client, "raten-noch", "falsch")
    assert sign_in(client, "station", PASSWORD).status_code == 302
    client.post(reverse("logout"), REMOTE_ADDR=WARD_PC)
    # … but the guesser's tries from this PC still count: one more and the address is locked.
    sign_in(client, "raten-wieder", "falsch")
    assert sign_in(client, "station", PASSWORD).status_code == 429


def test_a_manager_sees_the_lockouts_and_unlocks_account_and_address(client, station, manager, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    assert sign_in(client, "station", PASSWORD).status_code == 429

    client.force_login(manager)
    url = reverse("manage:signin-lockouts")
    assert url == "/leitung/anmeldesperren/"
    page = client.get(url).content.decode()
    assert "station" in page and WARD_PC in page and page.count("Entsperren") >= 2
    release = reverse("manage:signin-lockout-release")
    response = client.post(release, {"kind": "username", "value": "station"})
    assert response.status_code == 302
    assert "station" not in AccessAttempt.objects.values_list("username", flat=True)
    assert "entsperrt" in client.get(url).content.decode()
    client.post(release, {"kind": "address", "value": WARD_PC})
    assert not AccessAttempt.objects.exists()

    unlocked = AuditEvent.objects.filter(action="signin.unlocked").order_by("id")
    assert [(e.actor_id, e.details["kind"], e.details["value"]) for e in unlocked] == [
        (manager.pk, "username", "station"),
        (manager.pk, "address", WARD_PC),
    ]
    client.post(reverse("logout"))
    assert sign_in(client, "station", PASSWORD).status_code == 302
    assert signed_in(client)


def test_a_bad_unlock_request_changes_nothing(client, station, manager, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    client.force_login(manager)
    before = AccessAttempt.objects.count()
    response = client.post(reverse("manage:signin-lockout-release"), {"kind": "alles", "value": "station"})
    assert response.status_code == 302
    assert AccessAttempt.objects.count() == before
    assert "Diese Sperre gibt es nicht." in client.get(reverse("manage:signin-lockouts")).content.decode()
    assert not AuditEvent.objects.filter(action="signin.unlocked").exists()


@pytest.mark.parametrize("value", ["station", "10.20.30", "<script>", WARD_PC + "x"])
def test_an_unlock_of_an_address_that_is_no_address_changes_nothing(client, station, manager, settings, value):
    # A hand-made request: the address field is an IP address column, which no other text may reach.
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    client.force_login(manager)
    before = AccessAttempt.objects.count()
    response = client.post(reverse("manage:signin-lockout-release"), {"kind": "address", "value": value})
    assert response.status_code == 302
    assert AccessAttempt.objects.count() == before
    assert "Diese Sperre gibt es nicht." in client.get(reverse("manage:signin-lockouts")).content.decode()
    assert not AuditEvent.objects.filter(action="signin.unlocked").exists()


@pytest.mark.parametrize("who", ["owner", "staff", "superuser-less admin"])
def test_the_unlock_page_is_404_for_everyone_but_managers(client, station, who, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    user = UserFactory(username=f"nicht-leitung-{who.split()[0]}", is_staff=who != "owner")
    client.force_login(user)
    assert client.get(reverse("manage:signin-lockouts")).status_code == 404
    response = client.post(reverse("manage:signin-lockout-release"), {"kind": "username", "value": "station"})
    assert response.status_code == 404
    assert AccessAttempt.objects.filter(username="station").exists()
    assert not AuditEvent.objects.filter(action="signin.unlocked").exists()


def test_the_manager_home_links_the_lockouts(client, manager):
    client.force_login(manager)
    assert f'href="{reverse("manage:signin-lockouts")}"' in client.get(reverse("manage:home")).content.decode()
