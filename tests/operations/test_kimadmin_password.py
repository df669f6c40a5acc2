"""The KIM password: the provider's (the simulated Account Manager, which changes the simulated Clientmodul's login)
and the portal's stored copy change together, or neither — whatever fails on the way."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.models import KimAccount
from operations.models import PasswordChange
from operations.services import kimadmin
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import NEW_PASSWORD, PASSWORD, KimWorld
from tisim.accountmanager.server import ApiError

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture


def _url(world: KimWorld) -> str:
    return reverse("operations:kim-password", args=[world.mailbox.pk])


def _post(world: KimWorld, user: Any = None, password: str = NEW_PASSWORD, repeat: str | None = None) -> Any:
    return world.client_for(user or world.owner).post(
        _url(world), {"password": password, "password_repeat": password if repeat is None else repeat}
    )


def _assert_unchanged(world: KimWorld) -> None:
    """Provider and portal both still hold the old password, and the portal's one logs in at the CM."""
    assert world.cm_password() == PASSWORD
    assert world.stored_password() == PASSWORD
    account = KimAccount.objects.get(pk=world.account.pk)
    assert kimadmin.cm_login_test(account, account.get_password()) == kimadmin.LoginTest.VALID
    assert not PasswordChange.objects.filter(state__in=PasswordChange.OPEN).exists()


def _assert_changed(world: KimWorld) -> None:
    assert world.cm_password() == NEW_PASSWORD
    assert world.stored_password() == NEW_PASSWORD
    account = KimAccount.objects.get(pk=world.account.pk)
    assert kimadmin.cm_login_test(account, account.get_password()) == kimadmin.LoginTest.VALID
    change = PasswordChange.objects.get()
    assert change.state == PasswordChange.State.APPLIED
    # Settled: no copy of either password is left on the change.
    assert change.new_password_encrypted == "" and change.old_password_encrypted == ""


def test_owner_changes_the_password_at_the_provider_and_in_the_portal(kim: KimWorld) -> None:
    page = kim.client_for(kim.owner).get(_url(kim)).content.decode()
    assert "Mindestens 12 und höchstens 256 Zeichen" in page  # the provider's policy text (ServiceInformation)
    response = _post(kim)
    assert response.status_code == 302, response.content.decode()[:3000]
    _assert_changed(kim)
    event = AuditEvent.objects.get(action="kim.password_changed")
    assert event.actor_id == kim.owner.pk and event.mailbox_id == kim.mailbox.pk
    assert NEW_PASSWORD not in str(event.details) and PASSWORD not in str(event.details)


@pytest.mark.parametrize(
    ("password", "repeat", "message"),
    [
        ("kurz", None, "Das Passwort erfüllt die Regeln des KIM-Anbieters nicht: Mindestens 12"),
        ("nurkleinbuchstaben-und-lang", None, "erfüllt die Regeln des KIM-Anbieters nicht"),
        (NEW_PASSWORD, "Anders-Passwort-2027!", "Die beiden Eingaben stimmen nicht überein."),
        ("Steuer\x07Zeichen-2027!", None, "Das Passwort darf keine Steuerzeichen enthalten."),
        ("A1!a" * 65, None, "höchstens 256 Zeichen"),
    ],
)
def test_bad_passwords_are_refused_before_anything_is_sent(
    kim: KimWorld, password: str, repeat: str | None, message: str
) -> None:
    seen = len(kim.am.am.seen)
    response = _post(kim, password=password, repeat=repeat)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not [r for r in list(kim.am.am.seen)[seen:] if r.method == "PUT"]
    _assert_unchanged(kim)
    assert not PasswordChange.objects.exists()


def test_clear_refusals_change_nothing(kim: KimWorld) -> None:
    for status, text in (
        (401, "Die Anmeldung am Account Manager ist fehlgeschlagen"),
        (420, "Das neue Passwort entspricht nicht den Passwortregeln des Anbieters."),
        (423, "Der Eintrag im Verzeichnisdienst ist gesperrt"),
        (409, "Diese KIM-Adresse ist bereits vergeben."),
    ):
        kim.am.am.arm_fault("status", status=status, path="/AccountMgmt/")
        response = _post(kim, user=kim.manager)
        assert response.status_code == 422
        page = response.content.decode()
        assert text in page and "Es wurde nichts geändert." in page, status
        _assert_unchanged(kim)
    assert PasswordChange.objects.filter(state=PasswordChange.State.REJECTED).count() == 4
    assert AuditEvent.objects.filter(action="kim.password_change_failed").count() == 4
    assert not AuditEvent.objects.filter(action="kim.password_changed").exists()


