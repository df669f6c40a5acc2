"""The portal's own 400 page: a form with too many fields or files is explained as such, not as "too big"; and its
500 handler, which answers 503 when the error was an unreachable database (kimportal.unavailable).

Django answers a request it refuses to parse (more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields — say a hand-made
selection of thousands of drafts —, too many files, a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad host) with
handler400. Like every error page this one stands alone: rendered without the request's context processors, so
nothing on it can fail again.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.core.exceptions import DisallowedHost, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.template import loader
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import defaults

from kimportal.unavailable import database_unreachable, unavailable_response


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    context: dict[str, object] = {}
    if isinstance(exception, TooManyFieldsSent):
        context = {"reason": "fields", "limit": settings.DATA_UPLOAD_MAX_NUMBER_FIELDS, "back": _back(request)}
    elif isinstance(exception, TooManyFilesSent):
        context = {"reason": "files", "limit": settings.DATA_UPLOAD_MAX_NUMBER_FILES, "back": _back(request)}
    return HttpResponseBadRequest(loader.get_template("400.html").render(context))


def _back(request: HttpRequest) -> str:
    """The page the form was on, when it is this site's: the way back to choose fewer."""
    referer = request.headers.get("Referer", "")
    try:
        host = request.get_host()
    except DisallowedHost:
        return ""
    return referer if url_has_allowed_host_and_scheme(referer, allowed_hosts={host}) else ""


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: Django calls it while it handles the exception (sys.exc_info() is that exception). A middleware's
    read of the session or the user that found the database gone answers 503 as a view's does."""
    exc = sys.exc_info()[1]
    if exc is not None and database_unreachable(exc):
        return unavailable_response(request, exc)
    return defaults.server_error(request)
