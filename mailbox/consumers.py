"""Live inbox: new mail and account status reach the browser as htmx out-of-band swaps."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string
from django.utils import translation

from mailbox import selectors
from mailbox.events import mailbox_group


class InboxConsumer(AsyncWebsocketConsumer):
    groups: list[str]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.user = user
        self.language = _language_from_scope(self.scope)
        mailbox_ids = await database_sync_to_async(
            lambda: list(selectors.mailbox_list_for_user(user).values_list("pk", flat=True))
        )()
        self.joined = [mailbox_group(pk) for pk in mailbox_ids]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The browser only listens on this socket.
        return

    async def message_created(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_new_message)(event["message_id"])
        if html:
            await self.send(text_data=html)

    async def account_status(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_nav)(event["mailbox_id"])
        await self.send(text_data=html)

    def _render_new_message(self, message_id: int) -> str:
        # Re-read with the user's permissions: the event only says "something happened".
        message = selectors.message_row_for_user(self.user, message_id)
        if message is None:
            return ""
        with translation.override(self.language):
            return render_to_string(
                "mailbox/partials/_live_new_message.html",
                {"message": message, "mailboxes": selectors.mailbox_list_for_user(self.user), "user": self.user},
            )

    def _render_nav(self, mailbox_id: int) -> str:
        mailboxes = list(selectors.mailbox_list_for_user(self.user))
        mailbox = next((m for m in mailboxes if m.pk == mailbox_id), None)
        with translation.override(self.language):
            return render_to_string(
                "mailbox/partials/_live_nav.html", {"mailboxes": mailboxes, "mailbox": mailbox, "user": self.user}
            )


def _language_from_scope(scope: dict) -> str:
    from django.conf import settings

    cookies = scope.get("cookies") or {}
    lang = cookies.get(settings.LANGUAGE_COOKIE_NAME, "")
    return lang if lang in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE
