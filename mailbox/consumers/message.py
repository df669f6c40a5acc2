"""One open message page's socket: presence ("viewing"/"writing"), the heartbeat that renews its read-lock, the live
lock panel — and the page-wide part every page has (counts, notifications, account status: InboxConsumer), so that a
message page opens one socket, not two."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from django.template.loader import render_to_string
from django.utils import translation

from kimportal.wsauth import resolved_user, user_ready
from mailbox import selectors
from mailbox.consumers.base import (
    FRAME_BURST,
    FRAME_WINDOW_SECONDS,
    NO_ROLE,
    Budget,
    db,
    db_events,
    frame,
    language_from_scope,
    rows_delay,
)
from mailbox.consumers.inbox import InboxConsumer
from mailbox.events import mailbox_group, message_group, user_group
from mailbox.models import Message
from mailbox.permissions import Action, can


class MessageConsumer(InboxConsumer):
    """One open detail page: presence, heartbeat (renews the user's lease) and the live lock panel, plus what the
    page-wide socket of every other page does (the message page shows no list: it follows no rows)."""

    async def connect(self) -> None:
        self.message_id = int(self.scope["url_route"]["kwargs"]["pk"])
        query = parse_qs((self.scope.get("query_string") or b"").decode("ascii", "replace"))
        self.page_token = (query.get("page") or [""])[0][:40]
        self.frames = Budget(FRAME_BURST, FRAME_WINDOW_SECONDS)
        self.pending_writing: bool | None = None
        self.panel_scheduled = False
        self.notes_due = False
        self.mailbox_id: int | None = None
        self.language = language_from_scope(self.scope)  # the panel is rendered before the user is known
        scope_user = self.scope.get("user")
        if user_ready(scope_user) and not resolved_user(scope_user).is_authenticated:
            await self._authenticated(resolved_user(scope_user))  # no session: refused without a read
            return
        # The page was rendered before this socket listened: a colleague's claim, release or arrival in between was
        # told to nobody here. The message's group is joined first, so that the panel read below shows every change
        # before it and every change after it arrives as an event. Joining tells nothing: events are checked against
        # the session and the role before anything is sent, and a refused socket leaves the group again.
        await self._join(message_group(self.message_id))
        # One hop: the session's user, the message's visibility and mailbox, the user's role in it, the presence join
        # (its event is published from here, mailbox.consumers.base.db_events), the lock panel as it is now and the
        # user's mailboxes (the page-wide part's groups).
        user, message, panel, mailbox_ids = await db_events(self._connect_db)()
        # Before the session's socket limit is asked: the presence is written, and a refused socket must leave it too
        # (disconnect), or colleagues see this user on the message until the row goes stale.
        self.mailbox_id = message.mailbox_id if message is not None else None
        if not await self._authenticated(user):
            return
        if message is None:
            await self._refuse(4404)
            return
        await self._join(*(mailbox_group(pk) for pk in mailbox_ids), user_group(self.user.pk))
        self._start_page_wide()
        # The page shows no list: no new mail's rows, whatever arrives before (or without) its watch frame.
        self.new_for = set()
        await self.accept()
        await self._send(panel)

    def _connect_db(self) -> tuple[Any, Message | None, str, list[int]]:  # type: ignore[override]
        from mailbox.selectors.presence import presence_for_messages
        from mailbox.services.claims import page_token_valid
        from mailbox.services.presence import presence_join

        user = self._connect_user()
        if user is None or not user.is_authenticated:
            return user, None, "", []
        # Visibility, mailbox, role and the lock in one query; who has it open is read once this page joined.
        message = selectors.message_lock_and_role_for_user(user, self.message_id, present=False)
        if message is None:
            return user, None, "", []
        # Only a page the server handed out may speak for a page load (its claim, its leave).
        if not page_token_valid(self.page_token, user=user, message_id=self.message_id):
            self.page_token = ""
        presence_join(user=user, message=message, channel_name=self.channel_name, page_token=self.page_token)
        message.present = presence_for_messages([message.pk]).get(message.pk, [])
        # The panel as _lock_panel draws it: a message the user sees is in one of their mailboxes, and every role reads.
        return user, message, self._render_panel(user, message), selectors.mailbox_ids_for_user(user)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Three kinds of frames: the page-wide part's ("watch", "resync": InboxConsumer), the heartbeat and the
        "writing" toggle (presence-form: a "writing" field), and after a reconnect "resync", which also redraws the
        lock panel and counts as a heartbeat."""
        data = frame(text_data)
        if "watch" in data or "new" in data or data.get("resync"):
            await super().receive(text_data=text_data)
            if self.closed:
                return
        if "writing" not in data and not data.get("resync"):
            return
        writing = str(data.get("writing", "")).lower() in {"1", "true", "on"}
        if data.get("resync"):
            # Reconnected after a drop: show the lock panel as it is now.
            await self._lock_panel()
        if not self.frames.take():
            # Too many frames: remember the newest state and apply it when the window allows.
            if self.pending_writing is None:
                delay = self.frames.free_in()
                asyncio.get_running_loop().call_later(
                    max(0.05, delay), lambda: asyncio.ensure_future(self._flushframe())
                )
            self.pending_writing = writing
            return
        await self._beat(writing)

    async def _flushframe(self) -> None:
        writing, self.pending_writing = self.pending_writing, None
        if writing is None or self.closed:
            return
        self.frames.note()
        await self._beat(writing)

    async def _beat(self, writing: bool) -> None:
        from mailbox.services.claims import message_heartbeat

        # Every client frame re-checks the session (a logged-out tab renews nothing) and the user's role, batched
        # with the other sockets' checks: the renewal asks neither again.
        role = await self._check(self.mailbox_id)
        if role is NO_ROLE:
            return
        await db_events(message_heartbeat)(
            user=self.user,
            message_id=self.message_id,
            channel_name=self.channel_name,
            writing=writing,
            mailbox_role=(self.mailbox_id, role),
        )

    async def disconnect(self, code: int) -> None:
        if getattr(self, "mailbox_id", None) is not None:
            from mailbox.services.claims import message_leave

            await db_events(message_leave)(
                user=self.user, message_id=self.message_id, channel_name=self.channel_name, mailbox_id=self.mailbox_id
            )
        await super().disconnect(code)

    def _own_groups(self) -> set[str]:
        return {message_group(self.message_id)}

    async def memberships_changed(self, event: dict) -> None:
        """Removed from the mailbox: the page's socket closes (the page shows it is no longer live). Still a reader:
        the page-wide part follows the change (InboxConsumer)."""
        role = await self._check(self.mailbox_id)
        if role is NO_ROLE:
            return
        if not can(role, Action.READ):
            await self._close(4403)
            return
        await super().memberships_changed(event)

    async def message_changed(self, event: dict) -> None:
        if event.get("message_id") != self.message_id:
            await super().message_changed(event)
            return
        # A colleague's note: the page's list shows it with the panel (two notes at once: one list with both).
        self.notes_due = self.notes_due or bool(event.get("notes"))
        self._lock_panel_soon()

    async def presence_changed(self, event: dict) -> None:
        if event.get("message_id") != self.message_id:
            await super().presence_changed(event)
            return
        # This page's own arrival: its panel was rendered with the page a moment ago.
        if event.get("origin") == self.channel_name:
            return
        self._lock_panel_soon()

    def _lock_panel_soon(self) -> None:
        """The panel waits a moment, as the inbox's rows do: a burst (a colleague's claim and the presence of the
        page that claimed, a release and a leave) becomes one access check and one panel, drawn as it is then."""
        if self.panel_scheduled:
            return
        self.panel_scheduled = True
        asyncio.get_running_loop().call_later(rows_delay(), lambda: asyncio.ensure_future(self._flush_lock_panel()))

    async def _flush_lock_panel(self) -> None:
        self.panel_scheduled = False
        if not self.closed:
            await self._lock_panel()

    async def message_panel_changed(self, event: dict) -> None:
        """A panel another app adds to the page changed (mailbox.extensions): re-read it as this user sees it."""
        from mailbox.extensions import panel_get

        # A refused socket keeps the message's group until its close is through: it has no user or role to ask.
        panel = panel_get(str(event.get("panel", "")))
        if panel is None or self.closed:
            return
        role = await self._check(self.mailbox_id)
        if role is NO_ROLE:
            return
        if not can(role, Action.READ):
            await self._close(4403)
            return
        found = await db(panel.live)(self.user, self.message_id)
        if found is not None:
            template, context = found
            await self._send(await db(self._render)(template, context))

    async def _lock_panel(self) -> None:
        role = await self._check(self.mailbox_id)
        if role is NO_ROLE:
            return
        if not can(role, Action.READ):
            await self._close(4403)
            return
        notes, self.notes_due = self.notes_due, False
        await self._send(await db(self._render_lock)(role, notes=notes))

    def _render_lock(self, role: str, *, notes: bool = False) -> str:
        message = selectors.message_lock_for_user(self.user, self.message_id)
        if message is None:
            return ""
        message.role = role
        html = self._render_panel(self.user, message)
        if notes:
            # Read for the user as the panel's message was: one more query, the check inside it.
            note_list = selectors.note_list_for_user(self.user, message.pk)
            with translation.override(self.language):
                html += render_to_string("mailbox/partials/_note_list.html", {"notes": note_list, "oob": True})
        return html

    def _render_panel(self, user: Any, message: Message) -> str:
        context = {"user": user, "message": message, "oob": True, "page_token": self.page_token}
        with translation.override(self.language):
            return render_to_string("mailbox/partials/_lock_panel.html", context)
