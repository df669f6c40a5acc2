"""Values the selectors attach to message rows for display; no tables.

They live beside the models because `Message` declares the attributes that hold them, and models
import nothing from the layers above.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Badge:
    """How a Dienstkennung is shown in lists (see mailbox.dienstkennung)."""

    label: str
    css_class: str
    title: str


@dataclass(frozen=True)
class PresentUser:
    """Someone who has a message open now (see mailbox.selectors.presence)."""

    user_id: int
    name: str
    writing: bool
