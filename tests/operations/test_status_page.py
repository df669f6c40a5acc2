"""The operations page: who sees it, what it shows, its htmx fragment and "Jetzt prüfen"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from operations.services.health import health_report
from tests.mailbox.factories import MembershipFactory, UserFactory
from tests.operations.conftest import ADDRESS

pytestmark = pytest.mark.django_db

URL = "/betrieb/"
REFRESH = "/betrieb/pruefen/"


def permission() -> Permission:
    return Permission.objects.get(content_type__app_label="operations", codename="view_operations")


def manager():
    user = UserFactory(username="leitung")
    user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
    return user


def test_the_urls():
    assert reverse("operations:status") == URL and reverse("operations:status-refresh") == REFRESH
    assert reverse("health") == "/health/" and reverse("metrics") == "/metrics"


def test_anonymous_is_sent_to_login(client, fresh_store):
    for method, url in (("get", URL), ("post", REFRESH)):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
        # A polling page whose session ended elsewhere goes to the login as a whole (not into the fragment).
        response = getattr(client, method)(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 200 and response["HX-Redirect"] == f"{reverse('login')}?next=/betrieb/"
    from operations.services.health import REPORT_KEY
    from operations.services.store import store

    assert store().get(REPORT_KEY) is None  # nothing was checked for them


@pytest.mark.parametrize("who", ["ward", "member", "manager", "staff_without_permission", "permission_without_staff"])
def test_everyone_but_it_gets_403(client, who, fresh_store):
    user = UserFactory(username=who)
    if who == "member":
        MembershipFactory(user=user)
    elif who == "manager":
        user = manager()
    elif who == "staff_without_permission":
        user.is_staff = True
        user.save()
    elif who == "permission_without_staff":
        user.user_permissions.add(permission())
    client.force_login(user)
    assert client.get(URL).status_code == 403
    assert client.post(REFRESH).status_code == 403
    assert client.get(URL, HTTP_HX_REQUEST="true").status_code == 403
    # No check ran on their behalf.
    from operations.services.health import REPORT_KEY
    from operations.services.store import store

    assert store().get(REPORT_KEY) is None
    assert "Betrieb" not in client.get("/signatur/").content.decode()


def test_a_tab_of_someone_who_lost_the_permission_reloads_into_the_403(client, ops):
    """An ex-IT user's open page polls on: htmx swaps no 403, so without a reload the last report (addresses, card
    holders) would stay on screen, silently frozen, however long the tab is open."""
    it = UserFactory(username="it", is_staff=True)
    it.user_permissions.add(permission())
    client.force_login(it)
    assert client.get(URL, HTTP_HX_REQUEST="true").status_code == 200
    it.user_permissions.remove(permission())
    for method, url in (("get", URL), ("post", REFRESH)):
        response = getattr(client, method)(url, HTTP_HX_REQUEST="true")
        assert response.status_code == 403 and response["HX-Refresh"] == "true"
        assert "status-body" not in response.content.decode()
        # Without htmx (the reload itself): the whole 403 page.
        response = getattr(client, method)(url)
        assert response.status_code == 403 and "HX-Refresh" not in response
        assert "<html" in response.content.decode()


def test_staff_with_the_permission_and_superusers_see_it(client, ops, admin_user):
    it = UserFactory(username="it", is_staff=True)
    it.user_permissions.add(permission())
    for user in (it, admin_user):
        client.force_login(user)
        response = client.get(URL)
        assert response.status_code == 200, user
        html = response.content.decode()
        assert f'href="{URL}"' in html  # the navigation's "Betrieb"
        assert "Alle Komponenten in Ordnung." in html


def test_the_page_shows_every_component_account_and_card(client, ops, admin_user):
    client.force_login(admin_user)
    html = client.get(URL).content.decode()
    for key in ("konnektor", "cards", "certificates", "directory", "clientmodul", "fetch", "outbox", "celery_beat"):
        assert f'data-component="{key}"' in html
    assert html.count("in Ordnung") >= 11
    assert ADDRESS in html and "Kardiologie" in html
    assert "POP3-Anmeldung erfolgreich" in html
    assert "Klinikum Test" in html and "Dr. med. Anna Sommer" in html  # SMC-B and eHBA holders
    assert "Zuletzt erfolgreich vor" in html
    assert 'hx-trigger="every 15s"' in html
    assert "höchstens alle 20 Sekunden" in html  # KIMPORTAL_HEALTH_CACHE_SECONDS
    assert "Cache-Control" in client.get(URL).headers and "no-store" in client.get(URL)["Cache-Control"]


def test_htmx_gets_the_fragment_only(client, ops, admin_user):
    client.force_login(admin_user)
    response = client.get(URL, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="status-body"') and "<html" not in html


def test_a_red_component_with_its_german_explanation(client, ops, admin_user):
    ops.konnektor.stop()
    client.force_login(admin_user)
    response = client.post(REFRESH, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Störung" in html and "Konnektor nicht erreichbar" in html
    assert 'class="ops-item ops-error" data-component="konnektor"' in html


def test_refresh_checks_anew_but_not_more_often_than_every_few_seconds(client, ops, admin_user):
    client.force_login(admin_user)
    first = health_report()
    ops.konnektor.stop()
    # Right after a round: the same report (a held-down key is no load test).
    html = client.post(REFRESH, HTTP_HX_REQUEST="true").content.decode()
    assert "Konnektor nicht erreichbar" not in html
    assert health_report().checked_at == first.checked_at
    # Without htmx: back to the page.
    response = client.post(REFRESH)
    assert response.status_code == 302 and response["Location"] == URL


def test_refresh_needs_csrf(ops, admin_user):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(admin_user)
    assert strict.post(REFRESH).status_code == 403
