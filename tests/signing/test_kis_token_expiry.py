"""Every KIS API token expires: chosen when issued, refused afterwards with its own error, shown on the connection's
page, warned about on the operations page before a connection loses its last valid token, and given a date when a
token from before expiry existed is migrated."""

from __future__ import annotations

import datetime as dt
import importlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from operations.services.health import _judge_kis_tokens
from operations.services.results import ERROR, OK, WARNING, Report
from signing.api.services import kis_token_issue, kis_token_revoke
from signing.api.tokens import LIFETIMES_DAYS, lifetime, lifetime_default, token_hash
from signing.models import Draft, KisClient, KisToken
from tests.signing.kis import Api, kis_issued, kis_mailbox, submission  # noqa: F401

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


def _row(token: str) -> KisToken:
    return KisToken.objects.get(token_hash=token_hash(token))


def _expire(token: str, at: dt.datetime) -> None:
    KisToken.objects.filter(token_hash=token_hash(token)).update(expires_at=at)


# --- the API -------------------------------------------------------------------------------------------------------


def test_an_expired_token_is_refused_with_its_own_code_and_the_date(issued):
    api = Api(Client(), issued.token)
    assert api.submit(submission("KIS-1")).status_code == 201
    at = timezone.now() - dt.timedelta(seconds=1)
    _expire(issued.token, at)
    response = api.get("KIS-1")
    assert response.status_code == 401 and response.json()["code"] == "token_expired"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert timezone.localtime(at).strftime("%d.%m.%Y") in response.json()["detail"]
    assert api.submit(submission("KIS-2")).status_code == 401
    assert Draft.objects.count() == 1


def test_a_token_just_before_its_expiry_is_accepted_and_just_after_refused(issued):
    api = Api(Client(), issued.token)
    _expire(issued.token, timezone.now() + dt.timedelta(minutes=5))
    assert api.get("NICHTS").status_code == 404  # accepted: the document is simply unknown
    _expire(issued.token, timezone.now())
    assert api.get("NICHTS").json()["code"] == "token_expired"


def test_a_token_is_expired_from_its_expiry_on(issued):
    token = _row(issued.token)
    at = token.expires_at
    assert not token.is_expired(at - dt.timedelta(microseconds=1))
    assert token.is_expired(at) and token.is_expired(at + dt.timedelta(microseconds=1))


def test_a_revoked_and_expired_token_says_revoked(issued, manager):
    kis_token_revoke(manager=manager, token=_row(issued.token))
    _expire(issued.token, timezone.now() - DAY)
    assert Api(Client(), issued.token).get("NICHTS").json()["code"] == "token_revoked"


# --- issuing -------------------------------------------------------------------------------------------------------


def test_a_token_is_issued_for_the_chosen_lifetime_and_audited(issued, manager):
    before = timezone.now()
    new = kis_token_issue(manager=manager, client=issued.client, days=90)
    row = _row(new.token)
    assert before + 90 * DAY <= row.expires_at <= timezone.now() + 90 * DAY
    assert new.expires_at == row.expires_at
    event = AuditEvent.objects.get(action="signing.kis_token_issued", details__token=row.prefix)
    assert event.details["expires_at"] == row.expires_at.isoformat()
    # The connection's first token got the default: a year.
    first = _row(issued.token)
    assert first.expires_at - first.created_at == dt.timedelta(days=365)


def test_only_the_offered_lifetimes_are_issued(issued, manager):
    with pytest.raises(ValueError):
        kis_token_issue(manager=manager, client=issued.client, days=3650)
    assert KisToken.objects.count() == 1


@pytest.mark.parametrize(("configured", "used"), [(365, 365), (100, 90), (10, 30), (5000, 730)])
def test_the_configured_default_falls_back_to_an_offered_lifetime(settings, configured, used):
    settings.KIMPORTAL_KIS_TOKEN_DAYS = configured
    assert lifetime_default() == used and lifetime(None) == dt.timedelta(days=used)
    assert used in LIFETIMES_DAYS