def test_provider_down_or_failing_before_the_change_is_settled_by_a_login_test(kim: KimWorld) -> None:
    # 500 before anything happened at the provider: uncertain for the portal, the CM still takes the old one.
    kim.am.am.arm_fault("status", status=500, path="/account/")
    response = _post(kim)
    assert response.status_code == 422
    page = response.content.decode()
    assert "Interner Fehler beim Account Manager" in page and "es gilt weiter das bisherige Passwort" in page
    _assert_unchanged(kim)
    assert PasswordChange.objects.get().outcome_text.startswith("Der Anbieter hat die Änderung nicht übernommen")
    # The provider down altogether.
    kim.am.am.stop()
    response = _post(kim)
    assert "Der Account Manager des KIM-Anbieters ist nicht erreichbar." in response.content.decode()
    _assert_unchanged(kim)


def test_provider_changes_it_and_then_times_out_the_login_test_finds_the_new_password(
    kim: KimWorld, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.KIMPORTAL_ACCOUNT_MANAGER_TIMEOUT = 1.0
    original = kim.am.am.set_account

    def applied_then_silent(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        kim.am.am.released.wait(timeout=20)  # the portal gives up after a second

    monkeypatch.setattr(kim.am.am, "set_account", applied_then_silent)
    try:
        response = _post(kim)
    finally:
        kim.am.am.release()
    assert response.status_code == 302, response.content.decode()[:3000]
    _assert_changed(kim)
    assert AuditEvent.objects.get(action="kim.password_changed").details["settled_by"] == "login_test"


def test_provider_changes_it_answers_500_and_the_cm_is_unreachable_the_next_visit_settles_it(
    kim: KimWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = kim.am.am.set_account

    def applied_then_500(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise ApiError(500, "Internal Server Error")

    monkeypatch.setattr(kim.am.am, "set_account", applied_then_500)
    # The CM cannot be asked either (the account points to a closed port for a moment).
    ports = (kim.account.smtp_port, kim.account.pop3_port)
    KimAccount.objects.filter(pk=kim.account.pk).update(smtp_port=1, pop3_port=1)
    response = _post(kim)
    assert response.status_code == 422
    assert "noch ungewiss" in response.content.decode()
    change = PasswordChange.objects.get()
    assert change.state == PasswordChange.State.UNCERTAIN and change.new_password() == NEW_PASSWORD
    # Nothing is stored yet; a second change waits for this one.
    assert kim.stored_password() == PASSWORD and kim.cm_password() == NEW_PASSWORD
    KimAccount.objects.filter(pk=kim.account.pk).update(smtp_port=ports[0], pop3_port=ports[1])
    # The next visit of the account's page asks the CM again and stores what it accepts.
    page = kim.client_for(kim.owner).get(reverse("operations:kim-account", args=[kim.mailbox.pk]))
    assert page.status_code == 200
    assert "Der Anbieter hat das neue Passwort, es ist gespeichert." in page.content.decode()
    _assert_changed(kim)


def _fail_password_updates() -> None:
    """A real database failure: PostgreSQL refuses any change of the stored password (undone with the test)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION kimadmin_test_refuse() RETURNS trigger AS $$ BEGIN "
            "IF NEW.password_encrypted IS DISTINCT FROM OLD.password_encrypted THEN "
            "RAISE EXCEPTION 'simulated storage failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER kimadmin_test_refuse BEFORE UPDATE ON mailbox_kimaccount "
            "FOR EACH ROW EXECUTE FUNCTION kimadmin_test_refuse()"
        )


def _allow_password_updates() -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER kimadmin_test_refuse ON mailbox_kimaccount")


def test_provider_accepts_but_the_portal_cannot_store_it_the_provider_gets_the_old_one_back(kim: KimWorld) -> None:
    _fail_password_updates()
    response = _post(kim)
    assert response.status_code == 422
    assert "beim Anbieter wurde das bisherige Passwort wiederhergestellt" in response.content.decode()
    _assert_unchanged(kim)
    change = PasswordChange.objects.get()
    assert change.state == PasswordChange.State.REJECTED
    assert AuditEvent.objects.get(action="kim.password_change_failed").details["settled_by"] == "undo"
    # Two PUTs reached the provider: the change and its undo.
    assert [r.method for r in kim.am.am.seen if "/account/" in r.path and r.method == "PUT"] == ["PUT", "PUT"]


def test_provider_accepts_the_portal_cannot_store_it_and_the_undo_fails_too_nothing_is_lost(
    kim: KimWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = kim.am.am.set_account
    calls: list[int] = []

    def second_call_fails(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) > 1:
            raise ApiError(500, "Internal Server Error")
        original(*args, **kwargs)

    monkeypatch.setattr(kim.am.am, "set_account", second_call_fails)
    _fail_password_updates()
    response = _post(kim)
    assert response.status_code == 422
    assert "Die Änderung ist offen" in response.content.decode()
    change = PasswordChange.objects.get()
    assert change.is_open and change.new_password() == NEW_PASSWORD  # kept, encrypted
    assert kim.cm_password() == NEW_PASSWORD and kim.stored_password() == PASSWORD
    # Another change must wait for this one.
    _allow_password_updates()
    with pytest.raises(kimadmin.KimAdminError, match="noch nicht abgeschlossen"):
        kimadmin.password_change(user=kim.owner, mailbox=kim.mailbox, new_password="Noch-Ein-Passwort-1!")
    # Once the database works again, the next visit stores the provider's password.
    kim.client_for(kim.owner).get(reverse("operations:kim-password", args=[kim.mailbox.pk]))
    _assert_changed(kim)


def test_an_open_change_keeps_both_passwords_encrypted_at_rest(kim: KimWorld) -> None:
    """While a change is open, both passwords lie encrypted in the database, never in clear."""
    change = PasswordChange.objects.create(
        account=kim.account,
        new_password_encrypted=kimadmin.crypto.encrypt(NEW_PASSWORD),
        old_password_encrypted=kim.account.password_encrypted,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM operations_passwordchange WHERE id = %s", [change.pk])
        row = " ".join(str(v) for v in cursor.fetchone())
    assert NEW_PASSWORD not in row and PASSWORD not in row


def test_two_tabs_at_once_one_change_wins_and_the_other_is_refused(
    kim: KimWorld, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tab A's change is at the provider (held there) when tab B submits another password: B is refused by the
    open change (row lock and partial unique constraint), A finishes, and provider and portal agree on A's."""
    import threading

    original = kim.am.am.set_account
    at_provider, go_on = threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> None:
        at_provider.set()
        assert go_on.wait(timeout=30)
        original(*args, **kwargs)

    monkeypatch.setattr(kim.am.am, "set_account", held)
    outcome: dict[str, Any] = {}

    def tab_a() -> None:
        try:
            outcome["a"] = kimadmin.password_change(user=kim.owner, mailbox=kim.mailbox, new_password=NEW_PASSWORD)
        except Exception as exc:  # reported below
            outcome["a"] = exc
        finally:
            from django.db import connection as thread_connection

            thread_connection.close()

    thread = threading.Thread(target=tab_a)
    thread.start()
    try:
        assert at_provider.wait(timeout=30)
        with pytest.raises(kimadmin.KimAdminError, match="noch nicht abgeschlossen"):
            kimadmin.password_change(user=kim.manager, mailbox=kim.mailbox, new_password="Zweiter-Tab-2027!")
    finally:
        go_on.set()
        thread.join(timeout=60)
    assert isinstance(outcome["a"], PasswordChange), outcome
    _assert_changed(kim)


def test_a_visit_while_the_change_is_at_the_provider_leaves_it_to_the_change(
    kim: KimWorld, transactional_db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A colleague opens the account's KIM page while the owner's change is at the provider, which then takes it but
    answers 500 (as after a timeout). The visit must not settle the running change: a login test then finds only the
    old password and closed it as "rejected", wiping both passwords, and the change's own settle afterwards had none
    to try — provider on the new password, portal on the old one, and the change open for good."""
    import threading

    original = kim.am.am.set_account
    at_provider, go_on = threading.Event(), threading.Event()

    def held_then_500(*args: Any, **kwargs: Any) -> None:
        at_provider.set()
        assert go_on.wait(timeout=30)
        original(*args, **kwargs)
        raise ApiError(500, "Internal Server Error")

    monkeypatch.setattr(kim.am.am, "set_account", held_then_500)
    outcome: dict[str, Any] = {}

    def owner_tab() -> None:
        try:
            outcome["change"] = kimadmin.password_change(user=kim.owner, mailbox=kim.mailbox, new_password=NEW_PASSWORD)
        except Exception as exc:  # reported below
            outcome["change"] = exc
        finally:
            from django.db import connection as thread_connection

            thread_connection.close()

    thread = threading.Thread(target=owner_tab)
    thread.start()
    try:
        assert at_provider.wait(timeout=30)
        page = kim.client_for(kim.manager).get(reverse("operations:kim-account", args=[kim.mailbox.pk]))
        assert page.status_code == 200
        assert "Eine Passwortänderung wird gerade ausgeführt" in page.content.decode()
        assert PasswordChange.objects.get().state == PasswordChange.State.PENDING
    finally:
        go_on.set()
        thread.join(timeout=60)
    assert isinstance(outcome["change"], PasswordChange), outcome
    _assert_changed(kim)
    assert not AuditEvent.objects.filter(action="kim.password_change_failed").exists()
