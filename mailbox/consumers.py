"""Live updates as htmx out-of-band swaps.

InboxConsumer (every page): new mail, changed rows, counts, account status, notifications.
MessageConsumer (detail page): presence ("viewing"/"writing"), the read-lock panel, heartbeat.
Events carry ids only; every render re-reads through the user's own selectors.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.template.loader import render_to_string
from django.utils import timezone, translation

from mailbox import selectors
from mailbox.events import mailbox_group, message_group, user_group
from mailbox.models import Message


def _language_from_scope(scope: dict) -> str:
    cookies = scope.get("cookies") or {}
    lang = cookies.get(settings.LANGUAGE_COOKIE_NAME, "")
    return lang if lang in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


class _PortalConsumer(AsyncWebsocketConsumer):
    joined: list[str]

    async def _authenticate(self) -> bool:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return False
        self.user = user
        self.language = _language_from_scope(self.scope)
        self.joined = []
        return True

    async def _join(self, *groups: str) -> None:
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    def _render(self, template: str, context: dict) -> str:
        with translation.override(self.language):
            return render_to_string(template, {"user": self.user, **context})

    def _session_valid(self) -> bool:
        """Logged out elsewhere, session expired, or account deactivated: stop sending patient data."""
        session = self.scope.get("session")
        key = getattr(session, "session_key", None)
        if key is not None and not Session.objects.filter(session_key=key, expire_date__gt=timezone.now()).exists():
            return False
        return get_user_model().objects.filter(pk=self.user.pk, is_active=True).exists()

    async def _send_if_valid(self, html: str) -> None:
        if not html:
            return
        if not await database_sync_to_async(self._session_valid)():
            await self.close(code=4401)
            return
        await self.send(text_data=html)


class InboxConsumer(_PortalConsumer):
    async def connect(self) -> None:
        if not await self._authenticate():
            return
        mailbox_ids = await database_sync_to_async(
            lambda: list(selectors.mailbox_list_for_user(self.user).values_list("pk", flat=True))
        )()
        await self._join(*(mailbox_group(pk) for pk in mailbox_ids), user_group(self.user.pk))
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The browser only listens on this socket.
        return

    async def memberships_changed(self, event: dict) -> None:
        """Follow membership changes without a reload: join new mailboxes' groups, leave old ones."""
        mailbox_ids = await database_sync_to_async(
            lambda: list(selectors.mailbox_list_for_user(self.user).values_list("pk", flat=True))
        )()
        wanted = {mailbox_group(pk) for pk in mailbox_ids} | {user_group(self.user.pk)}
        for group in set(self.joined) - wanted:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.joined.remove(group)
        await self._join(*sorted(wanted - set(self.joined)))
        await self._send_if_valid(await database_sync_to_async(self._render_nav)(0))

    async def message_created(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_row)(event["message_id"], new=True)
        await self._send_if_valid(html)

    async def message_changed(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_row)(event["message_id"], new=False)
        await self._send_if_valid(html)

    async def presence_changed(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_presence)(event["message_id"])
        await self._send_if_valid(html)

    async def account_status(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_nav)(event["mailbox_id"])
        await self._send_if_valid(html)

    async def user_notified(self, event: dict) -> None:
        html = await database_sync_to_async(self._render_notifications)()
        await self._send_if_valid(html)

    def _nav_context(self, mailbox_id: int | None = None) -> dict:
        mailboxes = list(selectors.mailbox_list_for_user(self.user))
        return {
            "mailboxes": mailboxes,
            "mailbox": next((m for m in mailboxes if m.pk == mailbox_id), None),
            "counters": selectors.user_counters(self.user),
        }

    def _render_row(self, message_id: int, *, new: bool) -> str:
        # Re-read with the user's permissions: the event only says "something happened".
        message = selectors.message_row_for_user(self.user, message_id)
        if message is None:
            return ""
        template = "mailbox/partials/_live_new_message.html" if new else "mailbox/partials/_live_changed_message.html"
        return self._render(template, {"message": message, **self._nav_context()})

    def _render_presence(self, message_id: int) -> str:
        message = selectors.message_row_for_user(self.user, message_id)
        if message is None:
            return ""
        return self._render("mailbox/partials/_presence.html", {"message": message, "oob": True, "compact": True})

    def _render_nav(self, mailbox_id: int) -> str:
        return self._render("mailbox/partials/_live_nav.html", self._nav_context(mailbox_id))

    def _render_notifications(self) -> str:
        counters = selectors.user_counters(self.user)
        return self._render("mailbox/partials/_notification_badge.html", {"counters": counters, "oob": True})


