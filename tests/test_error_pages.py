"""Error pages speak German (the UI's language) and stand alone: no navigation, nothing that could fail again."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent
from signing.models import SignatureBatch
from signing.selectors.drafts import LIST_LIMIT
from tests.mailbox.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_missing_page_is_explained_in_german(client):
    client.force_login(UserFactory())
    response = client.get("/gibt-es-nicht/")
    assert response.status_code == 404
    html = response.content.decode()
    assert 'lang="de"' in html and "Seite nicht gefunden" in html


def test_a_stale_form_is_explained_in_german_and_changes_nothing():
    user = UserFactory()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(reverse("mailbox:absences"), {})
    assert response.status_code == 403
    assert "Das Formular ist abgelaufen" in response.content.decode()


def _selection_post(browser: Client, page: str, target: str, drafts: int, *, referer: str):
    browser.get(page)  # the form's page sets the CSRF cookie, as in a browser
    fields = [("csrfmiddlewaretoken", browser.cookies["csrftoken"].value), ("workplace", "1")]
    fields += [("draft", f"{n}:1:{'0' * 64}") for n in range(1, drafts + 1)]
    return browser.post(
        target, urlencode(fields), content_type="application/x-www-form-urlencoded", HTTP_REFERER=referer
    )


def test_a_selection_of_too_many_drafts_is_explained_in_german_and_changes_nothing(settings):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(UserFactory())
    queue = "http://testserver" + reverse("signing:queue")
    before = AuditEvent.objects.count()
    response = _selection_post(
        browser, queue, reverse("signing:batch-start"), settings.DATA_UPLOAD_MAX_NUMBER_FIELDS, referer=queue
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'lang="de"' in html and "<h1>Zu viele Einträge auf einmal</h1>" in html
    assert "mehr als 1000 Felder" in html and "Es wurde nichts gespeichert" in html
    assert f'<a href="{queue}">Zurück zur Seite</a>' in html
    assert not SignatureBatch.objects.exists()
    assert AuditEvent.objects.count() == before


def test_the_way_back_leads_only_to_this_site(settings):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(UserFactory())
    response = _selection_post(
        browser,
        reverse("signing:review-queue"),
        reverse("signing:review-queue"),
        settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
        referer="https://elsewhere.example/signatur/",
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Zu viele Einträge auf einmal" in html
    assert "elsewhere" not in html and "Zurück zur Seite" not in html


def test_the_longest_selection_a_list_offers_is_within_the_limit():
    # The signing lists show at most LIST_LIMIT drafts: selecting all of them must reach the form, not the 400 page.
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(UserFactory())
    page = reverse("signing:review-queue")
    response = _selection_post(browser, page, page, LIST_LIMIT, referer="http://testserver" + page)
    assert response.status_code == 302


def test_a_request_too_big_keeps_its_own_explanation(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(UserFactory())
    response = _selection_post(browser, reverse("signing:queue"), reverse("signing:batch-start"), 40, referer="")
    assert response.status_code == 400
    html = response.content.decode()
    assert "Sie war zu groß oder unvollständig" in html and "Zu viele Einträge" not in html
