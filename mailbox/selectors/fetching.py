"""Messages the portal could not fetch, as the mailbox's owners and the administrators see them."""

from __future__ import annotations

from typing import Any

from mailbox.models import FetchFailure, Membership
from mailbox.permissions import user_role


def fetch_failures_for_user(user: Any, mailbox_id: int, *, role: str | None = None) -> list[FetchFailure]:
    """Failures shown on the mailbox page: only to its owners and to staff, only after enough tries.

    Other members see the account's status line but not this: they cannot act on it, and the
    detail (UIDLs, CM error texts) is for whoever looks after the mailbox. *role*, when the caller
    has just read it (the mailbox page has), saves asking again.
    """
    if not getattr(user, "is_authenticated", False):
        return []
    role = role or user_role(user, mailbox_id)
    if role is None:
        return []
    if role != Membership.Role.OWNER and not user.is_staff:
        return []
    return list(
        FetchFailure.objects.filter(account__mailbox_id=mailbox_id, tries__gte=FetchFailure.SHOW_AFTER_TRIES).order_by(
            "first_failed_at", "pk"
        )[:20]
    )
