"""German words with two meanings get a context, so the English UI says the right one: "Abmelden" is logging out
of the portal in the navigation, but deregistering a KIM address on the KIM account pages."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.utils import translation

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("template", "english"),
    [
        ('{% translate "Abmelden" %}', "Log out"),
        ('{% translate "Abmelden" context "KIM-Adresse" %}', "Deregister"),
        ('{% translate "aktuell" context "Fassung" %}', "current"),
    ],
)
def test_homonyms_in_english(template, english):
    with translation.override("en"):
        assert Template("{% load i18n %}" + template).render(Context()) == english


def test_the_kim_pages_deregister_rather_than_log_out():
    from operations.models import PasswordChange

    with translation.override("en"):
        assert str(PasswordChange.State.APPLIED.label) == "applied"
    for name in ("operations/kim_account.html", "operations/kim_confirm.html"):
        from django.template.loader import get_template

        source = get_template(name).template.source
        assert '{% translate "Abmelden" %}' not in source and 'context "KIM-Adresse"' in source
