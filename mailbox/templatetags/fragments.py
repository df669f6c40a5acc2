"""{% samefor "name" value … %}…{% endsamefor %}: a fragment rendered once per process for each combination of the
values given, the active language and time zone, and reused.

Every page renders the same navigation links, shortcut help and labels: some thirty translations and a dozen URL
reversals that cost 1 ms of CPU per page and never change while the process runs. Only what the fragment shows
may decide it: everything it reads from the context, apart from the language, must be among the values (a user's
flags, never the CSRF token or the nonce).

What does change per request goes in {% varies %}…{% endvaries %} within the fragment: kept as a hole and
rendered every time, with the request's context (the CSRF token, the nonce, the user's name, a block). A whole
page frame is then one fragment instead of twenty small ones and the nodes between them (base.html alone: 0.50 ms
-> 0.30 ms a page). A hole sees the context outside the fragment, not variables the fragment sets (loop variables,
with, as): it is rendered where the fragment is used, once per place it had in the first rendering. Blocks may be
in a hole only (anywhere else a child template would see its parent's). A value that can change while the page
renders (claim_active() reads the clock) is read once into a variable before the fragment, which is keyed by it
and tests it: asked twice, one answer's text could be kept under the other's key.
"""

from __future__ import annotations

import re
import secrets
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

# Kept fragments per process, a few kB each: a house's mailboxes × count states × languages for the navigation,
# up to several hundred keys of a message page's work section. When full, the oldest go first.
MAX_FRAGMENTS = 4096

# A kept fragment: its text, or its text's pieces with the holes between them (str, VariesNode, str, …, str).
Kept = SafeString | tuple[Any, ...]

_fragments: dict[tuple[Any, ...], Kept] = {}
_lock = threading.Lock()

# Where a hole was during the first rendering; random per process, so no text the fragment shows can look like it.
_HOLES = "samefor_holes"
_MARK = f"\x00{secrets.token_hex(8)}:"
_MARKS = re.compile(re.escape(_MARK) + r"(\d+)\x00")


class VariesNode(Node):
    """A hole in a {% samefor %} fragment: rendered anew every time."""

    def __init__(self, nodelist: NodeList) -> None:
        self.nodelist = nodelist

    def render(self, context: template.Context) -> SafeString:
        holes = context.get(_HOLES)
        if holes is None:  # the fragment is being used (or there is none): the content itself
            return self.nodelist.render(context)
        holes.append(self)
        return SafeString(f"{_MARK}{len(holes) - 1}\x00")


class SameForNode(Node):
    # Walks over the template (an {% extends %} looks for its parent's blocks on every rendering) go into the
    # holes only: the rest is text once kept, and base.html is one fragment with about a hundred nodes in it.
    child_nodelists = ("holes",)

    def __init__(self, nodelist: NodeList, name: str, values: list[FilterExpression]) -> None:
        self.nodelist = nodelist
        self.name = name
        self.values = values
        self.holes = NodeList(_holes_in(nodelist))

    def render(self, context: template.Context) -> SafeString:
        key = (
            self.name,
            translation.get_language(),
            timezone.get_current_timezone_name(),
            get_script_prefix(),  # in every URL the fragment reverses
            *(_plain(value.resolve(context)) for value in self.values),
        )
        kept = _fragments.get(key)
        if kept is None:
            holes: list[VariesNode] = []
            with context.push({_HOLES: holes}):
                html = self.nodelist.render(context)
            if holes:
                pieces = _MARKS.split(html)  # text, hole index, text, …, text
                kept = tuple(holes[int(piece)] if i % 2 else piece for i, piece in enumerate(pieces))
            else:
                kept = SafeString(html)  # The template escapes what it shows; its output is safe HTML.
            with _lock:
                while len(_fragments) >= MAX_FRAGMENTS:  # a bound, whatever the values are
                    del _fragments[next(iter(_fragments))]
                _fragments[key] = kept
        if type(kept) is tuple:
            if context.get(_HOLES) is not None:
                # Within a fragment that is being rendered the first time: the holes stay holes of that one.
                return SafeString("".join([piece.render(context) if i % 2 else piece for i, piece in enumerate(kept)]))
            return SafeString(
                "".join([piece.nodelist.render(context) if i % 2 else piece for i, piece in enumerate(kept)])
            )
        return kept  # type: ignore[return-value]


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
    if _block_outside_holes(nodelist):
        raise template.TemplateSyntaxError("{% samefor %} can contain a {% block %} only within {% varies %}")
    return SameForNode(nodelist, bits[1][1:-1], [parser.compile_filter(bit) for bit in bits[2:]])


@register.tag
def varies(parser: Parser, token: Token) -> VariesNode:
    if len(token.split_contents()) != 1:
        raise template.TemplateSyntaxError("{% varies %} takes no arguments")
    nodelist = parser.parse(("endvaries",))
    parser.delete_first_token()
    return VariesNode(nodelist)


def _holes_in(nodelist: NodeList) -> list[VariesNode]:
    found: list[VariesNode] = []
    for node in nodelist:
        if isinstance(node, VariesNode):
            found.append(node)
            continue
        for name in node.child_nodelists:
            child = getattr(node, name, None)
            if child is not None:
                found.extend(_holes_in(child))
    return found


def _block_outside_holes(nodelist: NodeList) -> bool:
    for node in nodelist:
        if isinstance(node, VariesNode):
            continue
        if isinstance(node, BlockNode):
            return True
        for name in node.child_nodelists:
            child = getattr(node, name, None)
            if child is not None and _block_outside_holes(child):
                return True
    return False


def clear() -> None:
    with _lock:
        _fragments.clear()


@receiver(setting_changed)
def _setting_changed(**kwargs: Any) -> None:
    # A fragment may show a setting (the languages offered, the idle logout): tests change them.
    clear()
