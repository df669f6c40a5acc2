"""Sign-in against the hospital's directory (django-auth-ldap) on a real slapd: users from the directory sign in,
their directory groups become wards, a wrong password counts towards the lockout (a try the directory could not
check does not), filters are escaped, and local accounts keep working."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import ldap
import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

from mailbox.services.audit import AuditEvent
from tests.mailbox.factories import UserFactory
from tests.signin.conftest import PASSWORD
from tisim.vzd.generate import BASE_DN
from tisim.vzd.slapd import SlapdServer, free_port

pytestmark = [pytest.mark.slapd, pytest.mark.django_db]

PEOPLE = f"ou=people,ou=klinikum,{BASE_DN}"
GROUPS = f"ou=groups,ou=klinikum,{BASE_DN}"
STATION_3A = f"cn=kim-station-3a,{GROUPS}"
KARDIOLOGIE = f"cn=kim-kardiologie,{GROUPS}"


def _person(uid: str, given: str, sn: str, password: str) -> str:
    return (
        f"dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {given} {sn}\ngivenName: {given}\n"
        f"sn: {sn}\nmail: {uid}@klinikum.example\nuserPassword: {password}\n"
    )


def _group(dn: str, cn: str, members: list[str]) -> str:
    return f"dn: {dn}\nobjectClass: groupOfNames\ncn: {cn}\n" + "".join(f"member: uid={m},{PEOPLE}\n" for m in members)


LDIF = "\n".join(
    [
        f"dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: data\no: VZD\n",
        f"dn: ou=klinikum,{BASE_DN}\nobjectClass: organizationalUnit\nou: klinikum\n",
        f"dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n",
        f"dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n",
        _person("pflege1", "Paula", "Pflege", "Dienst-2026"),
        _person("arzt1", "Anton", "Arzt", "Visite-2026"),
        _group(STATION_3A, "kim-station-3a", ["pflege1"]),
        _group(KARDIOLOGIE, "kim-kardiologie", ["pflege1", "arzt1"]),
    ]
)


@pytest.fixture(scope="module")
def hospital_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    data_dir = tmp_path_factory.mktemp("hospital-ldap")
    ldif = Path(data_dir) / "klinikum.ldif"
    ldif.write_text(LDIF)
    with SlapdServer(data_dir / "slapd", ldif) as server:
        yield server


@pytest.fixture
def directory_sign_in(settings, hospital_directory: SlapdServer) -> SlapdServer:
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "mailbox.ldapauth.PortalLDAPBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    settings.AUTH_LDAP_SERVER_URI = hospital_directory.url
    settings.AUTH_LDAP_USER_SEARCH = LDAPSearch(PEOPLE, ldap.SCOPE_SUBTREE, "(uid=%(user)s)")
    settings.AUTH_LDAP_GROUP_SEARCH = LDAPSearch(GROUPS, ldap.SCOPE_SUBTREE, "(objectClass=groupOfNames)")
    settings.AUTH_LDAP_GROUP_TYPE = GroupOfNamesType()
    settings.AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}
    settings.AUTH_LDAP_CONNECTION_OPTIONS = {ldap.OPT_NETWORK_TIMEOUT: 5}
    settings.KIMPORTAL_AUTH_LDAP_GROUP_MAP = {STATION_3A: "Station 3A", KARDIOLOGIE.upper(): "Kardiologie"}
    return hospital_directory


def sign_in(client, username: str, password: str):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR="10.3.3.3")


def test_a_directory_user_signs_in_and_gets_the_wards_of_their_groups(client, directory_sign_in):
    assert sign_in(client, "pflege1", "Dienst-2026").status_code == 302
    user = get_user_model().objects.get(username="pflege1")
    assert (user.first_name, user.last_name, user.email) == ("Paula", "Pflege", "pflege1@klinikum.example")
    assert not user.has_usable_password()
    assert set(user.groups.values_list("name", flat=True)) == {"Station 3A", "Kardiologie"}
    assert AuditEvent.objects.filter(action="signin.succeeded", actor_id=user.pk).exists()
    synced = AuditEvent.objects.get(action="signin.wards_synced")
    assert synced.details["joined"] == ["Kardiologie", "Station 3A"]


def test_wards_follow_the_directory_and_other_groups_stay(client, directory_sign_in):
    arzt = UserFactory(username="arzt1")
    arzt.groups.add(Group.objects.create(name="Station 3A"), Group.objects.create(name="Aufnahme"))
    assert sign_in(client, "arzt1", "Visite-2026").status_code == 302
    # Not in the directory's station group any more: that mapped ward is left; the unmapped one stays.
    assert set(arzt.groups.values_list("name", flat=True)) == {"Kardiologie", "Aufnahme"}
    assert AuditEvent.objects.get(action="signin.wards_synced").details == {
        "joined": ["Kardiologie"],
        "left": ["Station 3A"],
    }


def test_a_wrong_directory_password_fails_counts_and_creates_nobody(client, directory_sign_in, settings):
    answer = sign_in(client, "pflege1", "falsch")
    assert answer.status_code == 200 and "Benutzername oder Passwort ist falsch." in answer.content.decode()
    assert not get_user_model().objects.filter(username="pflege1").exists()
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        sign_in(client, "pflege1", f"falsch-{i}")
    assert sign_in(client, "pflege1", "Dienst-2026").status_code == 429
    assert AuditEvent.objects.filter(action="signin.failed", details__username="pflege1").count() == 11


def test_a_wildcard_name_finds_nobody(client, directory_sign_in):
    """%(user)s is escaped before it goes into the filter: `*` is a name, not "anyone"."""
    assert sign_in(client, "*", "Dienst-2026").status_code == 200
    assert sign_in(client, "pflege*", "Dienst-2026").status_code == 200
    assert not get_user_model().objects.exists()


def test_local_accounts_still_sign_in_and_when_the_directory_is_down(client, directory_sign_in, settings, station):
    assert sign_in(client, "station", PASSWORD).status_code == 302
    client.post(reverse("logout"))
    settings.AUTH_LDAP_SERVER_URI = "ldap://127.0.0.1:1"
    assert sign_in(client, "station", PASSWORD).status_code == 302


def test_a_directory_user_deactivated_while_signed_in_is_signed_out(client, directory_sign_in):
    """django-auth-ldap's get_user returns an inactive account too; the session must end as with a local one."""
    assert sign_in(client, "pflege1", "Dienst-2026").status_code == 302
    inbox = reverse("mailbox:inbox")
    assert client.get(inbox).status_code == 200
    get_user_model().objects.filter(username="pflege1").update(is_active=False)
    answer = client.get(inbox)
    assert answer.status_code == 302 and answer["Location"].startswith(reverse("login"))
    # Signing in again is refused as well (the directory still knows the password).
    assert sign_in(client, "pflege1", "Dienst-2026").status_code == 200
    assert client.get(inbox).status_code == 302


