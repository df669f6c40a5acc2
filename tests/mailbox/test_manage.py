"""The managers' pages (Leitung): home and navigation, the members service for managers, the mailbox wizard with
its connection test, deactivation, groups, absences, bulk changes and the access report with its export."""

from __future__ import annotations

import csv
import html
import io
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from kimportal.errors import NotAllowed, PortalError
from mailbox.models import Absence, KimAccount, Mailbox, Membership, Message, OutgoingMessage
from mailbox.permissions import user_role
from mailbox.selectors import access
from mailbox.selectors.mailboxes import display_name
from mailbox.services import manage

# The event model through the mailbox's door to the trail: the same import whichever app holds the table.
from mailbox.services.audit import AuditEvent
from mailbox.services.fetch import account_lease_acquire
from mailbox.services.ingest import message_ingest
from mailbox.services.members import membership_set
from tests.mailbox.conftest import HOSPITAL, PASSWORD
from tests.mailbox.factories import KimAccountFactory, MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tisim.cm import CMSimulator

Role = Membership.Role

pytestmark = pytest.mark.django_db


def make_manager(**kwargs):
    user = UserFactory(**kwargs)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def test_the_navigation_links_the_manager_home_for_managers_only(client):
    manager, staff = make_manager(), UserFactory()
    home = reverse("manage:home")
    assert home == "/leitung/"

    client.force_login(manager)
    page = client.get(reverse("mailbox:inbox")).content.decode()
    assert f'href="{home}"' in page
    assert client.get(home).status_code == 200

    client.force_login(staff)
    assert f'href="{home}"' not in client.get(reverse("mailbox:inbox")).content.decode()
    assert client.get(home).status_code == 404


# --- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def manager():
    return make_manager(username="leitung")


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def _ingest(mailbox, uidl: str = "1") -> Message:
    return message_ingest(mailbox=mailbox, uidl=uidl, raw=MAIL_WITH_PDF)


def _assign(message: Message, person) -> None:
    Message.objects.filter(pk=message.pk).update(assignee=person, state=Message.State.IN_PROGRESS)


# --- the members service: a manager who is no owner; the grant is recorded --------------------------------------


def test_a_manager_who_is_no_member_sets_members_and_the_grant_is_recorded(manager):
    box = MailboxFactory()
    MembershipFactory(mailbox=box, role=Role.OWNER)
    colleague = UserFactory()
    before = timezone.now()

    membership = membership_set(user=manager, mailbox=box, username=colleague.username, role=Role.READER)

    assert (membership.granted_by, membership.role) == (manager, Role.READER)
    assert membership.granted_at is not None and membership.granted_at >= before
    first_grant = membership.granted_at
    # The same role again keeps the original grant; a new role is a new grant.
    other = make_manager()
    assert membership_set(user=other, mailbox=box, username=colleague.username, role=Role.READER).granted_by == manager
    changed = membership_set(user=other, mailbox=box, username=colleague.username, role=Role.PROCESSOR)
    assert changed.granted_by == other and changed.granted_at > first_grant
    assert user_role(manager, box) is None  # managing grants no membership


def test_a_plain_user_still_may_not_set_members():
    box = MailboxFactory()
    MembershipFactory(mailbox=box, role=Role.OWNER)
    reader = MembershipFactory(mailbox=box, role=Role.READER).user
    with pytest.raises(NotAllowed):
        membership_set(user=reader, mailbox=box, username=UserFactory().username, role=Role.OWNER)


# --- the mailbox page: members, grant, removal -----------------------------------------------------------------------


def test_leitung_gives_ownership_on_the_mailbox_page_and_sees_since_and_by_whom(client, manager):
    box = MailboxFactory(display_name="Kardiologie")
    MembershipFactory(mailbox=box, role=Role.OWNER, user=UserFactory(username="altowner"))
    aerztin = UserFactory(username="aerztin", first_name="Anna", last_name="Ärztin")
    client.force_login(manager)

    response = client.post(reverse("manage:mailbox", args=[box.pk]), {"user": aerztin.pk, "role": Role.OWNER})

    assert response.status_code == 302
    membership = Membership.objects.get(mailbox=box, user=aerztin)
    assert (membership.role, membership.granted_by) == (Role.OWNER, manager)
    event = _events("membership.set")[-1]
    assert (event.actor_id, event.mailbox_id, event.details["member"]) == (manager.pk, box.pk, "aerztin")
    page = client.get(reverse("manage:mailbox", args=[box.pk])).content.decode()
    assert "Anna Ärztin" in page
    assert timezone.localtime(membership.granted_at).strftime("%d.%m.%Y %H:%M") in page
    assert "vor Einführung" in page  # the old owner's row predates the grant record


