"""What the signing pages share: finding objects through the user's selectors, the workstation cookie."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import Http404, HttpRequest

from signing import selectors
from signing.models import Draft, SignatureBatch, Workplace

if TYPE_CHECKING:
    from django.contrib.auth.models import User

# The browser remembers the physician's workstation (where the card terminal with the PIN pad is).
WORKPLACE_COOKIE = "kimportal_signing_workplace"
WORKPLACE_COOKIE_AGE = 365 * 24 * 3600


def draft_or_404(user: User, pk: int) -> Draft:
    try:
        return selectors.draft_get_for_user(user, pk)
    except Draft.DoesNotExist as exc:
        raise Http404 from exc


def batch_or_404(user: User, pk: int) -> SignatureBatch:
    try:
        return selectors.batch_get_for_user(user, pk)
    except SignatureBatch.DoesNotExist as exc:
        raise Http404 from exc


def chosen_workplace(request: HttpRequest) -> Workplace | None:
    value = request.COOKIES.get(WORKPLACE_COOKIE, "")
    if not value.isdigit():
        return None
    return selectors.workplace_choices().filter(pk=int(value)).first()
