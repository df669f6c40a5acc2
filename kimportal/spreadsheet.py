"""CSV for spreadsheet programs: streamed line by line, and no cell a spreadsheet would run as a formula."""

from __future__ import annotations

from typing import Any

# A spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK(…) sends data out of the house);
# names, subjects and group names come from outside the portal (the directory, senders, LDAP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """The value as text; one that would start a formula gets a leading apostrophe, so it stays text."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class Echo:
    """csv.writer writes into this and gets the line back, so each row is streamed as it is formatted."""

    def write(self, value: str) -> str:
        return value
