"""Checks of text that people type and others read: names shown in lists and written into mail headers."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

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
