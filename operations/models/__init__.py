"""The operations app's models, one module per subject; import them from here."""

from __future__ import annotations

from operations.models.kimadmin import KimRegistration, PasswordChange

__all__ = ["KimRegistration", "PasswordChange"]
