"""Every page carries the area where a failed request of the page says what happened (portal.js fills it): an alert
region that is empty until then, and the texts for each failure in the page's language."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_the_page_carries_the_empty_alert_region_and_the_german_texts(client):
    page = client.get(reverse("login")).content.decode()
    assert '<p id="request-error-text" role="alert"></p>' in page
    assert 'data-forbidden-text="Die Aktion wurde abgelehnt' in page
    assert 'data-offline-text="Keine Verbindung zum Server' in page
    assert 'data-server-text="Ein Fehler ist aufgetreten' in page
    assert 'data-unavailable-text="Der Dienst ist vorübergehend nicht erreichbar' in page  # a 503
    assert 'id="request-error-reload" hidden>Seite neu laden</button>' in page


def test_in_english_the_texts_are_english(client):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = client.get(reverse("login")).content.decode()
    assert 'data-forbidden-text="The action was refused' in page
    assert 'data-offline-text="No connection to the server' in page
    assert 'data-too-large-text="The request is too large' in page
    assert 'data-too-many-text="Too many requests' in page
    assert 'data-unavailable-text="The service is temporarily unavailable' in page
    assert ">Reload page</button>" in page
