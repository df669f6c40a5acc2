"""The managers' page for KIS connections and the Django admin: tokens and callback secrets shown once and stored
only hashed (or encrypted), revocation effective at once, every change audited; 404 for everyone but managers."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from audit.models import AuditEvent
from mailbox.crypto import decrypt
from signing.api.tokens import token_hash
from signing.models import KisClient, KisToken
from tests.mailbox.factories import MailboxFactory, UserFactory
from tests.signing.kis import Api

pytestmark = pytest.mark.django_db


@pytest.fixture
def kardiologie():
    return MailboxFactory(display_name="Kardiologie", address="kardiologie@klinikum-test.kim.telematik-test")


def _token_in(response) -> str:
    html = response.content.decode()
    start = html.index('id="kis-token-value">') + len('id="kis-token-value">')
    return html[start : html.index("<", start)]


def _create(client: Client, mailbox, **extra):
    data = {"name": "KIS Kardiologie", "mailboxes": [mailbox.pk], "callback_url": "https://kis.example/cb", **extra}
    return client.post(reverse("kis:clients"), data)


def test_a_manager_creates_a_connection_and_sees_its_token_once(client, manager, kardiologie):
    client.force_login(manager)
    response = _create(client, kardiologie)
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    token = _token_in(response)
    assert token.startswith("kisv1_")
    connection = KisClient.objects.get()
    assert list(connection.mailboxes.all()) == [kardiologie] and connection.callback_url == "https://kis.example/cb"
    row = KisToken.objects.get(client=connection)
    assert row.token_hash == token_hash(token) and row.created_by == manager
    assert 'id="kis-secret-value"' in response.content.decode()
    assert decrypt(connection.callback_secret)  # encrypted at rest, readable by the portal
    # Shown once: the list does not show it again.
    page = client.get(reverse("kis:clients"))
    assert token not in page.content.decode() and token[:12] in page.content.decode()
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"signing.kis_client_created", "signing.kis_token_issued"} <= actions
    # … and it works at once.
    assert Api(Client(), token).get("NICHTS").status_code == 404


def test_a_duplicate_name_and_a_bad_callback_url_are_refused(client, manager, kardiologie):
    client.force_login(manager)
    _create(client, kardiologie)
    again = _create(client, kardiologie, name="kis kardiologie")
    assert again.status_code == 422 and KisClient.objects.count() == 1
    bad = _create(client, kardiologie, name="Anderes KIS", callback_url="ftp://kis.example/cb")
    assert bad.status_code == 422 and KisClient.objects.count() == 1


def test_revoking_a_token_refuses_it_at_once(client, manager, kardiologie):
    client.force_login(manager)
    token = _token_in(_create(client, kardiologie))
    connection = KisClient.objects.get()
    row = KisToken.objects.get()
    response = client.post(reverse("kis:token-revoke", args=[connection.pk, row.pk]))
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None and row.revoked_by == manager
    assert Api(Client(), token).get("X").json()["code"] == "token_revoked"
    assert AuditEvent.objects.filter(action="signing.kis_token_revoked").exists()


def test_a_new_token_and_a_new_secret(client, manager, kardiologie):
    client.force_login(manager)
    first = _token_in(_create(client, kardiologie))
    connection = KisClient.objects.get()
    second = _token_in(client.post(reverse("kis:token-issue", args=[connection.pk])))
    assert second != first and KisToken.objects.filter(client=connection, revoked_at__isnull=True).count() == 2
    old_secret = decrypt(connection.callback_secret)
    page = client.post(reverse("kis:secret-renew", args=[connection.pk]))
    connection.refresh_from_db()
    new_secret = decrypt(connection.callback_secret)
    assert new_secret != old_secret and new_secret in page.content.decode()
    assert AuditEvent.objects.filter(action="signing.kis_secret_renewed").exists()


def test_changing_the_scope_and_switching_off(client, manager, kardiologie):
    client.force_login(manager)
    token = _token_in(_create(client, kardiologie))
    connection = KisClient.objects.get()
    innere = MailboxFactory(display_name="Innere")
    url = reverse("kis:client", args=[connection.pk])
    response = client.post(url, {"mailboxes": [innere.pk], "callback_url": "", "is_active": ""})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert list(connection.mailboxes.all()) == [innere] and not connection.is_active and not connection.callback_url
    event = AuditEvent.objects.get(action="signing.kis_client_changed")
    assert event.details["mailboxes"] == [innere.address] and event.details["is_active"] is False
    assert Api(Client(), token).get("X").json()["code"] == "client_inactive"
    page = client.get(url)
    assert page.status_code == 200 and "Innere" in page.content.decode()


def test_a_token_of_another_connection_is_404(client, manager, kardiologie):
    client.force_login(manager)
    _create(client, kardiologie)
    _create(client, kardiologie, name="Labor")
    first, second = KisClient.objects.order_by("pk")
    foreign = KisToken.objects.get(client=second)
    assert client.post(reverse("kis:token-revoke", args=[first.pk, foreign.pk])).status_code == 404
    assert KisToken.objects.get(pk=foreign.pk).revoked_at is None


def kis_manage_patterns() -> list[URLPattern]:
    found: list[URLPattern] = []

    def walk(patterns, namespaces: tuple[str, ...]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, (*namespaces, p.namespace) if p.namespace else namespaces)
            elif isinstance(p, URLPattern) and namespaces == ("kis",):
                found.append(p)

    walk(get_resolver().url_patterns, ())
    return found


@pytest.mark.parametrize("who", ["stranger", "physician", "member_owner"])
def test_everyone_but_managers_gets_404_and_nothing_changes(client, who, manager, kardiologie, request):
    from mailbox.models import Membership
    from tests.mailbox.factories import MembershipFactory

    manager_client = Client()
    manager_client.force_login(manager)
    _create(manager_client, kardiologie)
    connection, token = KisClient.objects.get(), KisToken.objects.get()
    if who == "member_owner":
        user = UserFactory(username="owner")
        MembershipFactory(mailbox=kardiologie, user=user, role=Membership.Role.OWNER)
    else:
        user = request.getfixturevalue(who)
    client.force_login(user)
    before = (KisToken.objects.filter(revoked_at__isnull=True).count(), connection.callback_secret)
    patterns = kis_manage_patterns()
    assert {p.name for p in patterns} == {"clients", "client", "token-issue", "token-revoke", "secret-renew"}
    for p in patterns:
        kwargs = {"pk": connection.pk, "token_pk": token.pk}
        url = reverse(f"kis:{p.name}", kwargs={k: v for k, v in kwargs.items() if k in p.pattern.converters})
        for response in (client.get(url), client.post(url, {"name": "x", "mailboxes": [kardiologie.pk]})):
            assert response.status_code == 404, (url, response.status_code)
            assert b"kisv1_" not in response.content
    connection.refresh_from_db()
    assert (KisToken.objects.filter(revoked_at__isnull=True).count(), connection.callback_secret) == before
    assert KisClient.objects.count() == 1


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("kis:clients"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_page_asks_for_csrf(manager, kardiologie):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(manager)
    assert _create(strict, kardiologie).status_code == 403
    assert not KisClient.objects.exists()


# --- Django admin -----------------------------------------------------------------------------------------------


@pytest.fixture
def it_admin():
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


def test_admin_creates_a_connection_through_the_service(client, it_admin, kardiologie):
    client.force_login(it_admin)
    response = client.post(
        reverse("admin:signing_kisclient_add"),
        {
            "name": "KIS Admin",
            "mailboxes": [kardiologie.pk],
            "callback_url": "",
            "is_active": "on",
            "tokens-TOTAL_FORMS": "0",
            "tokens-INITIAL_FORMS": "0",
            "tokens-MIN_NUM_FORMS": "0",
            "tokens-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 200, response.content[:500]
    html = response.content.decode()
    connection = KisClient.objects.get()
    token = KisToken.objects.get(client=connection)
    shown = html.split('class="kis-token-value">', 1)[1].split("<", 1)[0]
    assert token.token_hash == token_hash(shown)
    assert list(connection.mailboxes.all()) == [kardiologie]
    assert AuditEvent.objects.filter(action="signing.kis_client_created", actor_id=it_admin.pk).exists()


def test_admin_issues_and_revokes_tokens(client, it_admin, kardiologie, manager):
    from signing.api.services import kis_client_create

    issued = kis_client_create(manager=manager, name="KIS", mailboxes=[kardiologie])
    client.force_login(it_admin)
    response = client.post(
        reverse("admin:signing_kisclient_changelist"),
        {"action": "issue_token", "_selected_action": [issued.client.pk]},
    )
    assert response.status_code == 200 and KisToken.objects.count() == 2
    response = client.post(
        reverse("admin:signing_kistoken_changelist"),
        {"action": "revoke", "_selected_action": list(KisToken.objects.values_list("pk", flat=True))},
    )
    assert response.status_code == 302
    assert not KisToken.objects.filter(revoked_at__isnull=True).exists()
    assert Api(Client(), issued.token).get("X").json()["code"] == "token_revoked"


def test_the_connections_page_lists_its_callbacks(client, manager, mailbox, physician, assistant):
    from signing.api.callbacks import callbacks_sweep
    from signing.models import Draft, KisCallback
    from tests.signing.kis import submission

    client.force_login(manager)
    token = _token_in(_create(client, mailbox))
    body = submission("KIS-7", mailbox=mailbox.address)
    assert Api(Client(), token).submit(body).status_code == 201
    Draft.objects.update(state=Draft.State.SIGNED)
    [callback_id] = callbacks_sweep()
    KisCallback.objects.filter(pk=callback_id).update(attempts=2, last_error="HTTP 500")
    page = client.get(reverse("kis:client", args=[KisClient.objects.get().pk]))
    row = page.content.decode().split(f'id="kis-callback-{callback_id}"', 1)[1].split("</tr>", 1)[0]
    assert "KIS-7" in row and "signiert – wartet auf Versand" in row and "HTTP 500" in row and "ausstehend" in row


def test_admin_refuses_a_duplicate_name_next_to_the_field(client, it_admin, kardiologie, manager):
    from signing.api.services import kis_client_create

    kis_client_create(manager=manager, name="KIS Kardiologie", mailboxes=[kardiologie])
    client.force_login(it_admin)
    response = client.post(
        reverse("admin:signing_kisclient_add"),
        {
            "name": "kis kardiologie",
            "mailboxes": [kardiologie.pk],
            "callback_url": "",
            "is_active": "on",
            "tokens-TOTAL_FORMS": "0",
            "tokens-INITIAL_FORMS": "0",
            "tokens-MIN_NUM_FORMS": "0",
            "tokens-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 200 and "gibt es schon" in response.content.decode()
    assert KisClient.objects.count() == 1


def test_admin_lists_kis_drafts_and_callbacks_read_only(client, it_admin, manager, mailbox, physician, assistant):
    from signing.api.services import kis_client_create
    from tests.signing.kis import submission

    issued = kis_client_create(manager=manager, name="KIS", mailboxes=[mailbox])
    Api(Client(), issued.token).submit(submission("KIS-42", mailbox=mailbox.address))
    client.force_login(it_admin)
    page = client.get(reverse("admin:signing_kisdraft_changelist"))
    assert page.status_code == 200 and "KIS-42" in page.content.decode()
    assert client.get(reverse("admin:signing_kiscallback_changelist")).status_code == 200
    assert client.get(reverse("admin:signing_kisdraft_add")).status_code == 403
