"""Who may administer a mailbox's KIM account: its owners and the managers — nobody else learns it exists.

The routes come from the resolver: a new KIM administration URL without a row here fails the first test.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser
from django.test import Client
from django.urls import get_resolver, reverse

from audit.models import AuditEvent
from mailbox.models import Membership
from operations.models import KimRegistration, PasswordChange
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import KimWorld, manager_user
from tisim.cm.autoreply import AbsenceStore

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture

# Per route: the methods to try and a harmless valid body for POST (it would change something if allowed).
MAILBOX_ROUTES: dict[str, dict[str, Any]] = {
    "kim-account": {"GET": None},
    "kim-out-of-office": {
        "GET": None,
        "POST": {"active": "on", "starts_at": "2026-12-01T08:00", "ends_at": "2030-12-02T08:00", "text": "Weg"},
    },
    "kim-password": {"GET": None, "POST": {"password": "Neu-Passwort-2027!", "password_repeat": "Neu-Passwort-2027!"}},
    "kim-data-time-to-live": {"POST": {"data_time_to_live": "30"}},
    "kim-version": {"GET": None, "POST": {"confirm": "on"}},
    "kim-deregister": {"GET": None, "POST": {"confirm": "on"}},
    "kim-revoke": {"GET": None, "POST": {"confirm": "on"}},
}
REGISTRATION_ROUTES = {"kim-register-start", "kim-register"}
OTHER_ROUTES = {"kim-list"}


def test_every_kim_route_has_an_expectation() -> None:
    names = {
        name
        for name in get_resolver().namespace_dict["operations"][1].reverse_dict
        if isinstance(name, str) and name.startswith("kim-")
    }
    assert names == set(MAILBOX_ROUTES) | REGISTRATION_ROUTES | OTHER_ROUTES


def _requests(client: Client, pk: int) -> list[tuple[str, str, int]]:
    answers = []
    for name, methods in MAILBOX_ROUTES.items():
        url = reverse(f"operations:{name}", args=[pk])
        for method, body in methods.items():
            response = client.get(url) if method == "GET" else client.post(url, body)
            answers.append((name, method, response.status_code))
    return answers


def _nothing_happened(world: KimWorld, seen_before: int) -> None:
    assert len(world.am.am.seen) == seen_before, [r.path for r in world.am.am.seen][seen_before:]
    assert AbsenceStore(world.cm.data_dir).get(world.mailbox.address) is None
    assert world.cm_password() == kimadmin_world.PASSWORD
    assert not AuditEvent.objects.filter(action__startswith="kim.").exists()
    assert not PasswordChange.objects.exists()


@pytest.mark.parametrize("who", ["processor", "stranger", "reader_via_group", "ex_owner", "owner_of_deactivated"])
def test_everyone_but_owners_and_managers_gets_404_and_the_provider_is_never_asked(kim: KimWorld, who: str) -> None:
    user: Any
    if who == "reader_via_group":
        from django.contrib.auth.models import Group

        group = Group.objects.create(name="Station 3")
        user = kimadmin_world.UserFactory(username="gruppenmitglied")
        user.groups.add(group)
        Membership.objects.create(mailbox=kim.mailbox, group=group, role=Membership.Role.READER)
    elif who == "ex_owner":
        user = kim.owner
        Membership.objects.filter(mailbox=kim.mailbox, user=user).delete()
    elif who == "owner_of_deactivated":
        user = kim.owner
        type(kim.mailbox).objects.filter(pk=kim.mailbox.pk).update(is_active=False)
    else:
        user = getattr(kim, who)
    seen = len(kim.am.am.seen)
    answers = _requests(kim.client_for(user), kim.mailbox.pk)
    assert {status for _, _, status in answers} == {404}, answers
    _nothing_happened(kim, seen)
    # Nor does the list or the navigation show it.
    page = kim.client_for(user).get(reverse("operations:kim-list")).content.decode()
    assert kim.mailbox.address not in page
    nav = 'href="/betrieb/kim/"' in kim.client_for(user).get(reverse("mailbox:inbox")).content.decode()
    assert nav is (who == "stranger")  # the stranger owns a mailbox of their own


def test_an_owner_reaching_for_a_foreign_mailbox_gets_404(kim: KimWorld) -> None:
    seen = len(kim.am.am.seen)
    answers = _requests(kim.client_for(kim.owner), kim.foreign.pk)
    assert {status for _, _, status in answers} == {404}, answers
    assert {status for _, _, status in _requests(kim.client_for(kim.owner), 999_999)} == {404}
    _nothing_happened(kim, seen)


def test_a_logged_out_tab_is_sent_to_the_login(kim: KimWorld) -> None:
    seen = len(kim.am.am.seen)
    client = Client()
    for name, methods in MAILBOX_ROUTES.items():
        url = reverse(f"operations:{name}", args=[kim.mailbox.pk])
        for method, body in methods.items():
            response = client.get(url) if method == "GET" else client.post(url, body)
            assert response.status_code == 302 and "/login/" in response["Location"], (name, method)
    for url in (reverse("operations:kim-list"), reverse("operations:kim-register-start")):
        response = client.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
    _nothing_happened(kim, seen)
    assert AnonymousUser().is_authenticated is False


def test_owner_and_manager_may(kim: KimWorld) -> None:
    for user in (kim.owner, kim.manager):
        client = kim.client_for(user)
        for name, methods in MAILBOX_ROUTES.items():
            if "GET" in methods:
                url = reverse(f"operations:{name}", args=[kim.mailbox.pk])
                assert client.get(url).status_code == 200, (user, name)
        page = client.get(reverse("operations:kim-list")).content.decode()
        assert (kim.mailbox.address in page and kim.foreign.address not in page) or user == kim.manager
        assert 'href="/betrieb/kim/"' in client.get(reverse("mailbox:inbox")).content.decode()
    # A manager administers a deactivated mailbox too (its owners no longer can).
    type(kim.mailbox).objects.filter(pk=kim.mailbox.pk).update(is_active=False)
    assert kim.client_for(kim.manager).get(reverse("operations:kim-account", args=[kim.mailbox.pk])).status_code == 200


def test_the_registration_wizard_is_the_managers_and_each_registration_its_starters(kim: KimWorld) -> None:
    registration = KimRegistration.objects.create(
        created_by=kim.manager, address="neu@klinikum-test.kim.telematik-test", display_name="Neu"
    )
    other_manager = manager_user("leitung2")
    for user in (kim.owner, kim.processor, kim.stranger):
        client = kim.client_for(user)
        assert client.get(reverse("operations:kim-register-start")).status_code == 404
        assert client.post(reverse("operations:kim-register-start"), {"address": "x@y.de"}).status_code == 404
        assert client.get(reverse("operations:kim-register", args=[registration.pk])).status_code == 404
    client = kim.client_for(other_manager)
    assert client.get(reverse("operations:kim-register", args=[registration.pk])).status_code == 404
    assert (
        client.post(reverse("operations:kim-register", args=[registration.pk]), {"action": "cancel"}).status_code == 404
    )
    registration.refresh_from_db()
    assert registration.state == KimRegistration.State.DRAFT
    assert (
        kim.client_for(kim.manager).get(reverse("operations:kim-register", args=[registration.pk])).status_code == 200
    )


def test_the_services_check_too_not_only_the_views(kim: KimWorld) -> None:
    """Defence in depth: a service called with someone who may not administer the mailbox refuses."""
    from kimportal.errors import NotAllowed
    from operations.services import kimadmin

    seen = len(kim.am.am.seen)
    calls = [
        lambda u: kimadmin.out_of_office_set(user=u, mailbox=kim.mailbox, active=False, start=None, end=None, text=""),
        lambda u: kimadmin.password_change(user=u, mailbox=kim.mailbox, new_password="Neu-Passwort-2027!"),
        lambda u: kimadmin.data_time_to_live_set(user=u, mailbox=kim.mailbox, days=30),
        lambda u: kimadmin.kim_version_set(user=u, mailbox=kim.mailbox, version="1.5+"),
        lambda u: kimadmin.account_deregister(user=u, mailbox=kim.mailbox),
        lambda u: kimadmin.account_deregistration_revoke(user=u, mailbox=kim.mailbox),
    ]
    for user in (kim.processor, kim.stranger, AnonymousUser()):
        for call in calls:
            with pytest.raises(NotAllowed):
                call(user)
    _nothing_happened(kim, seen)


def test_a_fresh_house_without_any_kim_account_is_told_what_to_do_first(kim: KimWorld) -> None:
    from mailbox.models import KimAccount

    KimAccount.objects.all().delete()
    page = kim.client_for(kim.manager).get(reverse("operations:kim-register-start")).content.decode()
    assert "Es gibt noch kein KIM-Konto im Portal" in page


def test_a_forged_cross_site_post_is_refused(kim: KimWorld) -> None:
    seen = len(kim.am.am.seen)
    client = Client(enforce_csrf_checks=True)
    client.force_login(kim.owner)
    for name, methods in MAILBOX_ROUTES.items():
        if "POST" in methods:
            response = client.post(reverse(f"operations:{name}", args=[kim.mailbox.pk]), methods["POST"])
            assert response.status_code == 403, name
    _nothing_happened(kim, seen)
