"""Reasons of the signing app kept for later display (kimportal.texts): msgid and parameters, translated when shown.

A batch runs in a worker, in German; the physician reads its reasons later, in their language. A Konnektor code
the portal has its own text for is kept as that text's msgid; what the Konnektor said in its own words (or a
message another part of the portal wrote out already) is kept as it came, as a parameter or a sentence of its own.
"""

from __future__ import annotations

from django.utils import translation

from kimportal.texts import N_, Stored, StoredText, lazy_stored, render
from konnektor import error_text
from konnektor.errors import ERROR_TEXTS

__all__ = ["code_stored", "german", "konnektor_stored", "lazy_stored", "outside_stored"]

# A stored text is at most this long in a parameter taken from outside (the columns were 500 characters).
OUTSIDE_LIMIT = 500


def outside_stored(text: object) -> StoredText:
    """A sentence written out already (the Konnektor's message, another service's refusal): shown as it is."""
    return StoredText.of(str(text)[:OUTSIDE_LIMIT])


def konnektor_stored(code: int | None, text: str) -> StoredText:
    """A Konnektor fault: the portal's own text for its code, translated when shown, when that is what the fault
    says; else its text as it came (partly the Konnektor's own words)."""
    if text != error_text(code):
        return outside_stored(text)
    known = ERROR_TEXTS.get(code) if code is not None else None
    if known is not None:
        return lazy_stored(known)
    # The same msgids as konnektor.error_text's.
    if code is None:
        return N_("Konnektor nicht erreichbar.")
    return N_("Der Konnektor meldet den Fehler %(code)s.") % {"code": code}


def code_stored(code: int) -> StoredText:
    """The portal's text for a gematik code (konnektor.error_text), kept translatable where it has one."""
    return konnektor_stored(code, error_text(code))


def german(stored: Stored) -> str:
    """A stored text as a German sentence, whatever the request's language (the KIS API speaks German)."""
    with translation.override("de"):
        return render(stored)
