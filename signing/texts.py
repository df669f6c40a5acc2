"""Reasons of the signing app kept for later display (kimportal.texts): msgid and parameters, translated when shown.

A batch runs in a worker, in German; the physician reads its reasons later, in their language. A Konnektor code
the portal has its own text for is kept as that text's msgid; what the Konnektor said in its own words (or a
message another part of the portal wrote out already) is kept as it came, as a parameter or a sentence of its own.
"""

from __future__ import annotations

from typing import Any

from django.utils import translation

from kimportal.texts import N_, Stored, StoredText, lazy_stored, render
from konnektor import error_text
from konnektor.errors import ERROR_TEXTS

__all__ = [
    "DOCUMENT_MISSING",
    "code_stored",
    "document_missing",
    "german",
    "konnektor_stored",
    "lazy_stored",
    "outside_stored",
    "scoped",
    "scoped_stored",
]

# A document gone from the store names its file: shown so only to who may see its draft now (scoped below).
DOCUMENT_MISSING = N_("Ein Dokument fehlt im Speicher oder ist beschädigt: %(name)s")
DOCUMENT_MISSING_UNNAMED = N_("Ein Dokument dieses Signaturvorgangs fehlt im Speicher oder ist beschädigt.")
_MISSING_MSGID = DOCUMENT_MISSING.parts[0]["msgid"]
_MISSING_LEGACY = _MISSING_MSGID.split("%", 1)[0]

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


def document_missing(draft_id: int, filename: str) -> StoredText:
    """The batch's reason when a document is gone from the store; the draft is kept so that the name is shown only
    to who may see that draft (scoped)."""
    return DOCUMENT_MISSING % {"name": filename, "draft": draft_id}


def scoped(stored: Stored, *, drafts: set[int], filenames: set[str]) -> str:
    """A stored batch or item reason as the user may read it now (scoped_stored), in the active language."""
    return render(scoped_stored(stored, drafts=drafts, filenames=filenames))


def scoped_stored(stored: Stored, *, drafts: set[int], filenames: set[str]) -> Stored:
    """A stored reason naming a missing document only when its draft is among ``drafts`` (visible to the reader);
    rows written before the draft was kept name the file only, kept when a visible draft of the batch
    (``filenames``) has that name. Else the same reason without the name."""
    parts = stored if isinstance(stored, list) else [stored]
    shown: list[Any] = []
    for part in parts:
        if isinstance(part, dict) and part.get("msgid") == _MISSING_MSGID:
            params = part.get("params") or {}
            if params.get("draft") is not None:
                allowed = params["draft"] in drafts
            else:
                allowed = params.get("name") in filenames
            if not allowed:
                part = DOCUMENT_MISSING_UNNAMED.stored
        elif isinstance(part, str) and part.startswith(_MISSING_LEGACY):
            # A row older still kept the German sentence itself.
            if part[len(_MISSING_LEGACY) :] not in filenames:
                part = DOCUMENT_MISSING_UNNAMED.stored
        shown.append(part)
    return shown if isinstance(stored, list) else shown[0]
