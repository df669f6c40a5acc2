"""Domain errors shared by every app: services raise them, views turn them into messages.

Each message is shown to the user (German by default, through gettext), so it is written for a
person, not a log. Apps subclass these for their own cases (`directory.services.DirectoryUnavailable`).
"""

from __future__ import annotations

from typing import Any


class PortalError(Exception):
    """A domain error whose message is shown to the user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAllowed(PortalError):
    """The user's role does not allow the action (views answer 403 or show the text)."""


class Conflict(PortalError):
    """The object changed since the user loaded it (the 'Traffic Cop'); `fresh` is the current state."""

    def __init__(self, message: str, *, fresh: Any = None) -> None:
        super().__init__(message)
        self.fresh = fresh


class ClaimHeld(PortalError):
    """Someone else holds the read-lock; `holder` is that user, `fresh` the current state."""

    def __init__(self, message: str, *, holder: Any = None, fresh: Any = None) -> None:
        super().__init__(message)
        self.holder = holder
        self.fresh = fresh


class Unavailable(PortalError):
    """An outside system (Clientmodul, directory, Konnektor) cannot be reached now; worth retrying."""