def test_the_mailbox_page_refuses_to_remove_the_last_owner_and_keeps_it(client, manager):
    box = MailboxFactory()
    owner = MembershipFactory(mailbox=box, role=Role.OWNER)
    client.force_login(manager)
    response = client.post(reverse("manage:mailbox-member-remove", args=[box.pk, owner.pk]), follow=True)
    assert "mindestens einen Eigentümer" in response.content.decode()
    assert Membership.objects.filter(pk=owner.pk).exists()


def test_an_owner_who_steps_down_lands_on_a_page_they_may_see_not_a_refusal(client):
    box = MailboxFactory(display_name="Aufnahme")
    leaving, staying = UserFactory(), UserFactory()
    own = MembershipFactory(mailbox=box, user=leaving, role=Role.OWNER)
    MembershipFactory(mailbox=box, user=staying, role=Role.OWNER)
    client.force_login(leaving)

    response = client.post(reverse("mailbox:mailbox-member-remove", args=[box.pk, own.pk]), follow=True)

    assert response.status_code == 200
    assert "Sie verwalten das Postfach Aufnahme nicht mehr." in response.content.decode()
    assert not Membership.objects.filter(pk=own.pk).exists()
    # Removing someone else still returns to the members page, with a confirmation.
    client.force_login(staying)
    other = MembershipFactory(mailbox=box, user=UserFactory(), role=Role.READER)
    response = client.post(reverse("mailbox:mailbox-member-remove", args=[box.pk, other.pk]))
    assert response["Location"] == reverse("mailbox:mailbox-members", args=[box.pk])


def test_the_group_page_refuses_to_take_the_last_owner_out_of_the_owners_group(client, manager):
    box = MailboxFactory(display_name="Kardiologie")
    leads = Group.objects.create(name="Leitung Kardiologie")
    lead = UserFactory(username="chefin")
    leads.user_set.add(lead)
    Membership.objects.create(mailbox=box, group=leads, role=Role.OWNER)
    client.force_login(manager)

    response = client.post(reverse("manage:group-member-remove", args=[leads.pk, lead.pk]), follow=True)

    assert response.status_code == 200
    assert "Kardiologie: Ein Postfach braucht mindestens einen Eigentümer." in response.content.decode()
    assert leads.user_set.filter(pk=lead.pk).exists() and user_role(lead, box) == Role.OWNER


def test_the_grant_form_needs_exactly_one_person_or_group(client, manager):
    box = MailboxFactory()
    client.force_login(manager)
    response = client.post(reverse("manage:mailbox", args=[box.pk]), {"role": Role.READER})
    assert response.status_code == 422
    assert "genau eine Person oder eine Gruppe" in response.content.decode()
    assert not Membership.objects.filter(mailbox=box).exists()


# --- the wizard: mailbox, KIM account, "Verbindung testen" against the simulated CM, owners -------------------------


def _wizard_data(cm, owner, **overrides) -> dict:
    data = {
        "address": HOSPITAL,
        "display_name": "Station Kardiologie",
        "kind": "functional",
        "owners": [owner.pk],
        "is_active": "on",
        "cm_host": "127.0.0.1",
        "smtp_port": str(cm.smtp_port),
        "pop3_port": str(cm.pop3_port),
        "transport": "implicit_tls",
        "tls_certificate_check": "pinned",
        "tls_fingerprint_sha256": cm.fingerprint,
        "timeout_seconds": "5",
        "mandant_id": "M",
        "client_system_id": "CS",
        "workplace_id": "WP",
        "smtp_username_template": "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{konnektor}",
        "pop3_username_template": "{address}#{fachdienst}#{mandant}#{clientsystem}#{workplace}#{user}#{konnektor}",
        "password": PASSWORD,
        "poll_interval_seconds": "30",
        "keep_on_server_days": "0",
    }
    data.update(overrides)
    return data


def test_the_wizard_tests_the_connection_without_saving_then_creates_the_mailbox(client, manager, cm):
    aerztin = UserFactory(username="aerztin")
    client.force_login(manager)
    url = reverse("manage:mailbox-create")
    assert "Verbindung testen" in client.get(url).content.decode()

    tested = client.post(url, {**_wizard_data(cm, aerztin), "action": "test"}, headers={"HX-Request": "true"})
    assert tested.status_code == 200
    assert "SMTP-Anmeldung erfolgreich" in tested.content.decode()
    assert "POP3-Anmeldung erfolgreich" in tested.content.decode()
    assert not Mailbox.objects.exists() and not KimAccount.objects.exists()

    wrong = client.post(
        url, {**_wizard_data(cm, aerztin, password="falsch"), "action": "test"}, headers={"HX-Request": "true"}
    )
    assert "fehlgeschlagen" in wrong.content.decode()
    assert not Mailbox.objects.exists()

    created = client.post(url, {**_wizard_data(cm, aerztin), "action": "create"})
    box = Mailbox.objects.get(address=HOSPITAL)
    assert created.status_code == 302 and created["Location"] == reverse("manage:mailbox", args=[box.pk])
    assert box.account.get_password() == PASSWORD and box.account.password_encrypted != PASSWORD
    assert box.account.tls_fingerprint_sha256 == cm.fingerprint
    owner = Membership.objects.get(mailbox=box)
    assert (owner.user, owner.role, owner.granted_by) == (aerztin, Role.OWNER, manager)
    assert _events("mailbox.created")[0].actor_id == manager.pk
    assert user_role(aerztin, box) == Role.OWNER and user_role(manager, box) is None


