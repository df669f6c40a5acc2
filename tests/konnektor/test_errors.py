"""The German texts for the gematik codes and reading faults: the LAST trace carries the code."""

from __future__ import annotations

import re

import pytest
from lxml import etree

from konnektor import ERROR_TEXTS, KonnektorError, error_text
from konnektor.errors import error_from_fault
from tests.conftest import SHARED_DIR
from tests.konnektor.support import fault, trace


def codes_in_research_table() -> set[int]:
    """Every code named in the research digest's table §8.2 (the codes relevant to batch QES with the eHBA)."""
    text = (SHARED_DIR / "research" / "konnektor.md").read_text(encoding="utf-8")
    section = text.split("### 8.2", 1)[1].split("\n## ", 1)[0].split("\n---", 1)[0]
    codes: set[int] = set()
    for line in section.splitlines():
        if line.startswith("| 4"):
            codes.update(int(code) for code in re.findall(r"\b(4\d{3})\b", line))
    return codes


def test_every_code_of_the_research_table_has_its_own_german_text() -> None:
    codes = codes_in_research_table()
    assert {4000, 4043, 4049, 4063, 4065, 4252, 4283, 4018, 4101, 4276} <= codes  # the table was read
    missing = sorted(codes - set(ERROR_TEXTS))
    assert missing == []
    for code in codes:
        assert error_text(code) == ERROR_TEXTS[code]
        assert str(code) not in error_text(code)  # a real text, not the fallback naming the code


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (4043, "Zeitüberschreitung bei der PIN-Eingabe"),
        (4049, "Abbruch durch den Benutzer"),
        (4063, "gesperrt"),
        (4065, "transportgeschützt"),
        (4008, "nicht (mehr) gesteckt"),
        (4060, "belegt"),
        (4093, "exklusiv"),
        (4018, "anderen Nutzer"),
        (4252, "bereits verwendet"),
        (4283, "zu groß"),
        (4101, "Kartenhandle ungültig"),
    ],
)
def test_texts_say_what_happened(code: int, words: str) -> None:
    assert words in error_text(code)


def test_unknown_code_and_no_code() -> None:
    assert error_text(4999) == "Der Konnektor meldet den Fehler 4999."
    assert error_text(None).startswith("Konnektor nicht erreichbar")


def detail_of(envelope: bytes) -> etree._Element:
    root = etree.fromstring(envelope)
    return root.find(".//detail")


def test_fault_takes_the_last_trace() -> None:
    body = fault(
        "Timeout bei der PIN-Eingabe",
        trace(9001, severity="Error", text="vendor: sicct timeout", comp="KT"),
        trace(4043, severity="Warning", text="Timeout bei der PIN-Eingabe"),
    )
    error = error_from_fault("Timeout bei der PIN-Eingabe", detail_of(body))
    assert isinstance(error, KonnektorError)
    assert error.code == 4043
    assert error.text == "Zeitüberschreitung bei der PIN-Eingabe."
    assert error.fault == "Timeout bei der PIN-Eingabe"
    assert error.severity == "Warning"
    assert error.is_warning
    assert error.error_type == "Technical"
    assert error.kind == "fault"


def test_fault_with_an_unknown_code_keeps_the_konnektors_words() -> None:
    error = error_from_fault("kaputt", detail_of(fault("kaputt", trace(4711, text="Etwas Seltsames"))))
    assert error.code == 4711
    assert error.text == "Der Konnektor meldet den Fehler 4711. (Etwas Seltsames)"


def test_fault_without_gerror_detail() -> None:
    error = error_from_fault("Internal Error", None)
    assert error.code is None
    assert "Internal Error" in error.text
    assert error.kind == "fault"


def test_konnektor_error_survives_pickling() -> None:
    import pickle

    error = KonnektorError(4043, error_text(4043), "Timeout", "Warning", kind="fault", error_type="Technical")
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert (copy.code, copy.text, copy.fault, copy.severity, copy.kind, copy.error_type) == (
        4043,
        "Zeitüberschreitung bei der PIN-Eingabe.",
        "Timeout",
        "Warning",
        "fault",
        "Technical",
    )


def test_every_code_the_simulator_can_send_has_its_own_german_text() -> None:
    from tisim.konnektor.soap import ERRORS, VENDOR_TRACE_CODE

    gematik_codes = set(ERRORS) - {VENDOR_TRACE_CODE}
    assert len(gematik_codes) > 20
    assert sorted(gematik_codes - set(ERROR_TEXTS)) == []


def test_the_texts_are_translated_where_the_portal_speaks_english() -> None:
    from django.utils import translation

    with translation.override("en"):
        assert error_text(4008) == "The card is not (or no longer) inserted."
        assert error_text(None) == "Konnektor not reachable."
        assert error_text(4999) == "The Konnektor reports error 4999."
        unknown = error_from_fault("Kaputt", detail_of(fault("Kaputt", trace(4999, text="Herstellerfehler"))))
        assert unknown.text == "The Konnektor reports error 4999. (Herstellerfehler)"
        assert error_from_fault("", None).text == "The Konnektor refused the request: no reason given."
        english = {code: str(text) for code, text in ERROR_TEXTS.items()}
    with translation.override("de"):
        assert error_text(4008) == "Die Karte ist nicht (mehr) gesteckt."
        untranslated = [code for code, text in ERROR_TEXTS.items() if str(text) == english[code]]
    assert untranslated == []
