"""Request types for views: what the middleware adds to a request, so mypy checks views against it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request past HtmxMiddleware, which sets `htmx` on every request (django-htmx's docs, "Type checking")."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """A request past LoginRequiredMiddleware: `user` is signed in (not for views marked `login_not_required`)."""

    user: User
