"""signing.texts: the Konnektor's faults and the app's constants as stored texts (kimportal.texts)."""

from __future__ import annotations

from django.utils import translation

from kimportal.texts import render
from konnektor import error_text
from signing.permissions import SIGNER_REFUSED_IN_BATCH
from signing.texts import code_stored, german, konnektor_stored, lazy_stored, outside_stored


def test_a_known_code_is_kept_as_its_msgid_whatever_the_workers_language():
    for language in ("de", "en"):
        with translation.override(language):
            stored = konnektor_stored(4123, error_text(4123)).stored
        assert stored == {"msgid": "Fehler bei der Signaturerstellung.", "params": {}}
    with translation.override("en"):
        assert render(code_stored(4123).stored) == "Error creating the signature."


def test_an_unknown_code_keeps_its_number_and_the_konnektors_own_words_stay_as_they_came():
    with translation.override("de"):
        unknown = konnektor_stored(4999, error_text(4999)).stored
        own = konnektor_stored(4999, "Der Konnektor meldet den Fehler 4999. (Karte klemmt)").stored
        unreachable = konnektor_stored(None, error_text(None)).stored
    assert unknown == {"msgid": "Der Konnektor meldet den Fehler %(code)s.", "params": {"code": 4999}}
    assert own == "Der Konnektor meldet den Fehler 4999. (Karte klemmt)"  # shown as it is, in any language
    assert unreachable == {"msgid": "Konnektor nicht erreichbar.", "params": {}}
    with translation.override("en"):
        assert render(unknown) == "The Konnektor reports error 4999."
    assert outside_stored("x" * 600).stored == "x" * 500


def test_a_lazy_constant_is_kept_as_its_german_msgid_and_german_gives_german_in_any_request():
    with translation.override("en"):
        stored = lazy_stored(SIGNER_REFUSED_IN_BATCH).stored
        assert isinstance(stored, dict) and stored["msgid"].startswith("Nicht signiert: Die Unterzeichnerin")
        assert render(stored).startswith("Not signed:")
        assert german(stored).startswith("Nicht signiert: Die Unterzeichnerin")
        assert german("Alter Satz.") == "Alter Satz."
