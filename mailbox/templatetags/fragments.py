"""{% samefor "name" value … %}…{% endsamefor %}: a fragment rendered once per process for each combination of the
values given, the active language and time zone, and reused.

Every page renders the same navigation links, shortcut help and labels: some thirty translations and a dozen URL
reversals that cost 1 ms of CPU per page and never change while the process runs. Only what the fragment shows
may decide it: everything it reads from the context, apart from the language, must be among the values (a user's
flags, never the CSRF token or the nonce). Blocks cannot be inside (a child template would see its parent's).
"""

from __future__ import annotations

import threading
from typing import Any

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template.base import FilterExpression, Node, NodeList, Parser, Token
from django.template.loader_tags import BlockNode
from django.urls import get_script_prefix
from django.utils import timezone, translation
from django.utils.functional import LazyObject, empty
from django.utils.safestring import SafeString

register = template.Library()

MAX_FRAGMENTS = 512

_fragments: dict[tuple[Any, ...], SafeString] = {}
_lock = threading.Lock()


class SameForNode(Node):
    def __init__(self, nodelist: NodeList, name: str, values: list[FilterExpression]) -> None:
        self.nodelist = nodelist
        self.name = name
        self.values = values

    def render(self, context: template.Context) -> SafeString:
        key = (
            self.name,
            translation.get_language(),
            timezone.get_current_timezone_name(),
            get_script_prefix(),  # in every URL the fragment reverses
            *(_plain(value.resolve(context)) for value in self.values),
        )
        html = _fragments.get(key)
        if html is None:
            # The template escapes what it shows; its output is safe HTML.
            html = SafeString(self.nodelist.render(context))
            with _lock:
                if len(_fragments) >= MAX_FRAGMENTS:  # a bound, whatever the values are
                    _fragments.clear()
                _fragments[key] = html
        return html


def _plain(value: Any) -> Any:
    """The value itself, not a lazy wrapper around it (a key must not keep a request's objects alive)."""
    if isinstance(value, LazyObject):
        if value._wrapped is empty:
            value._setup()
        return value._wrapped
    if isinstance(value, list):
        return tuple(value)
    return value


@register.tag
def samefor(parser: Parser, token: Token) -> SameForNode:
    bits = token.split_contents()
    if len(bits) < 2 or bits[1][0] not in "\"'" or bits[1][-1] != bits[1][0]:
        raise template.TemplateSyntaxError("{% samefor %} takes a quoted name and then the values it depends on")
    nodelist = parser.parse(("endsamefor",))
    parser.delete_first_token()
    if nodelist.get_nodes_by_type(BlockNode):
        raise template.TemplateSyntaxError("{% samefor %} cannot contain a {% block %}")
    return SameForNode(nodelist, bits[1][1:-1], [parser.compile_filter(bit) for bit in bits[2:]])


def clear() -> None:
    with _lock:
        _fragments.clear()


@receiver(setting_changed)
def _setting_changed(**kwargs: Any) -> None:
    # A fragment may show a setting (the languages offered, the idle logout): tests change them.
    clear()
