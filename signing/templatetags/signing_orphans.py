"""The signing menu's link to the orphaned drafts, shown to owners of a mailbox only."""

from __future__ import annotations

from typing import Any

from django import template

from signing.services.orphans import owned_mailbox_ids

register = template.Library()


@register.simple_tag
def owns_a_mailbox(user: Any) -> bool:
    # member_roles is read once per request: no query of its own on the signing pages.
    return bool(owned_mailbox_ids(user))