def test_a_directory_that_does_not_answer_is_named_not_blamed_on_the_password(client, directory_sign_in, settings):
    """A directory that accepts the connection and never answers: after the timeout the page says the directory
    is unreachable (not "wrong password"), in German and in English; no 500."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)
    with silent:
        settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        settings.AUTH_LDAP_CONNECTION_OPTIONS = {ldap.OPT_NETWORK_TIMEOUT: 2, ldap.OPT_TIMEOUT: 2}
        answer = sign_in(client, "pflege1", "Dienst-2026")
        text = answer.content.decode()
        assert answer.status_code == 200
        assert "Der Verzeichnisdienst antwortet nicht" in text and 'role="alert"' in text
        assert "Benutzername oder Passwort ist falsch." not in text
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
        assert "The directory service is not answering" in sign_in(client, "pflege1", "x").content.decode()


def test_sign_ins_during_a_directory_outage_lock_out_neither_accounts_nor_the_ward_pc(
    client, directory_sign_in, settings
):
    """Tries the directory could not check are no failed sign-ins: after an outage the people who kept trying (and
    everyone else behind the ward's address) sign in at once, not a cool-off later. Audited as what happened."""
    assert sign_in(client, "pflege1", "Dienst-2026").status_code == 302  # known here since, without a password
    client.post(reverse("logout"), REMOTE_ADDR="10.3.3.3")
    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"  # nothing listens there
    tries = settings.AXES_FAILURE_LIMIT + 2
    answers = [sign_in(client, "pflege1", "Dienst-2026") for _ in range(tries)]
    answers += [sign_in(client, f"kollege{i}", "Passwort-2026") for i in range(tries)]
    assert {a.status_code for a in answers} == {200}
    text = answers[-1].content.decode()
    assert 'id="signin-directory"' in text and "Der Verzeichnisdienst antwortet nicht" in text
    assert "Benutzername oder Passwort ist falsch." not in text and "gesperrt" not in text
    assert not AccessAttempt.objects.exists()
    assert not AuditEvent.objects.filter(action__in=["signin.failed", "signin.locked"]).exists()
    unreachable = AuditEvent.objects.filter(action="signin.directory_unreachable")
    assert unreachable.count() == 2 * tries
    assert {(e.details["username"], e.details["address"]) for e in unreachable} >= {
        ("pflege1", "10.3.3.3"),
        ("kollege0", "10.3.3.3"),
    }
    assert "Dienst-2026" not in str(list(unreachable.values_list("details", flat=True)))

    settings.AUTH_LDAP_SERVER_URI = directory_sign_in.url  # the directory is back
    assert sign_in(client, "pflege1", "Dienst-2026").status_code == 302
    client.post(reverse("logout"), REMOTE_ADDR="10.3.3.3")
    assert sign_in(client, "arzt1", "Visite-2026").status_code == 302


def test_a_local_accounts_wrong_passwords_count_during_an_outage(client, directory_sign_in, settings, station):
    """The local accounts were checked (by their own password) while the directory was down: their failures count."""
    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "station", f"falsch-{i}")
    assert sign_in(client, "station", PASSWORD).status_code == 429
    assert AuditEvent.objects.filter(action="signin.failed", details__username="station").count() == 11
    assert AuditEvent.objects.filter(action="signin.locked").exists()
    assert not AuditEvent.objects.filter(action="signin.directory_unreachable").exists()


def test_an_unchecked_try_asks_once_whether_the_name_is_a_local_account(client, directory_sign_in, settings):
    # axes' handler and the audit both ask whether the failure counts: the local-password lookup runs once.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"
    with CaptureQueriesContext(connection) as queries:
        assert sign_in(client, "niemand", "Passwort-2026").status_code == 200
    named = [q["sql"] for q in queries.captured_queries if 'FROM "auth_user"' in q["sql"] and "niemand" in q["sql"]]
    # The model backend's own lookup (a get) and the local-password question (the first such row), once.
    assert len([sql for sql in named if sql.endswith("LIMIT 1")]) == 1 and len(named) == 2, named


def test_a_lock_from_wrong_directory_passwords_holds_during_an_outage(client, directory_sign_in, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        sign_in(client, "pflege1", f"falsch-{i}")
    settings.AUTH_LDAP_SERVER_URI = f"ldap://127.0.0.1:{free_port()}"
    page = sign_in(client, "pflege1", "Dienst-2026")
    assert page.status_code == 429 and 'id="signin-locked"' in page.content.decode()
    # Another name from the locked address as well: the address's lock is not lifted by the outage either.
    assert sign_in(client, "kollege", "Passwort-2026").status_code == 429
