"""The email policy one parse uses: ``policy.default`` whose header objects are built once per value.

``policy.default`` builds a new header object on every lookup (``part["content-type"]``,
``get_content_type()``, ``get_param()`` …), and both the stdlib's own parser and our walk look up
the same Content-Type several times per part: about half of a parse went into re-parsing headers
already parsed.  A header object is a pure, immutable function of its name and raw value, so the
cache changes no result.  It lives for one parse only: nothing is kept between messages, and a
hostile header is held no longer than the message that carries it.
"""

from __future__ import annotations

import email.policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage


class _OncePerValue(HeaderRegistry):
    def __init__(self) -> None:
        super().__init__()
        self._built: dict[tuple[str, str], BaseHeader] = {}
        self._classes: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        # The stdlib creates a new class per lookup; one per header name is the same class.
        cls = self._classes.get(name)
        if cls is None:
            cls = self._classes[name] = super().__getitem__(name)
        return cls

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name, value)
        header = self._built.get(key)
        if header is None:
            header = self._built[key] = super().__call__(name, value)
        return header


def parse_policy() -> email.policy.EmailPolicy[EmailMessage]:
    """A fresh ``policy.default`` for one message (its header cache dies with the message)."""
    return email.policy.default.clone(header_factory=_OncePerValue())
