"""The idle logout and the end of the shift, enforced on the server for every request of a signed-in user."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, resolve_url
from django_htmx.http import HttpResponseClientRedirect

from mailbox.events import broadcast_session_ended
from mailbox.signin import (
    ACTIVE_AT,
    LOGOUT_REASON_ATTR,
    SIGNED_IN_AT,
    seconds_left,
    stamp_activity,
    stamp_interval_seconds,
)

# A request the page makes on its own (the session check, anything polling) carries this header and does not
# count as activity; portal.js adds it to every htmx request no user input triggered. Websocket frames (the
# read-lock heartbeat, live rows) never pass through here, so they never count either.
BACKGROUND_HEADER = "X-Portal-Background"


def login_url_after(reason: str) -> str:
    return f"{resolve_url(settings.LOGIN_URL)}?{urlencode({'abgemeldet': reason})}"


class IdleLogoutMiddleware:
    """Ends a session that has been idle for KIMPORTAL_IDLE_LOGOUT_MINUTES or is older than SESSION_COOKIE_AGE,
    the way logging out does (audited, the session's sockets closed), and stamps every request the user made."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.user.is_authenticated:
            return self.get_response(request)
        session = request.session
        now = time.time()
        if SIGNED_IN_AT not in session:
            # A session from before this check existed: its clocks start now.
            stamp_activity(session, now)
        if seconds_left(session, now) <= 0:
            shift_over = now - float(session[SIGNED_IN_AT]) >= settings.SESSION_COOKIE_AGE
            return self.end_session(request, "shift" if shift_over else "idle")
        background = bool(request.headers.get(BACKGROUND_HEADER))
        if not background and now - float(session.get(ACTIVE_AT, 0)) >= stamp_interval_seconds():
            stamp_activity(session, now)
        return self.get_response(request)

    @staticmethod
    def end_session(request: HttpRequest, reason: str) -> HttpResponse:
        user_id, session_key = request.user.pk, request.session.session_key
        setattr(request, LOGOUT_REASON_ATTR, reason)
        logout(request)
        if user_id and session_key:
            broadcast_session_ended(user_id=user_id, session_key=session_key)
        url = login_url_after(reason)
        if request.headers.get(BACKGROUND_HEADER):
            return JsonResponse({"remaining": 0, "login": url})
        if request.headers.get("HX-Request"):
            # htmx would swap a redirected login page into a fragment; the whole page goes instead.
            return HttpResponseClientRedirect(url)
        if request.method == "GET":
            return redirect(f"{url}&{urlencode({'next': request.get_full_path()})}")
        return redirect(url)
