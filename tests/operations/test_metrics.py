"""/metrics: refused without a token or an allowed address; with one, valid Prometheus text of the real checks."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from operations.services.health import forget_report
from tests.operations.conftest import ADDRESS

pytestmark = pytest.mark.django_db

TOKEN = "s3cr3t-scrape-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_nothing_configured_is_403_for_everyone(client, settings, fresh_store):
    settings.KIMPORTAL_METRICS_TOKEN = ""
    settings.KIMPORTAL_METRICS_ALLOW = []
    response = client.get("/metrics")
    assert response.status_code == 403
    assert b"kimportal_" not in response.content
    # Not even with an Authorization header: there is no token to match.
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_a_token_is_required_and_checked(client, settings, fresh_store):
    settings.KIMPORTAL_METRICS_TOKEN = TOKEN
    settings.KIMPORTAL_METRICS_ALLOW = []
    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing["WWW-Authenticate"].startswith("Bearer")
    assert b"kimportal_" not in missing.content
    for header in (f"Bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}", "Bearer"):
        assert client.get("/metrics", HTTP_AUTHORIZATION=header).status_code == 401, header


def test_with_the_token_the_real_state_as_prometheus_text(client, settings, ops):
    settings.KIMPORTAL_METRICS_TOKEN = TOKEN
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content.decode())
    assert found[("kimportal_component_up", (("component", "konnektor"),))] == 1.0
    assert found[("kimportal_component_up", (("component", "clientmodul"),))] == 1.0
    state = (("component", "konnektor"), ("kimportal_component_state", "ok"))
    assert found[("kimportal_component_state", state)] == 1.0
    assert found[("kimportal_cm_login_up", (("account", ADDRESS),))] == 1.0
    assert found[("kimportal_outbox_messages", (("account", ADDRESS), ("state", "waiting")))] == 0.0
    assert found[("kimportal_outbox_messages", (("account", ADDRESS), ("state", "held")))] == 0.0
    assert found[("kimportal_signing_queue_drafts", (("account", ADDRESS), ("state", "open")))] == 0.0
    assert 0 <= found[("kimportal_fetch_age_seconds", (("account", ADDRESS),))] < 60
    days = {labels: value for (name, labels), value in found.items() if name == "kimportal_certificate_days_left"}
    assert {dict(labels)["kind"] for labels in days} == {"smcb", "ehba", "cm_tls"}
    assert all(value > 30 for value in days.values())
    assert found[("kimportal_cards_present", (("type", "SMC-B"),))] == 1.0
    assert ("kimportal_celery_heartbeat_age_seconds", (("process", "beat"),)) in found
    assert any(name == "kimportal_konnektor_info" for name, _ in found)

    # The Konnektor stops: the next round says so.
    ops.konnektor.stop()
    forget_report()
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert found[("kimportal_component_up", (("component", "konnektor"),))] == 0.0
    error = (("component", "konnektor"), ("kimportal_component_state", "error"))
    assert found[("kimportal_component_state", error)] == 1


def test_an_allowed_address_needs_no_token(client, settings, ops):
    settings.KIMPORTAL_METRICS_TOKEN = TOKEN
    settings.KIMPORTAL_METRICS_ALLOW = ["10.9.0.0/24", "not-an-address", "192.0.2.7"]
    assert client.get("/metrics", REMOTE_ADDR="10.9.0.15").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.9.1.15").status_code == 401
    settings.KIMPORTAL_METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="10.9.1.15").status_code == 403
    # A forged header does not change the address Django was given.
    assert client.get("/metrics", REMOTE_ADDR="10.9.1.15", HTTP_X_FORWARDED_FOR="10.9.0.15").status_code == 403


def test_metrics_and_health_need_no_session_but_a_logged_in_user_gains_nothing(client, settings, ops, admin_user):
    settings.KIMPORTAL_METRICS_TOKEN = TOKEN
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 401


def test_held_mail_of_a_switched_off_mailbox_is_a_metric_too(client, settings, ops):
    from django.utils import timezone

    from mailbox.models import OutgoingMessage
    from tests.mailbox.factories import KimAccountFactory, MailboxFactory

    settings.KIMPORTAL_METRICS_TOKEN = TOKEN
    off = MailboxFactory(address="alt-station@klinik-test.kim.telematik-test", is_active=False)
    KimAccountFactory(mailbox=off)
    OutgoingMessage.objects.create(
        mailbox=off,
        subject="Rückfrage",
        to=["praxis@praxis-test.kim.telematik-test"],
        state=OutgoingMessage.State.HELD,
        queued_at=timezone.now(),
    )
    found = samples(client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode())
    assert found[("kimportal_outbox_messages", (("account", off.address), ("state", "held")))] == 1.0
    assert found[("kimportal_outbox_messages", (("account", ADDRESS), ("state", "held")))] == 0.0
