"""Problem collection for the mail parser.

Every step of the parser reports what it had to work around as a text for the UI, kept untranslated
(kimportal.texts: the German msgid and its parameters; the message is read later, in the reader's
language); this module keeps those texts ordered, de-duplicated and bounded, names the stdlib's MIME
defects, and decides whether the message as a whole counts as malformed ("fehlerhaft").
"""

from __future__ import annotations

import email.errors
from collections.abc import Iterable

from kimportal.texts import N_, StoredText

# Texts for the stdlib's MIME defects.  Every defect the parser reports is a
# structural problem, so all of them count as "matters" for is_malformed.
_DEFECT_TEXTS: dict[type[email.errors.MessageDefect], StoredText] = {
    email.errors.NoBoundaryInMultipartDefect: N_("Mehrteilige Nachricht ohne Begrenzung (boundary)"),
    email.errors.StartBoundaryNotFoundDefect: N_(
        "Mehrteilige Nachricht ohne gültige Begrenzung (boundary): die angegebene Begrenzung kommt im Inhalt nicht vor"
    ),
    email.errors.CloseBoundaryNotFoundDefect: N_(
        "Mehrteilige Nachricht ohne abschließende Begrenzung (boundary); die Nachricht ist möglicherweise abgeschnitten"
    ),
    email.errors.FirstHeaderLineIsContinuationDefect: N_("Die erste Kopfzeile ist eine Fortsetzungszeile"),
    email.errors.MisplacedEnvelopeHeaderDefect: N_("Fehlplatzierte Umschlagzeile („From “) im Kopf"),
    email.errors.MissingHeaderBodySeparatorDefect: N_("Keine gültige Trennung zwischen Kopfzeilen und Inhalt"),
    email.errors.MultipartInvariantViolationDefect: N_("Als mehrteilig deklarierter Teil enthält keine Teile"),
    email.errors.InvalidMultipartContentTransferEncodingDefect: N_(
        "Ungültige Transferkodierung für einen mehrteiligen Teil"
    ),
    email.errors.UndecodableBytesDefect: N_("Nicht dekodierbare Bytes"),
    email.errors.InvalidBase64PaddingDefect: N_("Base64-kodierter Inhalt mit fehlerhaftem Padding"),
    email.errors.InvalidBase64CharactersDefect: N_("Base64-kodierter Inhalt mit ungültigen Zeichen"),
    email.errors.InvalidBase64LengthDefect: N_("Base64-kodierter Inhalt mit ungültiger Länge"),
}


class Problems:
    """Ordered, de-duplicated problem texts plus the "does it matter" flag."""

    # A message with thousands of broken parts must not produce thousands of lines.
    LIMIT = 50

    def __init__(self) -> None:
        self.texts: list[StoredText] = []
        self._seen: set[StoredText] = set()
        self._dropped = 0
        self.severe = False

    def add(self, text: StoredText, *, severe: bool = True) -> None:
        self.severe = self.severe or severe
        if text in self._seen:
            return
        self._seen.add(text)
        if len(self.texts) < self.LIMIT:
            self.texts.append(text)
        else:
            self._dropped += 1

    def result(self) -> list[StoredText]:
        if self._dropped:
            return [*self.texts, N_("… und %(count)s weitere Probleme") % {"count": self._dropped}]
        return list(self.texts)

    def add_defects(self, defects: Iterable[email.errors.MessageDefect], where: StoredText | None) -> None:
        for defect in defects:
            text = _DEFECT_TEXTS.get(type(defect))
            if text is None:
                # Unknown defect classes (future Python versions, header defects) still count.
                text = N_("Formfehler (%(defect)s)") % {"defect": type(defect).__name__}
            self.add(at(text, where) if where else text)


def at(problem: StoredText, where: StoredText) -> StoredText:
    """A problem and the part it was found in: "… (Teil 3)"."""
    return N_("%(problem)s (%(where)s)") % {"problem": problem, "where": where}
