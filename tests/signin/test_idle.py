"""Sessions on shared ward PCs: one shift at most, and ended on the server after the idle limit, the way logging out
ends them (audited, the session's sockets told). Time is moved by editing the session's stamps, never by sleeping."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.sessions.models import Session
from django.urls import reverse
from django.utils import timezone

from mailbox.middleware import BACKGROUND_HEADER
from mailbox.services.audit import AuditEvent
from mailbox.signin import ACTIVE_AT, EXPIRY_GRACE_SECONDS, SIGNED_IN_AT
from tests.signin.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, station, settings):
    settings.KIMPORTAL_IDLE_LOGOUT_MINUTES = 30
    settings.SESSION_COOKIE_AGE = 12 * 3600
    assert client.post(reverse("login"), {"username": "station", "password": PASSWORD}).status_code == 302
    return client


def move_back(client, key: str, seconds: float) -> None:
    session = client.session
    session[key] = session[key] - seconds
    session.save()


def test_a_session_row_expires_at_the_idle_limit_and_no_later_than_the_shift(signed_in):
    row = Session.objects.get(session_key=signed_in.session.session_key)
    left = (row.expire_date - timezone.now()).total_seconds()
    assert 30 * 60 < left <= 30 * 60 + EXPIRY_GRACE_SECONDS
    # Not 14 days: the cookie dies with the session.
    assert signed_in.cookies["sessionid"]["max-age"] <= 30 * 60 + EXPIRY_GRACE_SECONDS


def test_an_idle_session_ends_on_the_server_like_a_logout(signed_in, station):
    move_back(signed_in, ACTIVE_AT, 30 * 60 + 1)
    key = signed_in.session.session_key
    with mock.patch("mailbox.middleware.broadcast_session_ended") as ended:
        response = signed_in.get(reverse("mailbox:inbox"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?abgemeldet=idle&next=")
    ended.assert_called_once_with(user_id=station.pk, session_key=key)
    assert "_auth_user_id" not in signed_in.session
    assert not Session.objects.filter(session_key=key).exists()
    logout = AuditEvent.objects.get(action="signin.logout")
    assert (logout.actor_id, logout.details["reason"]) == (station.pk, "idle")
    page = signed_in.get(response["Location"]).content.decode()
    assert "Sie wurden nach 30 Minuten ohne Eingabe abgemeldet." in page


def test_just_before_the_limit_a_request_counts_and_restarts_the_clock(signed_in):
    move_back(signed_in, ACTIVE_AT, 30 * 60 - 5)
    assert signed_in.get(reverse("mailbox:inbox")).status_code == 200
    status = signed_in.get(reverse("session-status"), headers={BACKGROUND_HEADER: "1"}).json()
    assert status["remaining"] > 30 * 60 - 5


def test_the_pages_own_checks_do_not_count_as_activity(signed_in):
    move_back(signed_in, ACTIVE_AT, 29 * 60)
    status = signed_in.get(reverse("session-status"), headers={BACKGROUND_HEADER: "1"}).json()
    assert 50 <= status["remaining"] <= 60 and status["warn"] == 60
    # Any background request (a poll, a reconnect's reload) leaves the clock alone too.
    signed_in.get(reverse("mailbox:inbox"), headers={BACKGROUND_HEADER: "1", "HX-Request": "true"})
    assert signed_in.get(reverse("session-status"), headers={BACKGROUND_HEADER: "1"}).json()["remaining"] <= 60
    # "Angemeldet bleiben" counts.
    status = signed_in.post(reverse("session-status")).json()
    assert status["remaining"] > 29 * 60


def test_the_warning_check_at_the_deadline_ends_the_session(signed_in, station):
    move_back(signed_in, ACTIVE_AT, 30 * 60)
    answer = signed_in.get(reverse("session-status"), headers={BACKGROUND_HEADER: "1"})
    assert answer.json() == {"remaining": 0, "login": reverse("login") + "?abgemeldet=idle"}
    assert "_auth_user_id" not in signed_in.session
    assert AuditEvent.objects.get(action="signin.logout").details["reason"] == "idle"
    # Signed out, the check says so instead of redirecting to the login page.
    assert signed_in.get(reverse("session-status")).json()["remaining"] == 0


def test_htmx_requests_of_an_idle_session_send_the_whole_page_to_login(signed_in):
    move_back(signed_in, ACTIVE_AT, 31 * 60)
    response = signed_in.get(reverse("mailbox:inbox"), headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == reverse("login") + "?abgemeldet=idle"


def test_the_shift_ends_however_active_the_user_is(signed_in, station):
    move_back(signed_in, SIGNED_IN_AT, 12 * 3600)
    response = signed_in.get(reverse("mailbox:inbox"))
    assert response["Location"].startswith(reverse("login") + "?abgemeldet=shift")
    assert AuditEvent.objects.get(action="signin.logout").details["reason"] == "shift"
    assert "Ihre Sitzung ist abgelaufen." in signed_in.get(response["Location"]).content.decode()


def test_idle_logout_off(signed_in, settings):
    settings.KIMPORTAL_IDLE_LOGOUT_MINUTES = 0
    move_back(signed_in, ACTIVE_AT, 6 * 3600)
    assert signed_in.get(reverse("mailbox:inbox")).status_code == 200
    assert 'id="idle-warning"' not in signed_in.get(reverse("mailbox:inbox")).content.decode()


def test_the_page_carries_the_warning_and_its_live_region(signed_in):
    page = signed_in.get(reverse("mailbox:inbox")).content.decode()
    assert 'data-idle-seconds="1800"' in page
    assert 'role="alert" data-text="Sie werden in 1 Minute abgemeldet."' in page
    assert "Angemeldet bleiben" in page


def test_sign_in_and_logout_are_audited_with_the_address(client, station):
    client.post(reverse("login"), {"username": "station", "password": PASSWORD}, REMOTE_ADDR="10.9.8.7")
    client.post(reverse("logout"), REMOTE_ADDR="10.9.8.7")
    events = list(AuditEvent.objects.filter(action__startswith="signin.").order_by("id"))
    assert [(e.action, e.actor_id, e.details.get("address")) for e in events] == [
        ("signin.succeeded", station.pk, "10.9.8.7"),
        ("signin.logout", station.pk, "10.9.8.7"),
    ]
    assert events[1].details["reason"] == "user"