# --- the managers' page --------------------------------------------------------------------------------------------


def test_the_manager_chooses_the_lifetime_and_sees_the_date(client, manager, issued):
    client.force_login(manager)
    page = client.get(reverse("kis:client", args=[issued.client.pk])).content.decode()
    assert 'name="token_days"' in page and '<option value="365" selected>' in page
    response = client.post(reverse("kis:token-issue", args=[issued.client.pk]), {"token_days": "30"})
    assert response.status_code == 200
    newest = KisToken.objects.latest("created_at", "id")
    assert newest.expires_at - newest.created_at == dt.timedelta(days=30)
    html = response.content.decode()
    shown = timezone.localtime(newest.expires_at).strftime("%d.%m.%Y %H:%M")
    assert f'id="kis-token-expires">{shown}<' in html
    # Within the warning period: the list says how long it is left, marked for attention.
    assert "gültig, läuft in 29 Tagen ab" in html or "gültig, läuft in 30 Tagen ab" in html
    assert 'class="kis-token-attention"' in html


def test_a_lifetime_not_offered_is_refused_and_issues_nothing(client, manager, issued):
    client.force_login(manager)
    response = client.post(reverse("kis:token-issue", args=[issued.client.pk]), {"token_days": "3650"})
    assert response.status_code == 422
    assert 'id="kis-token-value"' not in response.content.decode()
    assert KisToken.objects.count() == 1


def test_the_lifetime_refused_is_named_next_to_its_field(client, manager, issued):
    client.force_login(manager)
    html = client.post(reverse("kis:token-issue", args=[issued.client.pk]), {"token_days": "7"}).content.decode()
    select = html.split('<select name="token_days"', 1)[1].split(">", 1)[0]
    # Every id the field says describes it is on the page: the help text and the error.
    described = select.split('aria-describedby="', 1)[1].split('"', 1)[0].split()
    assert described == ["id_token_days_helptext", "id_token_days_error"]
    for target in described:
        assert f'id="{target}"' in html


def test_the_connections_list_shows_only_tokens_the_api_accepts(client, manager, issued):
    kept = kis_token_issue(manager=manager, client=issued.client, days=90)
    _expire(issued.token, timezone.now() - DAY)
    client.force_login(manager)
    html = client.get(reverse("kis:clients")).content.decode()
    row = html.split(f'id="kis-client-{issued.client.pk}"', 1)[1].split("</tr>", 1)[0]
    assert _row(kept.token).prefix in row and _row(issued.token).prefix not in row