class MessageConsumer(_PortalConsumer):
    """One open detail page: presence, heartbeat (renews the user's lease) and the live lock panel."""

    async def connect(self) -> None:
        if not await self._authenticate():
            return
        self.message_id = int(self.scope["url_route"]["kwargs"]["pk"])
        allowed = await database_sync_to_async(self._join_presence)()
        if not allowed:
            await self.close(code=4404)
            return
        await self._join(message_group(self.message_id))
        await self.accept()

    def _join_presence(self) -> bool:
        from mailbox.services.presence import presence_join

        message = selectors.message_row_for_user(self.user, self.message_id)
        if message is None:
            return False
        query = parse_qs((self.scope.get("query_string") or b"").decode("ascii", "replace"))
        self.page_token = (query.get("page") or [""])[0][:40]
        presence_join(user=self.user, message=message, channel_name=self.channel_name, page_token=self.page_token)
        return True

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = json.loads(text_data or "{}")
        except ValueError:
            return
        if not isinstance(data, dict):
            return
        writing = str(data.get("writing", "")).lower() in {"1", "true", "on"}
        await database_sync_to_async(self._heartbeat)(writing)

    def _heartbeat(self, writing: bool) -> None:
        from mailbox.services.presence import presence_beat
        from mailbox.services.work import NotAllowed, message_claim

        # One timestamp for the heartbeat and the lease renewal: _leave compares the two.
        now = timezone.now()
        row = presence_beat(channel_name=self.channel_name, writing=writing, now=now)
        if row is None:
            return
        message = Message.objects.filter(pk=self.message_id, claimed_by=self.user).first()
        if message is not None:
            # The open page keeps its lease alive; closing it lets the lease go. A user whose role
            # was taken away meanwhile keeps the socket (so leaving still cleans up) but no lease.
            try:
                message_claim(user=self.user, message=message, now=now)
            except NotAllowed:
                pass

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "message_id"):
            await database_sync_to_async(self._leave)()
        await super().disconnect(code)

    def _leave(self) -> None:
        from mailbox.services.presence import presence_leave
        from mailbox.services.work import message_release

        row, still_open = presence_leave(channel_name=self.channel_name)
        if row is None or still_open:
            return
        message = Message.objects.filter(pk=self.message_id, claimed_by=self.user).first()
        if message is None:
            return
        if handed_over(message, row):
            return
        message_release(user=self.user, message=message, reason="left")

    async def message_changed(self, event: dict) -> None:
        await self._send_if_valid(await database_sync_to_async(self._render_lock)())

    async def presence_changed(self, event: dict) -> None:
        await self._send_if_valid(await database_sync_to_async(self._render_lock)())

    def _render_lock(self) -> str:
        message = selectors.message_row_for_user(self.user, self.message_id)
        if message is None:
            return ""
        message.role = selectors.user_role(self.user, message.mailbox_id)
        context = {"message": message, "oob": True, "page_token": getattr(self, "page_token", "")}
        return self._render("mailbox/partials/_lock_panel.html", context)


def handed_over(message: Message, closing) -> bool:
    """Did another page load (a reload, a second tab still connecting) take the lock over?

    A reload's GET re-claims with its own page token before the old page's socket closes; the
    old page must leave the lock alone then. A hand-over older than PAGE_HANDOVER_SECONDS whose
    page never connected does not keep the lock: then the leaving page frees it.
    """
    from mailbox.services.work import PAGE_HANDOVER_SECONDS

    if not message.claim_page or message.claim_page == closing.page_token:
        return False
    recent = timezone.now() - timedelta(seconds=PAGE_HANDOVER_SECONDS)
    return bool(message.claim_renewed_at and message.claim_renewed_at > recent)