def test_the_wizard_keeps_the_input_and_saves_nothing_when_a_field_is_wrong(client, manager, cm):
    aerztin = UserFactory()
    client.force_login(manager)
    response = client.post(
        reverse("manage:mailbox-create"),
        {**_wizard_data(cm, aerztin, tls_fingerprint_sha256="zz", owners=[]), "action": "create"},
    )
    assert response.status_code == 422
    page = response.content.decode()
    assert "64 Hex-Zeichen" in page and "Station Kardiologie" in page
    assert not Mailbox.objects.exists() and not KimAccount.objects.exists()
    # An htmx test with a wrong field lists the errors in the result (the form itself is not redrawn).
    tested = client.post(
        reverse("manage:mailbox-create"),
        {**_wizard_data(cm, aerztin, tls_fingerprint_sha256="zz"), "action": "test"},
        headers={"HX-Request": "true"},
    )
    assert "64 Hex-Zeichen" in tested.content.decode() and "<form" not in tested.content.decode()


@pytest.mark.parametrize("address", ["station@klinikum-müller.kim.telematik-test", "station@klinikum-test.de"])
def test_the_wizard_refuses_an_address_that_is_no_kim_address(client, manager, cm, address):
    """An e-mail address is not yet a KIM address: one with an umlaut in its domain was taken, and its mailbox could
    never send (building the mail failed with a 500) nor fetch."""
    client.force_login(manager)
    response = client.post(
        reverse("manage:mailbox-create"), {**_wizard_data(cm, UserFactory(), address=address), "action": "create"}
    )
    assert response.status_code == 422
    assert "ist keine KIM-Adresse (…@….kim.telematik)" in html.unescape(response.content.decode())
    assert not Mailbox.objects.exists() and not KimAccount.objects.exists()


def test_the_account_page_tests_entered_values_and_saves_with_an_audit_without_secrets(client, manager, account, cm):
    client.force_login(manager)
    url = reverse("manage:mailbox-account", args=[account.mailbox.pk])
    data = {
        k: v for k, v in _wizard_data(cm, manager).items() if k not in {"address", "display_name", "kind", "owners"}
    }
    data["password"] = ""  # kept: the stored one is used for the test
    tested = client.post(url, {**data, "action": "test"}, headers={"HX-Request": "true"})
    assert "SMTP-Anmeldung erfolgreich" in tested.content.decode()

    saved = client.post(url, {**data, "timeout_seconds": "7", "action": "save"})
    assert saved.status_code == 302
    account.refresh_from_db()
    assert account.timeout_seconds == 7 and account.get_password() == PASSWORD
    event = _events("account.changed")[-1]
    assert event.actor_id == manager.pk and "timeout_seconds" in event.details["fields"]
    assert PASSWORD not in str(event.details)


def test_saving_the_account_leaves_the_fetch_state_that_the_worker_wrote_meanwhile(manager):
    # The page's copy of the account is read before the save; a fetch may take its lease and record its outcome in
    # between. Writing that stale copy back would drop the lease (a second worker could fetch at once) and the
    # fetch's status.
    account = KimAccountFactory()
    page_copy = KimAccount.objects.get(pk=account.pk)
    token = account_lease_acquire(account_id=account.pk)
    fetched_at = timezone.now()
    KimAccount.objects.filter(pk=account.pk).update(
        status=KimAccount.Status.OK, last_success_at=fetched_at, consecutive_failures=0
    )

    page_copy.timeout_seconds = 9
    manage.account_save(user=manager, account=page_copy, changed=["timeout_seconds"])

    account.refresh_from_db()
    assert account.timeout_seconds == 9
    assert token and account.fetch_lease_token == token
    assert (account.status, account.last_success_at) == (KimAccount.Status.OK, fetched_at)


def test_saving_the_account_page_keeps_a_password_changed_meanwhile(client, manager, account, cm, monkeypatch):
    """A password change (operations.services.kimadmin) that finished during the request is not undone with the
    password the page's form read; one entered on the page is saved."""
    from mailbox import crypto, manage_forms

    client.force_login(manager)
    url = reverse("manage:mailbox-account", args=[account.mailbox.pk])
    data = {
        k: v for k, v in _wizard_data(cm, manager).items() if k not in {"address", "display_name", "kind", "owners"}
    }
    form_save = manage_forms.AccountForm.save

    def password_changed_meanwhile(form, commit=True):
        # The page bound the form to the account it read; the password change stores the new one now.
        KimAccount.objects.filter(pk=account.pk).update(password_encrypted=crypto.encrypt("neu-beim-Anbieter"))
        return form_save(form, commit=commit)

    monkeypatch.setattr(manage_forms.AccountForm, "save", password_changed_meanwhile)
    saved = client.post(url, {**data, "password": "", "timeout_seconds": "7", "action": "save"})
    assert saved.status_code == 302
    account.refresh_from_db()
    assert account.timeout_seconds == 7
    assert account.get_password() == "neu-beim-Anbieter"

    saved = client.post(url, {**data, "password": "eingegeben", "action": "save"})
    assert saved.status_code == 302
    account.refresh_from_db()
    assert account.get_password() == "eingegeben"


@pytest.mark.parametrize("where", ["smtp_port", "pop3_port", "cm_host"])
def test_the_stored_password_goes_to_no_other_clientmodul_without_being_entered_again(
    client, manager, account, cm, tmp_path, where
):
    # Another server that would accept the account (a copy, or one that accepts anything): the portal must not
    # hand it the stored password on a test, unaudited, just because a manager typed its address.
    other = CMSimulator(tmp_path / "other", accounts={HOSPITAL: PASSWORD}, tls=True)
    other.start()
    try:
        client.force_login(manager)
        url = reverse("manage:mailbox-account", args=[account.mailbox.pk])
        data = {
            k: v for k, v in _wizard_data(cm, manager).items() if k not in {"address", "display_name", "kind", "owners"}
        }
        moved = {"smtp_port": str(other.smtp_port), "pop3_port": str(other.pop3_port), "cm_host": "localhost"}
        data.update(password="", tls_fingerprint_sha256=other.fingerprint)
        if where == "cm_host":
            data.update(moved)
        else:
            data[where] = moved[where]

        tested = client.post(url, {**data, "action": "test"}, headers={"HX-Request": "true"})
        assert "Anmeldung erfolgreich" not in tested.content.decode()
        assert "Passwort erneut eingeben" in tested.content.decode()
        saved = client.post(url, {**data, "action": "save"})
        assert saved.status_code == 422 and "Passwort erneut eingeben" in saved.content.decode()
        account.refresh_from_db()
        assert (account.cm_host, account.smtp_port, account.pop3_port) == ("127.0.0.1", cm.smtp_port, cm.pop3_port)
        assert not _events("account.changed")

        # Entered again, the password is the manager's own choice to send there.
        again = client.post(url, {**data, "password": PASSWORD, "action": "test"}, headers={"HX-Request": "true"})
        assert "Anmeldung erfolgreich" in again.content.decode()
    finally:
        other.stop()


@pytest.mark.parametrize(
    "weaker",
    [
        {"transport": "plain", "confirm_plain": "on"},
        {"tls_certificate_check": "ca", "tls_fingerprint_sha256": ""},
        {"tls_fingerprint_sha256": "ab" * 32},
    ],
    ids=["without-tls", "ca-instead-of-pin", "another-pin"],
)
def test_the_stored_password_takes_no_weaker_way_to_the_same_clientmodul_without_being_entered_again(
    client, manager, account, cm, weaker
):
    # Same host and ports, but without TLS or trusting another certificate: whoever sits in between would read it.
    client.force_login(manager)
    url = reverse("manage:mailbox-account", args=[account.mailbox.pk])
    data = {
        k: v for k, v in _wizard_data(cm, manager).items() if k not in {"address", "display_name", "kind", "owners"}
    }
    data.update(password="")
    unchanged = client.post(url, {**data, "action": "test"}, headers={"HX-Request": "true"})
    assert "Passwort erneut eingeben" not in unchanged.content.decode()  # the same way: the stored one is used

    tested = client.post(url, {**data, **weaker, "action": "test"}, headers={"HX-Request": "true"})
    assert "Passwort erneut eingeben" in tested.content.decode()
    saved = client.post(url, {**data, **weaker, "action": "save"})
    assert saved.status_code == 422 and "Passwort erneut eingeben" in saved.content.decode()
    account.refresh_from_db()
    assert (account.transport, account.tls_certificate_check) == ("implicit_tls", "pinned")


# --- deactivating a mailbox ------------------------------------------------------------------------------------------


def test_deactivating_stops_the_fetch_ends_access_at_once_and_can_be_undone(client, manager):
    account = KimAccountFactory()
    box = account.mailbox
    owner = MembershipFactory(mailbox=box, role=Role.OWNER).user
    message = _ingest(box)
    _assign(message, owner)
    Message.objects.filter(pk=message.pk).update(
        claimed_by=owner, claim_expires_at=timezone.now() + timedelta(minutes=5)
    )
    client.force_login(manager)

    client.post(reverse("manage:mailbox-active", args=[box.pk]), {"active": "0"})

    box.refresh_from_db()
    account.refresh_from_db()
    assert (box.is_active, account.is_active) == (False, False)
    assert user_role(owner, box) is None
    message.refresh_from_db()
    assert message.claimed_by is None and message.assignee == owner  # the lock goes, the assignment stays
    assert _events("mailbox.deactivated")[0].actor_id == manager.pk
    client.force_login(owner)
    assert client.get(reverse("mailbox:mailbox-messages", args=[box.pk])).status_code == 404

    client.force_login(manager)
    client.post(reverse("manage:mailbox-active", args=[box.pk]), {"active": "1"})
    box.refresh_from_db()
    account.refresh_from_db()
    assert (box.is_active, account.is_active) == (True, True)
    assert user_role(owner, box) == Role.OWNER
    assert _events("mailbox.activated")[0].actor_id == manager.pk


def test_switching_a_mailbox_off_holds_its_outbox_and_the_manager_is_told(client, manager):
    account = KimAccountFactory()
    box = account.mailbox
    waiting = OutgoingMessage.objects.create(
        mailbox=box, subject="Befund", to=["a@praxis.kim.telematik"], state=OutgoingMessage.State.QUEUED
    )
    client.force_login(manager)

    response = client.post(reverse("manage:mailbox-active", args=[box.pk]), {"active": "0"}, follow=True)

    waiting.refresh_from_db()
    assert waiting.state == OutgoingMessage.State.HELD and "abgeschaltet" in waiting.last_error_text
    assert "1 Nachricht im Postausgang wird zurückgehalten" in response.content.decode()
    assert _events("mailbox.deactivated")[0].details["outgoing"] == 1
    assert _events("outgoing.held")[0].details["outgoing_id"] == waiting.pk

    response = client.post(reverse("manage:mailbox-active", args=[box.pk]), {"active": "1"}, follow=True)

    waiting.refresh_from_db()
    assert waiting.state == OutgoingMessage.State.QUEUED and waiting.last_error_text == ""
    assert "1 zurückgehaltene Nachricht wird jetzt gesendet" in response.content.decode()


# --- groups (wards) ------------------------------------------------------------------------------------------------


def test_groups_are_created_and_joining_or_leaving_one_changes_access_audited(client, manager):
    box = MailboxFactory()
    MembershipFactory(mailbox=box, role=Role.OWNER)
    nurse = UserFactory(username="pflege1")
    client.force_login(manager)

    response = client.post(reverse("manage:groups"), {"name": "Station 3"})
    group = Group.objects.get(name="Station 3")
    assert response["Location"] == reverse("manage:group", args=[group.pk])
    assert client.post(reverse("manage:groups"), {"name": "station 3"}).status_code == 422  # no duplicate
    membership_set(user=manager, mailbox=box, group_name="Station 3", role=Role.PROCESSOR)

    client.post(reverse("manage:group", args=[group.pk]), {"user": nurse.pk})
    assert user_role(nurse, box) == Role.PROCESSOR
    message = _ingest(box)
    _assign(message, nurse)

    client.post(reverse("manage:group-member-remove", args=[group.pk, nurse.pk]))
    assert user_role(nurse, box) is None
    message.refresh_from_db()
    assert message.assignee is None  # the work went back to the mailbox
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="group.").order_by("id")] == [
        "group.created",
        "group.member_added",
        "group.member_removed",
    ]


@pytest.mark.parametrize(
    ("app_label", "codename"),
    [("signing", "review_draft"), ("mailbox", "manage_house"), ("operations", "view_operations")],
)
def test_the_ward_page_adds_no_one_to_a_group_that_grants_permissions(client, manager, app_label, codename):
    # Reviewers, IT and the Leitung itself are often a group with a permission (docs/signing-review.md,
    # docs/operations.md); joining one is a grant of that permission, for the administration, not the ward page.
    group = Group.objects.create(name="Oberärztinnen und Oberärzte")
    group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    colleague = UserFactory(username="kollege", is_staff=True)
    client.force_login(manager)
    page = client.get(reverse("manage:group", args=[group.pk])).content.decode()
    assert "vergibt Berechtigungen" in page and "Hinzufügen" not in page

    for person in (manager, colleague):
        response = client.post(reverse("manage:group", args=[group.pk]), {"user": person.pk})
        assert response.status_code == 422
        assert "vergibt Berechtigungen" in response.content.decode()
    with pytest.raises(NotAllowed):
        manage.group_member_add(user=manager, group=group, member=colleague)

    assert not group.user_set.exists()
    assert not _events("group.member_added")


