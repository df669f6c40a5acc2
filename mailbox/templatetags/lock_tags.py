"""{% lock_state message as lock %}: which face the lock panel shows, one value a kept fragment can be keyed by."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def lock_state(context: template.Context, message: Any) -> str:
    """ "free" (no active claim), "mine" (the user's claim) or "other" (someone else's, or no user known).

    Read once per rendering: claim_active() compares with the clock, so the panel's conditions use this value
    instead of asking again (a claim expiring in between would otherwise show one face under the other's key).
    """
    if not message.claim_active():
        return "free"
    user = context.get("user")
    return "mine" if user is not None and message.claimed_by_id == getattr(user, "pk", None) else "other"
