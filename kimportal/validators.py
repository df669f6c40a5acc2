"""Checks of text that people type and others read: names shown in lists and written into mail headers."""

from __future__ import annotations

import re
import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

# A KIM address: a local part and a domain under kim.telematik (PU) or kim.telematik-test (RU/TU); the one rule for
# the directory (which of a published "mail" are recipients) and for compose (which typed addresses are). Case does not
# matter, as in a domain: "Praxis@Example.KIM.Telematik-Test" is the directory's "praxis@example.kim.telematik-test".
# Compose stores addresses lower-cased; the directory keeps them as published and compares them lower-cased.
KIM_ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.kim\.telematik(-test)?$", re.IGNORECASE
)

# Bidirectional overrides and isolates reorder what a reader sees (a note could show a different number than it
# holds); they count as control characters here, like C0/C1 (only tab and line breaks are text).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def control_characters(text: str) -> list[str]:
    """The control characters in the text, as U+XXXX (tab and line breaks are allowed)."""
    found = []
    for char in text:
        if char in "\t\n\r":
            continue
        if unicodedata.category(char) == "Cc" or char in _BIDI:
            found.append(f"U+{ord(char):04X}")
    return sorted(set(found))


def validate_display_name(value: str) -> None:
    """A name in every list and in the From of mail: one line, no control characters. A bidirectional override would
    show another name than it holds; a control character or a line break would land in a header."""
    if control_characters(value) or any(char in value for char in "\t\n\r"):
        raise ValidationError(_("Der Anzeigename darf keine Steuerzeichen enthalten."), code="control_characters")
