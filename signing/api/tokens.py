"""API tokens: 256 random bits with a recognisable prefix, stored as their SHA-256 only.

A fast hash is enough for a random secret of this size (nothing to guess from a leaked hash) and keeps each API
call at one indexed lookup; the token itself is shown once, when it is issued. Every token expires: the manager
chooses its lifetime from LIFETIMES_DAYS when issuing it (KIMPORTAL_KIS_TOKEN_DAYS when not chosen)."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from django.conf import settings
from django.utils.translation import gettext_lazy as _

TOKEN_PREFIX = "kisv1_"  # noqa: S105  # a label that tells the token's kind, not a secret
# Characters of the token kept to tell tokens apart (the fixed prefix and 6 random characters: 36 bits, not a key).
SHOWN_CHARS = len(TOKEN_PREFIX) + 6
# The lifetimes a manager can choose, in days, with the words the forms show. Two years at most: a token's holder is
# a system whose configuration changes hands; a yearly renewal is the usual rhythm.
LIFETIMES_DAYS = {
    30: _("30 Tage"),
    90: _("90 Tage"),
    180: _("180 Tage"),
    365: _("1 Jahr"),
    730: _("2 Jahre"),
}


def lifetime_default() -> int:
    """The configured default lifetime, if it is one of the choices; else the longest choice below it."""
    wanted = int(getattr(settings, "KIMPORTAL_KIS_TOKEN_DAYS", 365))
    fitting = [days for days in LIFETIMES_DAYS if days <= wanted]
    return max(fitting) if fitting else min(LIFETIMES_DAYS)


def lifetime(days: int | None) -> dt.timedelta:
    chosen = lifetime_default() if days is None else days
    if chosen not in LIFETIMES_DAYS:
        raise ValueError(f"not a token lifetime: {chosen!r}")
    return dt.timedelta(days=chosen)


def days_left_if_soon(expires_at: dt.datetime, now: dt.datetime) -> int | None:
    """Whole days until a token (or a connection's last token) expires, when that falls within
    KIMPORTAL_KIS_TOKEN_WARN_DAYS (0: less than a day); None when it is valid beyond that. The connection's page and
    the operations page warn from the same moment."""
    left = expires_at - now
    if left > dt.timedelta(days=settings.KIMPORTAL_KIS_TOKEN_WARN_DAYS):
        return None
    return max(left.days, 0)


def token_new() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_shown(token: str) -> str:
    return token[:SHOWN_CHARS]


def secret_new() -> str:
    """A callback secret: the key of the HMAC the client checks each callback with."""
    return secrets.token_urlsafe(32)