@pytest.mark.parametrize(
    ("app_label", "codename"),
    [("signing", "review_draft"), ("mailbox", "manage_house"), ("operations", "view_operations")],
)
def test_the_ward_page_takes_no_one_out_of_a_group_that_grants_permissions(client, manager, app_label, codename):
    # Leaving such a group withdraws its permission (a manager could demote the other managers or the IT): the
    # administration decides that, as it decides who joins.
    group = Group.objects.create(name="Leitung")
    group.permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    colleague = UserFactory(username="kollege", is_staff=True)
    group.user_set.add(colleague, manager)
    client.force_login(manager)
    page = client.get(reverse("manage:group", args=[group.pk])).content.decode()
    assert reverse("manage:group-member-remove", args=[group.pk, colleague.pk]) not in page

    for person in (colleague, manager):
        response = client.post(reverse("manage:group-member-remove", args=[group.pk, person.pk]), follow=True)
        assert "vergibt Berechtigungen" in response.content.decode()
    with pytest.raises(NotAllowed):
        manage.group_member_remove(user=manager, group=group, member=colleague)

    assert set(group.user_set.all()) == {colleague, manager}
    assert not _events("group.member_removed")


def test_removing_someone_everywhere_leaves_the_groups_that_grant_permissions_to_the_administration(client, manager):
    person = UserFactory(username="geht")
    ward = Group.objects.create(name="Station 7")
    reviewers = Group.objects.create(name="Oberärzte")
    reviewers.permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))
    person.groups.add(ward, reviewers)
    client.force_login(manager)

    response = client.post(
        reverse("manage:bulk"), {"action": "remove", "person": person.pk, "leave_groups": "on", "confirm": "on"}
    )

    assert response.status_code == 302
    assert list(person.groups.all()) == [reviewers]
    assert [e.details["group"] for e in _events("group.member_removed")] == ["Station 7"]


def test_removing_someone_everywhere_names_the_kept_groups_that_still_open_a_mailbox(client, manager):
    """A group left to the administration may still be a member of mailboxes: the manager must not read "removed
    everywhere" while the person still sees one."""
    person = UserFactory(username="geht")
    reviewers = Group.objects.create(name="Oberärzte")
    reviewers.permissions.add(Permission.objects.get(content_type__app_label="signing", codename="review_draft"))
    idle = Group.objects.create(name="IT-Bereitschaft")
    idle.permissions.add(Permission.objects.get(content_type__app_label="operations", codename="view_operations"))
    MembershipFactory(mailbox=MailboxFactory(display_name="Kardiologie"), group=reviewers, user=None, role=Role.READER)
    person.groups.add(reviewers, idle)
    client.force_login(manager)

    response = client.post(
        reverse("manage:bulk"),
        {"action": "remove", "person": person.pk, "leave_groups": "on", "confirm": "on"},
        follow=True,
    )

    page = html.unescape(response.content.decode())
    # Only the group that opens a mailbox is named (the bulk page's group picker lists every group anyway).
    assert "weiter in Gruppen, die Berechtigungen vergeben und Postfächer öffnen: Oberärzte. Aus" in page


# --- absences entered by a manager -----------------------------------------------------------------------------------


