"""One batch's page: every step (card found, job number, PIN asked again, documents signed, summary) re-renders
the status block the page itself renders, after re-reading the batch through the user's selector."""

from __future__ import annotations

from typing import Any

from mailbox.consumers.base import NO_ROLE, PortalConsumer, db, frame
from mailbox.events import user_group
from mailbox.selectors import user_counters
from signing import selectors
from signing.events import batch_group
from signing.models import SignatureBatch


class BatchConsumer(PortalConsumer):
    async def connect(self) -> None:
        if not await self._authenticate():
            return
        self.batch_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if not await db(self._visible)():
            await self._refuse(4404)
            return
        await self._join(batch_group(self.batch_id), user_group(self.user.pk))
        await self.accept()
        # The page was rendered before the socket listened: a step of the job in between (the Konnektor asking for
        # the PIN while the page still loaded) was told to nobody. So the socket starts with the batch as it is.
        await self._status()

    def _visible(self) -> bool:
        return selectors.batch_list_for_user(self.user).filter(pk=self.batch_id).exists()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if await self._check() is NO_ROLE:
            return
        if frame(text_data).get("resync"):
            # Reconnected after a drop: send the batch as it is now.
            await self._status()

    async def signing_batch_changed(self, event: dict[str, Any]) -> None:
        await self._status()

    async def _status(self) -> None:
        if await self._check() is NO_ROLE:
            return
        html = await db(self._render_status)()
        if html is None:
            await self._close(4403)
            return
        await self._send(html)

    def _render_status(self) -> str | None:
        try:
            batch = selectors.batch_get_for_user(self.user, self.batch_id)
        except SignatureBatch.DoesNotExist:
            return None
        return self._render(
            "signing/batch.html#batch-status", {**selectors.batch_context(batch, self.user), "oob": True}
        )

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
