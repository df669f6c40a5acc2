from __future__ import annotations

from django.utils.functional import SimpleLazyObject


def portal(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from mailbox.permissions import is_manager
    from mailbox.selectors import user_counters

    # Lazy: only pages that show the counters (or the managers' link) pay for the query.
    return {
        "counters": SimpleLazyObject(lambda: user_counters(user)),
        "is_manager": SimpleLazyObject(lambda: is_manager(user)),
    }