def test_a_manager_enters_and_ends_a_colleagues_absence(client, manager):
    person, substitute = UserFactory(), UserFactory()
    client.force_login(manager)
    start = timezone.localtime() - timedelta(hours=1)
    response = client.post(
        reverse("manage:absences"),
        {
            "person": person.pk,
            "substitute": substitute.pk,
            "starts_at": start.strftime("%Y-%m-%dT%H:%M"),
            "ends_at": (start + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert response.status_code == 302
    absence = Absence.objects.get(user=person)
    assert absence.substitute == substitute
    event = _events("absence.created")[0]
    assert (event.actor_id, event.details["user"]) == (manager.pk, person.pk)

    client.post(reverse("manage:absence-end", args=[absence.pk]))
    absence.refresh_from_db()
    assert absence.ends_at <= timezone.now()
    assert _events("absence.ended")[0].actor_id == manager.pk


def test_nobody_substitutes_themselves(client, manager):
    person = UserFactory()
    client.force_login(manager)
    response = client.post(
        reverse("manage:absences"),
        {"person": person.pk, "substitute": person.pk, "starts_at": "2030-01-01T08:00", "ends_at": "2030-01-02T08:00"},
    )
    assert response.status_code == 422 and "selbst vertreten" in response.content.decode()
    assert not Absence.objects.exists()


# --- bulk changes ----------------------------------------------------------------------------------------------------


def test_bulk_grant_gives_every_person_and_group_the_role_in_every_mailbox_audited_per_change(client, manager):
    boxes = [MailboxFactory(), MailboxFactory()]
    for box in boxes:
        MembershipFactory(mailbox=box, role=Role.OWNER)
    people = [UserFactory(), UserFactory()]
    ward = Group.objects.create(name="Station 5")
    client.force_login(manager)

    response = client.post(
        reverse("manage:bulk"),
        {
            "action": "grant",
            "mailboxes": [b.pk for b in boxes],
            "people": [p.pk for p in people],
            "groups": [ward.pk],
            "role": Role.READER,
        },
    )

    assert response.status_code == 302
    for box in boxes:
        assert {p.pk for p in people} <= set(
            Membership.objects.filter(mailbox=box, role=Role.READER).values_list("user_id", flat=True)
        )
        assert Membership.objects.filter(mailbox=box, group=ward, role=Role.READER).exists()
    assert len(_events("membership.set")) == 6


def test_bulk_grant_is_all_or_nothing(manager):
    box = MailboxFactory()
    owner = MembershipFactory(mailbox=box, role=Role.OWNER).user
    other = MailboxFactory()
    MembershipFactory(mailbox=other, role=Role.OWNER)
    # Demoting the only owner fails in the second mailbox: the first mailbox's change must not stay either.
    MembershipFactory(mailbox=other, user=owner, role=Role.READER)
    sole = Membership.objects.get(mailbox=box, user=owner)
    with pytest.raises(PortalError) as error:
        manage.memberships_bulk_set(
            user=manager, mailboxes=[other, box], people=[owner], groups=[], role=Role.PROCESSOR
        )
    assert box.display_name in error.value.message
    assert Membership.objects.get(mailbox=other, user=owner).role == Role.READER
    assert Membership.objects.get(pk=sole.pk).role == Role.OWNER


def test_removing_someone_everywhere_returns_their_work_and_leaves_their_groups(client, manager):
    person = UserFactory(username="geht")
    ward = Group.objects.create(name="Station 7")
    person.groups.add(ward)
    boxes = [MailboxFactory(), MailboxFactory()]
    for box in boxes:
        MembershipFactory(mailbox=box, role=Role.OWNER)
        MembershipFactory(mailbox=box, user=person, role=Role.PROCESSOR)
    message = _ingest(boxes[0])
    _assign(message, person)
    client.force_login(manager)

    response = client.post(
        reverse("manage:bulk"), {"action": "remove", "person": person.pk, "leave_groups": "on", "confirm": "on"}
    )

    assert response.status_code == 302
    assert not Membership.objects.filter(user=person).exists()
    assert not person.groups.exists()
    message.refresh_from_db()
    assert message.assignee is None
    assert len(_events("membership.removed")) == 2


def test_removing_the_last_owner_everywhere_changes_nothing_and_names_the_mailbox(client, manager):
    person = UserFactory()
    shared, sole = MailboxFactory(display_name="Aufnahme"), MailboxFactory(display_name="Zentrale")
    MembershipFactory(mailbox=shared, role=Role.OWNER)
    MembershipFactory(mailbox=shared, user=person, role=Role.READER)
    MembershipFactory(mailbox=sole, user=person, role=Role.OWNER)
    client.force_login(manager)

    response = client.post(reverse("manage:bulk"), {"action": "remove", "person": person.pk, "confirm": "on"})

    assert response.status_code == 422
    assert "Zentrale: Ein Postfach braucht mindestens einen Eigentümer." in response.content.decode()
    assert Membership.objects.filter(user=person).count() == 2
    assert not _events("membership.removed")


# --- the access report -----------------------------------------------------------------------------------------------


@pytest.fixture
def house(manager):
    box = MailboxFactory(display_name="Kardiologie", address="kardio@klinikum-test.kim.telematik-test")
    old = MembershipFactory(mailbox=box, role=Role.OWNER, user=UserFactory(username="altowner"))
    ward = Group.objects.create(name="Station 9")
    nurse = UserFactory(username="pflege9", first_name="Paula", last_name="Pflege")
    nurse.groups.add(ward)
    membership_set(user=manager, mailbox=box, group_name="Station 9", role=Role.PROCESSOR)
    membership_set(user=manager, mailbox=box, username="pflege9", role=Role.READER)
    return box, old, ward, nurse


def test_the_access_report_per_mailbox_and_per_person_shows_direct_and_group_access(client, manager, house):
    box, _old, ward, nurse = house
    client.force_login(manager)

    rows = access.access_for_mailbox(box)
    assert [(r.user.username, r.role, r.group) for r in rows] == [
        ("altowner", Role.OWNER, None),
        ("pflege9", Role.PROCESSOR, ward),
        ("pflege9", Role.READER, None),
    ]
    assert rows[0].granted_at is None and rows[1].granted_by == display_name(manager)

    page = client.get(reverse("manage:access"), {"postfach": box.pk}).content.decode()
    assert "Gruppe Station 9" in page and "vor Einführung" in page
    mine = client.get(reverse("manage:access"), {"person": nurse.pk}).content.decode()
    assert "Kardiologie" in mine and "Gruppe Station 9" in mine and "direkt" in mine
    assert client.get(reverse("manage:access"), {"postfach": "x"}).status_code == 404


def test_the_access_export_streams_csv_and_is_audited(client, manager, house):
    box, *_ = house
    client.force_login(manager)

    response = client.get(reverse("manage:access-export"), {"postfach": box.pk})

    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    lines = b"".join(response.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0].startswith("Postfach;KIM-Adresse;")
    assert any(
        line.startswith("Kardiologie;kardio@") and ";altowner;" in line and "vor Einführung" in line for line in lines
    )
    assert any(";pflege9;" in line and ";Station 9;" in line for line in lines)
    event = _events("access.exported")[0]
    assert (event.actor_id, event.mailbox_id, event.details["rows"]) == (manager.pk, box.pk, 3)

    whole = client.get(reverse("manage:access-export"))
    assert len(b"".join(whole.streaming_content).decode("utf-8-sig").splitlines()) == 4
    assert _events("access.exported")[1].details["scope"] == "house"


def test_the_access_export_turns_no_name_into_a_formula(client, manager):
    # Display names, group names and people's names come from managers' typing and the hospital directory.
    box = MailboxFactory(display_name='=HYPERLINK("http://x";"Kardio")', address="kardio@klinik.kim.telematik-test")
    evil = UserFactory(username="-evil", first_name="+Anna", last_name="Test")
    ward = Group.objects.create(name="@SUMME(1)")
    evil.groups.add(ward)
    membership_set(user=manager, mailbox=box, username="-evil", role=Role.OWNER)
    membership_set(user=manager, mailbox=box, group_name="@SUMME(1)", role=Role.PROCESSOR)
    client.force_login(manager)

    response = client.get(reverse("manage:access-export"), {"postfach": box.pk})

    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text), delimiter=";"))[1:]
    assert len(rows) == 2
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]
    assert "'-evil" in cells and "'+Anna Test" in cells and "'@SUMME(1)" in cells
    assert rows[0][0] == '\'=HYPERLINK("http://x";"Kardio")'


