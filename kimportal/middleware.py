from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware, LoginRequiredMiddleware
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.middleware.locale import LocaleMiddleware
from django.shortcuts import resolve_url
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.functional import SimpleLazyObject
from django_htmx.http import HttpResponseClientRedirect

from kimportal.sessions import session_user


class PortalLocaleMiddleware(LocaleMiddleware):
    """German unless the user picked another language: a hospital's browsers often say en-US."""

    def process_request(self, request) -> None:
        chosen = request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME, "")
        language = chosen if chosen in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
        translation.activate(language)
        request.LANGUAGE_CODE = translation.get_language()


class PrivatePagesMiddleware:
    """Pages for a logged-in user carry patient data: never cache them (shared ward PCs, proxies),
    and let caches tell an htmx fragment from the full page at the same URL."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        patch_vary_headers(response, ["HX-Request"])
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated and "Cache-Control" not in response:
            response["Cache-Control"] = "no-store, private"
        return response


class ConcurrencyLimitMiddleware:
    """At most KIMPORTAL_WEB_CONCURRENCY requests of one server process run Django at the same time.

    Under ASGI every request's sync code runs in a thread of its own, without a limit: at shift change two
    dozen threads per process fought over the GIL and asgiref's locks (translation lookups in templates)
    and each request took several times longer. Waiting here costs nothing; a response that streams (an
    attachment) is sent after this middleware has returned, so a slow download holds no slot.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.slots = threading.BoundedSemaphore(int(getattr(settings, "KIMPORTAL_WEB_CONCURRENCY", 8)))

    def __call__(self, request):
        with self.slots:
            return self.get_response(request)


class PortalAuthenticationMiddleware(AuthenticationMiddleware):
    """Django's, with request.user read by kimportal.sessions.session_user (a query compiled once)."""

    def process_request(self, request) -> None:
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: _user(request))


def _user(request):
    # The same per-request memo as django.contrib.auth.middleware.get_user.
    if not hasattr(request, "_cached_user"):
        request._cached_user = session_user(request)
    return request._cached_user


class PortalLoginRequiredMiddleware(LoginRequiredMiddleware):
    """Django's LoginRequiredMiddleware, and a signed-out tab's htmx request (the session ended in another tab,
    expired, or was ended by an administrator) gets the login page as a whole page instead of inside the fragment it
    asked for: htmx follows a redirect and would swap the login form into a list row or a status box. After signing
    in, the user is back on the page the tab showed (HX-Current-URL, when it is this site)."""

    def handle_no_permission(self, request: HttpRequest, view_func: Any) -> Any:
        if request.method in ("GET", "HEAD"):
            return super().handle_no_permission(request, view_func)
        # A form of a signed-out tab (POST): after signing in, the login leads to the page the form was on (its
        # Referer, when it is this site), never to the form's address, which answers only POST (a blank 405).
        page = urlsplit(request.headers.get("Referer", ""))
        back = "/"
        if page.scheme in ("http", "https") and page.netloc == request.get_host() and page.path.startswith("/"):
            back = page.path + (f"?{page.query}" if page.query else "")
        return redirect_to_login(
            back, resolve_url(self.get_login_url(view_func)), self.get_redirect_field_name(view_func)
        )

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any) -> Any:
        refused = super().process_view(request, view_func, view_args, view_kwargs)
        if refused is None or not request.headers.get("HX-Request"):
            return refused
        login = resolve_url(self.get_login_url(view_func))
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        if page.scheme in ("http", "https") and page.netloc == request.get_host() and page.path.startswith("/"):
            back = page.path + (f"?{page.query}" if page.query else "")
            return HttpResponseClientRedirect(f"{login}?{urlencode({self.get_redirect_field_name(view_func): back})}")
        return HttpResponseClientRedirect(login)
