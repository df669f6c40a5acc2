"""Problem collection for the mail parser.

Every step of the parser reports what it had to work around as a German text for the UI; this
module keeps those texts ordered, de-duplicated and bounded, translates the stdlib's MIME defects,
and decides whether the message as a whole counts as malformed ("fehlerhaft").
"""

from __future__ import annotations

import email.errors
from collections.abc import Iterable

# German texts for the stdlib's MIME defects.  Every defect the parser reports is a
# structural problem, so all of them count as "matters" for is_malformed.
_DEFECT_TEXTS: dict[type[email.errors.MessageDefect], str] = {
    email.errors.NoBoundaryInMultipartDefect: "Mehrteilige Nachricht ohne Begrenzung (boundary)",
    email.errors.StartBoundaryNotFoundDefect: "Mehrteilige Nachricht ohne gültige Begrenzung (boundary): "
    "die angegebene Begrenzung kommt im Inhalt nicht vor",
    email.errors.CloseBoundaryNotFoundDefect: "Mehrteilige Nachricht ohne abschließende Begrenzung (boundary); "
    "die Nachricht ist möglicherweise abgeschnitten",
    email.errors.FirstHeaderLineIsContinuationDefect: "Die erste Kopfzeile ist eine Fortsetzungszeile",
    email.errors.MisplacedEnvelopeHeaderDefect: "Fehlplatzierte Umschlagzeile („From “) im Kopf",
    email.errors.MissingHeaderBodySeparatorDefect: "Keine gültige Trennung zwischen Kopfzeilen und Inhalt",
    email.errors.MultipartInvariantViolationDefect: "Als mehrteilig deklarierter Teil enthält keine Teile",
    email.errors.InvalidMultipartContentTransferEncodingDefect: "Ungültige Transferkodierung für einen "
    "mehrteiligen Teil",
    email.errors.UndecodableBytesDefect: "Nicht dekodierbare Bytes",
    email.errors.InvalidBase64PaddingDefect: "Base64-kodierter Inhalt mit fehlerhaftem Padding",
    email.errors.InvalidBase64CharactersDefect: "Base64-kodierter Inhalt mit ungültigen Zeichen",
    email.errors.InvalidBase64LengthDefect: "Base64-kodierter Inhalt mit ungültiger Länge",
}


class Problems:
    """Ordered, de-duplicated problem texts plus the "does it matter" flag."""

    # A message with thousands of broken parts must not produce thousands of lines.
    LIMIT = 50

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._seen: set[str] = set()
        self._dropped = 0
        self.severe = False

    def add(self, text: str, *, severe: bool = True) -> None:
        self.severe = self.severe or severe
        if text in self._seen:
            return
        self._seen.add(text)
        if len(self.texts) < self.LIMIT:
            self.texts.append(text)
        else:
            self._dropped += 1

    def result(self) -> list[str]:
        if self._dropped:
            return [*self.texts, f"… und {self._dropped} weitere Probleme"]
        return list(self.texts)

    def add_defects(self, defects: Iterable[email.errors.MessageDefect], where: str) -> None:
        for defect in defects:
            text = _DEFECT_TEXTS.get(type(defect))
            if text is None:
                # Unknown defect classes (future Python versions, header defects) still count.
                text = f"Formfehler ({type(defect).__name__})"
            self.add(f"{text} ({where})" if where else text)
