"""Signing in and out on shared ward PCs: who is asking (address, account name as the lockout counts it), the
session's shift and idle clocks, and the audit of sign-ins, failures, lockouts and logouts.

The receivers are connected by MailboxConfig.ready() through connect(). The idle logout itself is enforced by
mailbox.middleware.IdleLogoutMiddleware; django-axes counts failures and refuses locked accounts and addresses.
"""

from __future__ import annotations

import math
import time
from typing import Any

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.http import HttpRequest

from mailbox.selectors.signin import has_local_password
from mailbox.services.audit import audit_record

# Session keys: when the user signed in and when they last did something (seconds since the epoch).
SIGNED_IN_AT = "kimportal.signed_in_at"
ACTIVE_AT = "kimportal.active_at"
# The session row outlives the idle limit by this much: the server itself ends an idle session at the limit (and
# audits it) when the page asks at its deadline; the row's expiry is the backstop for a page that no longer runs
# (sockets stop sending patient data once it has passed, mailbox.liveaccess).
EXPIRY_GRACE_SECONDS = 120
# Set on the request by whoever ends a session for a reason other than the user's click (read by the audit).
LOGOUT_REASON_ATTR = "kimportal_logout_reason"
# Set on the request by the directory sign-in when the directory could not be reached (read by the login page).
DIRECTORY_UNREACHABLE_ATTR = "kimportal_directory_unreachable"


def client_address(request: HttpRequest | None) -> str | None:
    """The browser's address as the ASGI server reports it (AXES_CLIENT_IP_CALLABLE).

    X-Forwarded-For is not read here: behind nginx, uvicorn has already replaced REMOTE_ADDR with the forwarded
    address, and only for connections from KIMPORTAL_FORWARDED_ALLOW_IPS; reading the header again would let a
    browser that reaches the server directly name any address it likes and lock out a colleague's PC.
    """
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def username_for_lockout(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """The account name a failure counts against (AXES_USERNAME_CALLABLE): trimmed and lower case, since the
    directory finds `Station` and ` station` alike; otherwise each spelling would be a fresh set of tries."""
    name = (credentials or {}).get("username")
    if name is None and request is not None:
        name = request.POST.get("username")
    if not name:
        return None
    return str(name).strip().lower()[:150]


def directory_could_not_check(request: HttpRequest | None, credentials: dict[str, Any] | None) -> bool:
    """Whether a failed sign-in failed only because the directory could not be asked (AXES_WHITELIST_CALLABLE:
    axes does not count such a failure, against the name or the address). An outage must not lock out the people
    who keep trying, nor the ward PC they share, for a password nobody checked. A local account's password was
    checked, directory or not: its failures count. axes also asks before the backends run, when nothing has
    failed yet: a lock already there still refuses during an outage."""
    if request is None or not getattr(request, DIRECTORY_UNREACHABLE_ATTR, False):
        return False
    name = (credentials or {}).get("username")
    if not name:
        return True
    # Asked twice per failed try (axes' handler, then the audit in _login_failed): the answer is kept per name.
    known: dict[str, bool] = request.__dict__.setdefault("_kimportal_local_password", {})
    if str(name) not in known:
        known[str(name)] = has_local_password(str(name))
    return not known[str(name)]


def idle_limit_seconds() -> float:
    return float(settings.KIMPORTAL_IDLE_LOGOUT_MINUTES) * 60


def stamp_interval_seconds() -> float:
    """How stale the activity stamp may get before a request writes a new one: a session write on every request
    would cost an UPDATE per page and per htmx swap, and half a minute does not matter to a 30-minute limit."""
    limit = idle_limit_seconds()
    return min(30.0, limit / 10) if limit > 0 else 30.0


def seconds_left(session: Any, now: float) -> float:
    """Seconds until the session ends: at the idle limit or at the end of the shift, whichever comes first."""
    signed_in = float(session.get(SIGNED_IN_AT, now))
    left = signed_in + settings.SESSION_COOKIE_AGE - now
    limit = idle_limit_seconds()
    if limit > 0:
        left = min(left, float(session.get(ACTIVE_AT, now)) + limit - now)
    return left


def stamp_activity(session: Any, now: float) -> None:
    """Record activity and let the session row expire on its own when none follows (see EXPIRY_GRACE_SECONDS)."""
    session[ACTIVE_AT] = now
    signed_in = float(session.setdefault(SIGNED_IN_AT, now))
    expiry = signed_in + settings.SESSION_COOKIE_AGE - now
    limit = idle_limit_seconds()
    if limit > 0:
        expiry = min(expiry, limit + EXPIRY_GRACE_SECONDS)
    session.set_expiry(max(1, math.ceil(expiry)))


# --- receivers ---------------------------------------------------------------------------------------------------


def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is None:
        return
    if hasattr(request, "session"):
        now = time.time()
        request.session[SIGNED_IN_AT] = now
        stamp_activity(request.session, now)
    address = client_address(request)
    name = user.get_username().strip().lower()
    if address:
        # The user's own typos from this PC are forgiven; other accounts' failures from here and failures
        # against this account from elsewhere still count (a colleague signing in must not reset a guesser).
        from axes.utils import reset

        reset(ip=address, username=name)
    audit_record(actor=user, action="signin.succeeded", address=address)


def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Django has already replaced the password in `credentials`; only the name that was tried is kept.
    username = str(credentials.get("username", ""))[:150]
    address = client_address(request)
    if directory_could_not_check(request, credentials):
        # Not a wrong password (and not counted towards a lock): the trail says so.
        audit_record(actor=None, action="signin.directory_unreachable", username=username, address=address)
        return
    audit_record(
        actor=None,
        action="signin.failed",
        username=username,
        address=address,
        refused_while_locked=bool(getattr(request, "axes_locked_out", False)),
    )


def _locked_out(
    sender: Any, request: HttpRequest | None, username: str | None, ip_address: str | None, **kw: Any
) -> None:
    # axes says so on every failure past the limit, and on every try it refuses during the lock (not counted, so no
    # failure count: AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT); the trail records the moment the lock begins.
    failures = getattr(request, "axes_failures_since_start", None)
    if failures != settings.AXES_FAILURE_LIMIT:
        return
    audit_record(actor=None, action="signin.locked", username=username or "", address=ip_address)


def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is None:
        return
    reason = getattr(request, LOGOUT_REASON_ATTR, "user")
    audit_record(actor=user, action="signin.logout", reason=reason, address=client_address(request))


def connect() -> None:
    user_logged_in.connect(_logged_in, dispatch_uid="kimportal-signin-logged-in")
    user_login_failed.connect(_login_failed, dispatch_uid="kimportal-signin-failed")
    user_logged_out.connect(_logged_out, dispatch_uid="kimportal-signin-logged-out")
    user_locked_out.connect(_locked_out, dispatch_uid="kimportal-signin-locked")
