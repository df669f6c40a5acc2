"""RFC 4515 filter building where every value is escaped — the only way services build VZD filters.

Values pass through ldap3's ``escape_filter_chars`` (``\\``, ``*``, ``(``, ``)`` and NUL); attribute names are
code constants, never user input.
"""

from __future__ import annotations

import re

from ldap3.utils.conv import escape_filter_chars

_ATTR = re.compile(r"^[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)?$")


def _attr(name: str) -> str:
    if not _ATTR.fullmatch(name):
        raise ValueError(f"not an attribute name: {name!r}")
    return name


def eq(attr: str, value: str) -> str:
    return f"({_attr(attr)}={escape_filter_chars(value)})"


def prefix(attr: str, value: str) -> str:
    return f"({_attr(attr)}={escape_filter_chars(value)}*)"


def contains(attr: str, value: str) -> str:
    return f"({_attr(attr)}=*{escape_filter_chars(value)}*)"


def present(attr: str) -> str:
    return f"({_attr(attr)}=*)"


def or_(*parts: str) -> str:
    parts = tuple(dict.fromkeys(p for p in parts if p))
    if not parts:
        raise ValueError("empty OR")
    return parts[0] if len(parts) == 1 else f"(|{''.join(parts)})"


def and_(*parts: str) -> str:
    parts = tuple(dict.fromkeys(p for p in parts if p))
    if not parts:
        raise ValueError("empty AND")
    return parts[0] if len(parts) == 1 else f"(&{''.join(parts)})"
