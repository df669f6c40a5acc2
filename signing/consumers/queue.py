"""The queue page's socket: drafts that arrive or change for this user show a notice to reload the list (the
list itself is not replaced under the physician's selection)."""

from __future__ import annotations

from typing import Any

from mailbox.consumers.base import NO_ROLE, PortalConsumer, db, frame
from mailbox.events import user_group
from mailbox.selectors import user_counters
from signing import selectors
from signing.events import queue_group
from signing.models import Draft
from signing.permissions import signing_mailbox_ids


def notice_groups(user: Any, drafts: list[Draft]) -> dict[str, list[Draft]]:
    """What the notice says to this user about these (open) drafts: which wait for the user's review, which the
    user may sign now, and which the user is to sign once approved (a draft in review is not signable yet)."""
    review: list[Draft] = []
    sign: list[Draft] = []
    waiting: list[Draft] = []
    allowed: set[int] | None = None
    for draft in drafts:
        if not draft.is_open:
            continue
        if draft.review_state == Draft.Review.PENDING and draft.reviewer_id == user.pk:
            review.append(draft)
        elif draft.signer_id == user.pk:
            if allowed is None:
                allowed = signing_mailbox_ids(user)  # read now: a socket outlives memberships
            if draft.mailbox_id not in allowed:
                continue  # no longer theirs to sign (the department's role is gone): nothing to announce
            (waiting if draft.needs_approval else sign).append(draft)
    return {"review": review, "sign": sign, "waiting": waiting}


class QueueConsumer(PortalConsumer):
    async def connect(self) -> None:
        if not await self._authenticate():
            return
        # The user group brings the logout of this session (session.ended): the socket closes with it.
        await self._join(queue_group(self.user.pk), user_group(self.user.pk))
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if await self._check() is NO_ROLE:
            return
        frame(text_data)  # nothing to resync: the page shows the list as loaded

    async def signing_drafts_changed(self, event: dict[str, Any]) -> None:
        if await self._check() is NO_ROLE:
            return
        await self._send(await db(self._render_notice)([int(pk) for pk in event.get("draft_ids", [])]))

    def _render_notice(self, draft_ids: list[int]) -> str:
        # Re-read through the user's selector: a draft the user may not see is not even counted.
        drafts = selectors.drafts_by_ids_for_user(self.user, draft_ids)
        if not drafts:
            return ""
        context = {"drafts": drafts, **notice_groups(self.user, drafts)}
        return self._render("signing/partials/_queue_notice.html", context)

    # Events of the user group meant for the mailbox pages; this page has no use for them.
    async def user_notified(self, event: dict[str, Any]) -> None:
        """A new notification (a draft to sign, a mention …): the bell in this page's top bar follows."""
        if await self._check() is NO_ROLE:
            return
        await self._send(await db(self._render_badge)())

    def _render_badge(self) -> str:
        counters = user_counters(self.user)
        return self._render("mailbox/partials/_notification_badge.html", {"counters": counters, "oob": True})

    async def counters_changed(self, event: dict[str, Any]) -> None:
        return

    async def memberships_changed(self, event: dict[str, Any]) -> None:
        return
