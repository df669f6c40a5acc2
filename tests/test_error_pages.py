"""Error pages speak German (the UI's language) and stand alone: no navigation, nothing that could fail again."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

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
