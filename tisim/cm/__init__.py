"""The simulated KIM Clientmodul: SMTP (send) and POP3 (receive) with KIM usernames and headers."""

from __future__ import annotations

from tisim.cm.server import CMSimulator
from tisim.cm.username import KimUsername, UsernameError, build_username, parse_username

__all__ = ["CMSimulator", "KimUsername", "UsernameError", "build_username", "parse_username"]
