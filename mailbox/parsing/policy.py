"""The email policy one parse uses: ``policy.default`` whose header objects are built once per value.

``policy.default`` builds a new header object on every lookup (``part["content-type"]``,
``get_content_type()``, ``get_param()`` …), and both the stdlib's own parser and our walk look up
the same Content-Type several times per part: about half of a parse went into re-parsing headers
already parsed.  A header object is a pure, immutable function of its name and raw value, so the
cache changes no result.  It lives for one parse only: nothing is kept between messages, and a
hostile header is held no longer than the message that carries it (only the header classes, one per
header name and free of message data, are shared by all parses).

Content-Type, Content-Disposition and Content-Transfer-Encoding of a plain shape (RFC 2045 tokens,
``attribute=token`` or ``attribute="printable ASCII without \\ and \"``" parameters, blanks, nothing
else: no comments, no encoded words, no RFC 2231, no repeated parameter) are read by a regular
expression instead of the stdlib's header parser, which cost a seventh of a parse.  The result is
an instance of the very class the registry would build, with the same string value, parameters,
types and (no) defects; only its parse tree, which folding needs, is built when first asked for.
Every other value goes to the stdlib's parser unchanged.
"""

from __future__ import annotations

import email.policy
import re
from email import _header_value_parser as _header_parser
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from typing import Any

# RFC 2045 token characters, without the RFC 2231 marks (* ' %) that the stdlib reads specially.
_TOKEN = r"[!#$&+\-.^_`{|}~0-9A-Za-z]+"  # noqa: S105 - a pattern, no secret
_QUOTED = r'"[ !#-\[\]-~]*"'  # printable ASCII and space, without " and \
_PARAM_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*=[ \t]*({_TOKEN}|{_QUOTED})[ \t]*(?:;|\Z)")
_TYPE_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*/[ \t]*({_TOKEN})[ \t]*(;|\Z)")
_DISPOSITION_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*(;|\Z)")
_CTE_RE = re.compile(rf"[ \t]*({_TOKEN})[ \t]*")


def _plain_params(text: str) -> list[tuple[str, str]] | None:
    """(name as written, value) of parameters of a plain shape; None for anything else."""
    params: list[tuple[str, str]] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        match = _PARAM_RE.match(text, pos)
        if match is None:
            return None
        name, value = match.group(1, 2)
        if name.lower() in seen:  # repeated: the stdlib reports a defect
            return None
        seen.add(name.lower())
        params.append((name, value[1:-1] if value.startswith('"') else value))
        pos = match.end()
    return params


def _rendered(head: str, params: list[tuple[str, str]]) -> str:
    """The stdlib's string value: the type as written, then the parameters in canonical form."""
    if not params:
        return head
    return head + " " + "; ".join(f'{name}="{value}"' if value else name for name, value in params)


class _Deferred:
    """Mixin for a header read by the shortcut: the parse tree is built only when folding asks for it."""

    _source: str

    @property
    def _parse_tree(self) -> Any:
        tree = self.__dict__.get("_tree")
        if tree is None:
            tree = self.__dict__["_tree"] = self.value_parser(self._source)  # type: ignore[attr-defined]
        return tree


def _plain_header(cls: type[BaseHeader], name: str, value: str) -> BaseHeader | None:
    kind = getattr(cls, "value_parser", None)
    attributes: dict[str, Any]
    if "=?" in value:
        return None
    if kind is _CONTENT_TYPE or kind is _CONTENT_DISPOSITION:
        match = (_TYPE_RE if kind is _CONTENT_TYPE else _DISPOSITION_RE).match(value)
        params = _plain_params(value[match.end() :]) if match is not None else None
        if match is None or params is None:
            return None
        decoded = _rendered(value[: match.end()], params)
        attributes = {"_params": {n.lower(): v for n, v in params}}
        if kind is _CONTENT_TYPE:
            attributes.update(_maintype=match.group(1).lower(), _subtype=match.group(2).lower())
        else:
            attributes["_content_disposition"] = match.group(1).lower()
    elif kind is _CONTENT_TRANSFER_ENCODING:
        match = _CTE_RE.fullmatch(value)
        if match is None:
            return None
        decoded = value
        attributes = {"_cte": match.group(1).lower()}
    else:
        return None
    header = str.__new__(cls, decoded)
    header.__dict__.update(attributes, _name=name, _defects=[], _source=value)
    return header


_CONTENT_TYPE = _header_parser.parse_content_type_header
_CONTENT_DISPOSITION = _header_parser.parse_content_disposition_header
_CONTENT_TRANSFER_ENCODING = _header_parser.parse_content_transfer_encoding_header


# The header classes, one per header name: the stdlib creates a new class on every lookup, which cost
# more than the shortcut's parse.  They hold no message data, so all parses share them.
_CLASSES: dict[str, type[BaseHeader]] = {}
_DEFERRED_CLASSES: dict[str, type[BaseHeader]] = {}


class _OncePerValue(HeaderRegistry):
    def __init__(self) -> None:
        super().__init__()
        self._built: dict[tuple[str, str], BaseHeader] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        # One class per header name is the same class as the stdlib's new one per lookup.
        key = name.lower()
        cls = _CLASSES.get(key)
        if cls is None:
            cls = _CLASSES[key] = super().__getitem__(key)
        return cls

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name, value)
        header = self._built.get(key)
        if header is None:
            header = self._built[key] = self._build(name, value)
        return header

    def _build(self, name: str, value: str) -> BaseHeader:
        plain = self._plain(name, value)
        if plain is not None:
            return plain
        # The stdlib's header parser is quadratic in a value's length: a Content-Type of 32 KB of "(a)"
        # took nine seconds, per part. Only the start of a longer value is read (walk notes it).
        return super().__call__(name, value[:VALUE_LIMIT])

    def _plain(self, name: str, value: str) -> BaseHeader | None:
        key = name.lower()
        if key not in _SHORTCUT_NAMES:
            return None
        deferred = _DEFERRED_CLASSES.get(key)
        if deferred is None:
            cls = self[key]
            deferred = _DEFERRED_CLASSES[key] = type(cls.__name__, (_Deferred, cls), {})
        return _plain_header(deferred, name, value)


# Characters of a header value the stdlib's parser is given; a long RFC 2231 file name has about 1,500.
VALUE_LIMIT = 2048
_SHORTCUT_NAMES = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})


def parse_policy() -> email.policy.EmailPolicy[EmailMessage]:
    """A fresh ``policy.default`` for one message (its header cache dies with the message)."""
    return email.policy.default.clone(header_factory=_OncePerValue())
