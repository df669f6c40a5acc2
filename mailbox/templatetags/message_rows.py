"""{% message_row message %} and {% message_rows messages %}: inbox rows through the per-process row cache
(mailbox.rowcache)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.utils.safestring import SafeString

from mailbox.rowcache import message_row_html, message_rows_html

register = template.Library()


@register.simple_tag
def message_row(message: Any, oob: bool = False) -> SafeString:
    return message_row_html(message, oob=oob)


@register.simple_tag
def message_rows(messages: Iterable[Any]) -> SafeString:
    return message_rows_html(messages)
