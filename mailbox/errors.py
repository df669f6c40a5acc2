from __future__ import annotations


class PortalError(Exception):
    """A domain error whose message is shown to the user (German by default, via gettext)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
