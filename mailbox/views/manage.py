"""The managers' pages (Leitung) under /leitung/: mailboxes and their KIM accounts, members, groups (wards),
substitutes, bulk changes and the access report. Every page answers 404 to anyone who is not a manager, so the
pages' existence is not revealed; managers administer access here but read no message without a membership."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from kimportal.http import AuthenticatedHttpRequest
from mailbox.permissions import is_manager

View = Callable[..., HttpResponse]


def manager_required(view: View) -> View:
    """404 for everyone but managers (not 403: a non-manager does not learn that the page exists). Outermost
    decorator, so that not even a 405 for the wrong method tells a non-manager the page is there."""

    @wraps(view)
    def wrapped(request: AuthenticatedHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not is_manager(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapped


@manager_required
@require_GET
def home(request: AuthenticatedHttpRequest) -> HttpResponse:
    return render(request, "manage/home.html")
