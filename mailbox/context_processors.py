from __future__ import annotations

from django.utils.functional import SimpleLazyObject


def portal(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from mailbox.selectors import user_counters

    # Lazy: only pages that show the counters pay for the (single) query.
    return {"counters": SimpleLazyObject(lambda: user_counters(user))}
