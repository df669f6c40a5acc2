"""SignDocument's ShortText: the document's name as the Konnektor embeds it in the signature."""

from __future__ import annotations

import re

# SIG:ShortText of the 7.5 schema: at most 30 of these characters (Konnektors strip the rest).
SHORT_TEXT_MAX = 30
_FORBIDDEN = re.compile(r"[^a-zA-Z 0-9_.\-äöüÄÖÜß]+")


def short_text(text: str) -> str:
    """≤ 30 characters of ``[a-zA-Z 0-9_.-äöüÄÖÜß]``; anything else becomes a space, spaces collapse."""
    cleaned = " ".join(_FORBIDDEN.sub(" ", text).split())
    return cleaned[:SHORT_TEXT_MAX].rstrip(" -.") or "Dokument"
