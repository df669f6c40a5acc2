"""Pure parser for KIM mail received from the Clientmodul over POP3 (see ``headers`` for now).

The parser moved here from ``mailbox/services/parsing.py``; the next commit splits it into
one module per step.  Importers use this package, never the modules inside it.
"""

from __future__ import annotations

from mailbox.parsing.headers import ParsedAttachment, ParsedMessage, parse_message, sanitize_html

__all__ = ["ParsedAttachment", "ParsedMessage", "parse_message", "sanitize_html"]
