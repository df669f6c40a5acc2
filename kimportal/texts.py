"""Texts kept in the database for later display: the German msgid and its parameters, translated when shown.

A reason written at the moment something happens (a refusal, a held message) is read later by somebody else, in
their language. So the row keeps what gettext needs, not the translation: ``{"msgid": ..., "params": {...}}``, or a
list of such parts shown one after the other. Rows written before this kept the German sentence itself (a JSON
string); it is shown as it is. ``N_`` builds a text like ``_`` does (``N_("… %(reply)s") % {"reply": reply}``),
``stored`` is its JSON value, ``render`` turns a stored value into the active language's sentence.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext

log = logging.getLogger(__name__)

# What a stored text looks like in JSON: "" (none), a legacy sentence, a part, or a list of parts.
Stored = str | dict[str, Any] | list[Any]


class StoredText:
    """One translatable sentence (or several, ``join``) whose translation waits until it is shown."""

    __slots__ = ("parts",)

    def __init__(self, parts: list[Any]) -> None:
        # Each part a {"msgid", "params"} dict, or a sentence already written out (a legacy row's).
        self.parts = parts

    @classmethod
    def of(cls, stored: Stored) -> StoredText:
        """A value read from a field, to be carried on (e.g. into a report rendered later)."""
        if isinstance(stored, list):
            return cls(list(stored))
        return cls([stored] if stored else [])

    def __mod__(self, params: Mapping[str, Any]) -> StoredText:
        if len(self.parts) != 1 or not isinstance(self.parts[0], dict):
            raise TypeError("only a single sentence takes parameters")
        return StoredText([{"msgid": self.parts[0]["msgid"], "params": {k: _param(v) for k, v in params.items()}}])

    def __add__(self, other: StoredText) -> StoredText:
        return join(self, other)

    def __str__(self) -> str:
        return render(self.stored)

    def __bool__(self) -> bool:
        return bool(self.parts)

    def __repr__(self) -> str:
        return f"StoredText({self.parts!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredText) and self.parts == other.parts

    def __hash__(self) -> int:
        return hash(repr(self.parts))

    @property
    def stored(self) -> Stored:
        """The JSON value for a model field or an audit detail (language-neutral)."""
        if not self.parts:
            return ""
        return self.parts[0] if len(self.parts) == 1 else list(self.parts)


def N_(msgid: str) -> StoredText:
    """gettext's conventional name for "marked now, translated later"."""
    return StoredText([{"msgid": msgid, "params": {}}])


def lazy_stored(text: Promise) -> StoredText:
    """A gettext_lazy constant as a stored text: its German msgid, translated when shown."""
    with translation.override(None):
        # No language active: gettext gives the msgid itself, the German source.
        return N_(str(text))


def join(*texts: StoredText | None) -> StoredText:
    """Sentences shown one after the other, each translated on its own."""
    return StoredText([part for text in texts if text is not None for part in text.parts])


def _param(value: Any) -> Any:
    if isinstance(value, StoredText):
        return value.stored
    if value is None or isinstance(value, bool | int | float | str):
        return value
    # An exception, an SMTP reply object: its text, fixed now (it is no sentence of ours to translate).
    return str(value)


def render(value: Any) -> str:
    """The stored text in the active language; a legacy sentence (a plain string) as it was written."""
    if value is None or value == "":
        return ""
    if isinstance(value, StoredText):
        value = value.stored
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(text for text in (render(part) for part in value) if text)
    if isinstance(value, dict) and isinstance(value.get("msgid"), str):
        msgid = value["msgid"]
        params = value.get("params") or {}
        translated = gettext(msgid)
        if not params:
            return translated
        shown = {k: render(v) if isinstance(v, dict | list) else v for k, v in params.items()}
        for template in (translated, msgid):
            try:
                return template % shown
            except (KeyError, ValueError, TypeError):
                # A translation that no longer fits the parameters kept in the row: the next best is the German.
                log.warning("stored text %r does not fit its parameters %r", template, sorted(shown))
        return msgid
    return str(value)
