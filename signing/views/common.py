"""What the signing pages share: finding objects through the user's selectors, the workstation cookie."""

from __future__ import annotations

from collections.abc import Sequence
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


def chosen_workplace(request: HttpRequest, workplaces: Sequence[Workplace]) -> Workplace | None:
    """The workstation the sign form shows as chosen, among the active ``workplaces``: the one this browser
    remembers; if it remembers none (or one no longer active) and the house has exactly one, that one — else
    "Auswahl signieren" would be refused until the physician picked the only choice."""
    value = request.COOKIES.get(WORKPLACE_COOKIE, "")
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses (a hand-made cookie was a 500).
    if value.isascii() and value.isdigit():
        remembered = next((w for w in workplaces if w.pk == int(value)), None)
        if remembered is not None:
            return remembered
    return workplaces[0] if len(workplaces) == 1 else None
