"""A mailbox's KIM account page: status, quota and limits from the simulated Account Manager, the storage period,
the 1.5+ opt-in with its warning, deregistration and its revocation with confirmation — each audited, each fault
one German sentence with nothing changed."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from mailbox.models import KimAccount
from operations.clients.accountmanager import KIM_VERSION_LARGE_WARNING
from tests.operations import kimadmin_world
from tests.operations.kimadmin_world import ADDRESS, PASSWORD, PRAXIS, SMCB_TELEMATIK_ID, KimWorld
from tests.tisim.support import smtp_connect, smtp_user

pytestmark = pytest.mark.django_db
kim = kimadmin_world.kim  # the fixture


def _page(world: KimWorld, user: Any = None) -> str:
    response = world.client_for(user or world.owner).get(reverse("operations:kim-account", args=[world.mailbox.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _record(world: KimWorld) -> dict[str, Any]:
    # The simulator learns about a CM account on its first authenticated call ({} until then).
    return world.am.am.account_record(ADDRESS) or {}


def test_the_page_shows_status_quota_and_limits(kim: KimWorld) -> None:
    with smtp_connect(kim.cm) as conn:  # a mail in the maildrop uses some of the quota
        conn.login(smtp_user(PRAXIS), PASSWORD)
        conn.sendmail(PRAXIS, [ADDRESS], b"Subject: Befund\r\n\r\n" + (b"x" * 70 + b"\r\n") * 1000)
    page = _page(kim)
    assert re.search(r'id="kim-registration">\s*registriert', page)
    assert re.search(r'id="kim-version">1\.5 ·', page)
    assert "10,0\xa0GB frei von 10,0\xa0GB" in page or "frei von 10,0" in page
    meter = re.search(r'<meter id="kim-quota-meter" min="0" max="(\d+)"[^>]*value="(\d+)"', page)
    assert meter is not None and int(meter.group(1)) == 10 * 2**30 and int(meter.group(2)) > 50_000
    assert "700,0\xa0MB" in page  # maxMailSize 734003200
    assert 'name="data_time_to_live" value="90"' in page
    assert "ausgeschaltet" in page  # no out-of-office note yet


def test_storage_period_is_changed_at_the_provider_and_audited(kim: KimWorld) -> None:
    client = kim.client_for(kim.owner)
    url = reverse("operations:kim-data-time-to-live", args=[kim.mailbox.pk])
    for bad, message in (("5", "Mindestens 10 Tage."), ("366", "Höchstens 365 Tage."), ("zehn", "ganze Zahl")):
        response = client.post(url, {"data_time_to_live": bad})
        assert response.status_code == 422
        assert message in response.content.decode()
    assert _record(kim).get("dataTimeToLive", 90) == 90
    assert client.post(url, {"data_time_to_live": "120"}).status_code == 302
    assert _record(kim)["dataTimeToLive"] == 120
    event = AuditEvent.objects.get(action="kim.data_time_to_live_set")
    assert event.details == {"days": 120} and event.mailbox_id == kim.mailbox.pk
    assert 'name="data_time_to_live" value="120"' in _page(kim)


def test_version_1_5_plus_needs_the_warning_confirmed(kim: KimWorld) -> None:
    client = kim.client_for(kim.manager)
    url = reverse("operations:kim-version", args=[kim.mailbox.pk])
    page = client.get(url).content.decode()
    assert "über 15 MiB" in page and KIM_VERSION_LARGE_WARNING[:60] in page.replace("&quot;", '"')
    response = client.post(url, {})
    assert response.status_code == 422
    assert "Bitte bestätigen Sie, dass Sie den Hinweis gelesen haben." in response.content.decode()
    assert _record(kim).get("kimVersion", "1.5") == "1.5"
    assert client.post(url, {"confirm": "on"}).status_code == 302
    assert _record(kim)["kimVersion"] == "1.5+"
    assert AuditEvent.objects.get(action="kim.version_set").details == {"version": "1.5+"}
    # The directory entry of the SMC-B now says 1.5+.
    assert "1.5+" in str(kim.am.am.directory_entry(SMCB_TELEMATIK_ID))
    # A locked directory entry (423) is a clear refusal.
    kim.am.am.set_directory_entry_active(SMCB_TELEMATIK_ID, False)
    response = client.post(url, {"confirm": "on"})
    assert response.status_code == 422
    assert "Der Eintrag im Verzeichnisdienst ist gesperrt" in response.content.decode()
    assert AuditEvent.objects.filter(action="kim.version_set").count() == 1


def test_deregistration_and_its_revocation_need_a_confirmation(kim: KimWorld) -> None:
    client = kim.client_for(kim.owner)
    deregister = reverse("operations:kim-deregister", args=[kim.mailbox.pk])
    revoke = reverse("operations:kim-revoke", args=[kim.mailbox.pk])
    assert "danach löscht der Anbieter alle Daten" in client.get(deregister).content.decode()
    response = client.post(deregister, {})
    assert response.status_code == 422
    assert "Bitte bestätigen Sie den Schritt ausdrücklich." in response.content.decode()
    assert _record(kim).get("regStat", "registered") == "registered"
    # Revoking what is not deregistered: the provider's 403 as a German sentence.
    response = client.post(revoke, {"confirm": "on"})
    assert "Das KIM-Konto ist nicht abgemeldet; es gibt nichts zu widerrufen." in response.content.decode()
    # The directory down (502): nothing happens.
    kim.am.am.set_directory_available(False)
    response = client.post(deregister, {"confirm": "on"})
    assert response.status_code == 422
    assert "Der Verzeichnisdienst (VZD) ist für den Account Manager nicht erreichbar" in response.content.decode()
    assert _record(kim).get("regStat", "registered") == "registered"
    kim.am.am.set_directory_available(True)

    assert client.post(deregister, {"confirm": "on"}).status_code == 302
    assert _record(kim)["regStat"] == "deregistered"
    page = _page(kim)
    assert "abgemeldet" in page and "Abruf noch bis" in page and "Abmeldung widerrufen" in page
    assert client.post(revoke, {"confirm": "on"}).status_code == 302
    assert _record(kim)["regStat"] == "registered"
    actions = list(AuditEvent.objects.filter(action__startswith="kim.").order_by("pk").values_list("action", flat=True))
    # The 502 is a 5xx: whether the provider did anything is uncertain, and the trail keeps who asked.
    assert actions == ["kim.change_uncertain", "kim.deregistered", "kim.deregistration_revoked"]


def test_provider_down_the_page_still_opens_and_says_so(kim: KimWorld) -> None:
    kim.am.am.stop()
    page = _page(kim)
    assert "Der Account Manager des KIM-Anbieters ist nicht erreichbar." in page
    assert page.count("Der Account Manager des KIM-Anbieters ist nicht erreichbar.") == 1
    assert "unbekannt" in page
    response = kim.client_for(kim.owner).post(
        reverse("operations:kim-data-time-to-live", args=[kim.mailbox.pk]), {"data_time_to_live": "30"}
    )
    assert response.status_code == 302
    follow = kim.client_for(kim.owner).get(response.url).content.decode()
    assert "Der Account Manager des KIM-Anbieters ist nicht erreichbar." in follow
    assert not AuditEvent.objects.filter(action__startswith="kim.").exists()


def test_the_konnektor_without_an_smcb_is_named(kim: KimWorld, settings: Any) -> None:
    settings.KIMPORTAL_ACCOUNT_MANAGER_SMCB_ICCSN = "80276000000000000000"  # a card that is not there
    page = _page(kim)
    assert "keine SMC-B" in page


def test_konnektor_down_or_an_undecryptable_password_are_named(kim: KimWorld) -> None:
    kim.konnektor.stop()
    page = _page(kim)
    assert "Authentisierung mit der SMC-B fehlgeschlagen" in page
    response = kim.client_for(kim.owner).post(
        reverse("operations:kim-out-of-office", args=[kim.mailbox.pk]),
        {"active": "", "starts_at": "", "ends_at": "", "text": ""},
    )
    assert "Authentisierung mit der SMC-B fehlgeschlagen" in response.content.decode()
    KimAccount.objects.filter(pk=kim.account.pk).update(password_encrypted="kaputt")
    assert "kann nicht entschlüsselt werden" in _page(kim)
    assert not AuditEvent.objects.filter(action__startswith="kim.").exists()


def test_a_deregistration_whose_answer_is_lost_is_audited_as_uncertain(
    kim: KimWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The provider deregisters the address and then answers 500 (as after a timeout): the page says the outcome is
    uncertain, and the trail says who asked for it — the address may be gone at the provider."""
    from tisim.accountmanager.server import ApiError

    original = kim.am.am.deregister

    def applied_then_500(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        raise ApiError(500, "Internal Server Error")

    monkeypatch.setattr(kim.am.am, "deregister", applied_then_500)
    response = kim.client_for(kim.owner).post(
        reverse("operations:kim-deregister", args=[kim.mailbox.pk]), {"confirm": "on"}
    )
    assert response.status_code == 422
    assert "ist ungewiss" in response.content.decode()
    assert _record(kim)["regStat"] == "deregistered"
    event = AuditEvent.objects.get(action__startswith="kim.")
    assert event.action == "kim.change_uncertain"
    assert event.actor_id == kim.owner.pk and event.mailbox_id == kim.mailbox.pk
    assert event.details["change"] == "kim.deregistered" and event.details["error"] == "http_500"
    # A refusal before anything could change at the provider stays unaudited, as before.
    kim.am.am.stop()
    kim.client_for(kim.owner).post(reverse("operations:kim-revoke", args=[kim.mailbox.pk]), {"confirm": "on"})
    assert AuditEvent.objects.filter(action__startswith="kim.").count() == 1
