"""The simulated Clientmodul and a portal account at it, as the mailbox tests have them."""

from __future__ import annotations

from tests.mailbox.conftest import account, cm

__all__ = ["account", "cm"]
