"""API tokens: 256 random bits with a recognisable prefix, stored as their SHA-256 only.

A fast hash is enough for a random secret of this size (nothing to guess from a leaked hash) and keeps each API
call at one indexed lookup; the token itself is shown once, when it is issued."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_PREFIX = "kisv1_"  # noqa: S105  # a label that tells the token's kind, not a secret
# Characters of the token kept to tell tokens apart (the fixed prefix and 6 random characters: 36 bits, not a key).
SHOWN_CHARS = len(TOKEN_PREFIX) + 6


def token_new() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_shown(token: str) -> str:
    return token[:SHOWN_CHARS]


def secret_new() -> str:
    """A callback secret: the key of the HMAC the client checks each callback with."""
    return secrets.token_urlsafe(32)