def test_the_member_pages_ask_as_many_queries_for_a_crowd_as_for_a_few(client, manager):
    # A central mailbox (the Aufnahme) has hundreds of members: no query per row, on either page.
    box = MailboxFactory()
    owner = UserFactory(username="eigentuemerin")
    MembershipFactory(mailbox=box, user=owner, role=Role.OWNER)
    MembershipFactory(mailbox=box, user=None, group=Group.objects.create(name="Station 1"), role=Role.READER)
    pages = [
        (owner, reverse("mailbox:mailbox-members", args=[box.pk])),
        (manager, reverse("manage:mailbox", args=[box.pk])),
        (manager, reverse("manage:access") + f"?postfach={box.pk}"),
    ]

    def queries() -> list[int]:
        counts = []
        for user, url in pages:
            client.force_login(user)
            with CaptureQueriesContext(connection) as captured:
                assert client.get(url).status_code == 200
            counts.append(len(captured.captured_queries))
        return counts

    few = queries()
    for i in range(40):
        MembershipFactory(mailbox=box, user=UserFactory(username=f"pflege{i}"), role=Role.PROCESSOR, granted_by=manager)
    assert queries() == few


def test_managing_reads_no_messages(client, manager, house):
    box, *_ = house
    _ingest(box)
    client.force_login(manager)
    assert client.get(reverse("manage:mailbox", args=[box.pk])).status_code == 200
    assert client.get(reverse("mailbox:mailbox-messages", args=[box.pk])).status_code == 404


@pytest.mark.parametrize("name", ["Station\u202eeigoloidraK", "Station\nKardiologie", "Station\x07"])
def test_a_mailbox_name_with_control_characters_is_refused_in_the_wizard_and_on_the_model(client, manager, cm, name):
    """The name shows in every list and goes into the From of the mailbox's mail: a right-to-left override shows
    another name than it holds, a line break or a bell would land in a header. The KIM registration refused it
    already; the managers' wizard and every model form (the admin) took it."""
    client.force_login(manager)
    response = client.post(
        reverse("manage:mailbox-create"), {**_wizard_data(cm, UserFactory(), display_name=name), "action": "create"}
    )
    assert response.status_code == 422
    assert "Der Anzeigename darf keine Steuerzeichen enthalten." in response.content.decode()
    assert not Mailbox.objects.exists()
    with pytest.raises(ValidationError) as refused:
        Mailbox(address=HOSPITAL, display_name=name).full_clean()
    assert set(refused.value.message_dict) == {"display_name"}