def test_an_expired_token_is_listed_as_expired(client, manager, issued):
    _expire(issued.token, timezone.now() - DAY)
    client.force_login(manager)
    html = client.get(reverse("kis:client", args=[issued.client.pk])).content.decode()
    row = html.split(f'id="kis-token-{_row(issued.token).pk}"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="kis-token-attention">abgelaufen</td>' in row


def test_a_new_connection_gets_the_chosen_lifetime(client, manager, mailbox):
    client.force_login(manager)
    data = {"name": "KIS Chirurgie", "mailboxes": [mailbox.pk], "token_days": "730"}
    response = client.post(reverse("kis:clients"), data)
    assert response.status_code == 200
    token = KisToken.objects.get(client__name="KIS Chirurgie")
    assert token.expires_at - token.created_at == dt.timedelta(days=730)
    assert 'id="kis-token-expires"' in response.content.decode()


# --- the operations page -------------------------------------------------------------------------------------------


def _judged() -> Report:
    report = Report(checked_at=0.0, duration=0.0)
    _judge_kis_tokens(report, timezone.now())
    return report


def test_no_active_connection_no_line(issued):
    KisClient.objects.update(is_active=False)
    assert _judged().component("kis_tokens") is None


def test_a_connection_with_a_long_valid_token_is_green(issued):
    line = _judged().component("kis_tokens")
    assert line is not None and line.state == OK
    assert "Alle 1 KIS-Anbindungen" in str(line.text)


def test_the_last_valid_token_expiring_soon_is_a_warning_naming_the_connection(issued, manager, settings):
    settings.KIMPORTAL_KIS_TOKEN_WARN_DAYS = 30
    _expire(issued.token, timezone.now() + 10 * DAY + dt.timedelta(hours=1))
    line = _judged().component("kis_tokens")
    assert line.state == WARNING
    assert "„KIS Kardiologie“ läuft in 10 Tagen ab" in str(line.text)
    # A newer token the KIS can switch to: fine again.
    kis_token_issue(manager=manager, client=issued.client, days=365)
    assert _judged().component("kis_tokens").state == OK


@pytest.mark.parametrize(
    ("left", "said"),
    [
        (dt.timedelta(hours=3), "läuft in weniger als einem Tag ab."),
        # Not "morgen": from 20:00, 40 hours end the day after tomorrow.
        (dt.timedelta(hours=30), "läuft in weniger als zwei Tagen ab."),
        (dt.timedelta(hours=47), "läuft in weniger als zwei Tagen ab."),
        (dt.timedelta(hours=49), "läuft in 2 Tagen ab."),
        (dt.timedelta(days=12, hours=1), "läuft in 12 Tagen ab."),
    ],
)
def test_how_soon_is_said_in_words(issued, left, said):
    _expire(issued.token, timezone.now() + left)
    line = _judged().component("kis_tokens")
    assert line.state == WARNING and f"„KIS Kardiologie“ {said}" in str(line.text)


def test_only_revoked_or_expired_tokens_is_red(issued, manager):
    later = kis_token_issue(manager=manager, client=issued.client, days=730)
    kis_token_revoke(manager=manager, token=_row(later.token))  # the longest one, revoked: does not count
    _expire(issued.token, timezone.now() - DAY)
    line = _judged().component("kis_tokens")
    # The KIS can hand in nothing: red.
    assert line.state == ERROR and "„KIS Kardiologie“ hat kein gültiges Token" in str(line.text)
    # A switched-off connection needs none.
    KisClient.objects.update(is_active=False)
    assert _judged().component("kis_tokens") is None


def test_the_line_reads_english_for_an_english_reader(issued):
    from django.utils import translation

    _expire(issued.token, timezone.now() - DAY)
    line = _judged().component("kis_tokens")
    with translation.override("en"):
        text = str(line.text)
    assert "has no valid token" in text and "KIS Kardiologie" in text


# --- the demo's client script and tokens from before expiry --------------------------------------------------------


def test_the_demo_client_replaces_an_expired_token(tmp_path, manager, mailbox):
    path = tmp_path / "kis-token"
    call_command("kis_demo_client", token_file=str(path), mailbox=mailbox.address, manager=manager.username,
                 stdout=StringIO())  # fmt: skip
    first = path.read_text().strip()
    _expire(first, timezone.now() - DAY)
    out = StringIO()
    call_command("kis_demo_client", token_file=str(path), mailbox=mailbox.address, manager=manager.username,
                 stdout=out)  # fmt: skip
    assert "new token" in out.getvalue() and path.read_text().strip() != first


def test_the_rule_for_tokens_from_before_expiry():
    migration = importlib.import_module("signing.migrations.0014_kis_token_expiry")
    now = timezone.now()
    # A young token: a year from its creation; an old one: 90 days from the upgrade, not already expired.
    assert migration.expiry_for_existing(now - 10 * DAY, now) == now + 355 * DAY
    assert migration.expiry_for_existing(now - 400 * DAY, now) == now + 90 * DAY


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_every_existing_token_a_date():
    before = [("signing", "0013_kis_callback_error_translated_when_shown")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    client = old.get_model("signing", "KisClient").objects.create(name="KIS alt")
    old_token = old.get_model("signing", "KisToken")
    created = timezone.now() - 10 * DAY
    old_token.objects.create(client=client, token_hash="a" * 64, prefix="kisv1_aaaaaa", created_at=created)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    token = KisToken.objects.get(token_hash="a" * 64)
    assert token.expires_at == created + dt.timedelta(days=365)
