"""{% choice_options choices selected %}: <option> elements for long select lists, built in Python.

A template loop costs about 40 µs per option; the assign form of a ward's mailbox lists hundreds of people.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def choice_options(choices: Iterable[tuple[Any, str]], selected: Any = None) -> SafeString:
    """One escaped <option> per (value, label); the one whose value equals `selected` is selected."""
    # " selected" has nothing to escape; format_html_join escapes the values and labels.
    return format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((value, " selected" if value == selected else "", label) for value, label in choices),
    )
