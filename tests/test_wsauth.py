"""kimportal.wsauth: a socket's user is its session's user, as Channels' AuthMiddlewareStack and Django decide."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from kimportal.asgi import application
from kimportal.wsauth import WebsocketAuthMiddleware
from mailbox.consumers.base import scope_user
from tests.mailbox.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


class _Recorder:
    """An inner application that keeps the scope it was given and accepts."""

    scope: dict

    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        await receive()
        await send({"type": "websocket.accept"})
        await receive()


def _signed_in(**user_fields) -> tuple[object, str]:
    user = UserFactory(**user_fields)
    client = Client()
    client.force_login(user)
    return user, client.cookies[settings.SESSION_COOKIE_NAME].value


async def _scope(cookie: str | None, extra: str = "") -> dict:
    recorder = _Recorder()
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}; {extra}".encode())] if cookie else []
    communicator = WebsocketCommunicator(WebsocketAuthMiddleware(recorder), "/ws/inbox/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.disconnect()
    # The user is read where the socket first reaches the database (a consumer's first hop): here, now.
    return dict(recorder.scope, user=await scope_user(recorder.scope))


@pytest.mark.asyncio
async def test_a_signed_in_session_gives_its_user_session_and_cookies():
    user, key = await database_sync_to_async(_signed_in)()
    scope = await _scope(key, extra="django_language=en")
    assert scope["user"].is_authenticated and scope["user"].pk == user.pk
    assert scope["session"].session_key == key
    assert scope["cookies"]["django_language"] == "en"


@pytest.mark.asyncio
async def test_no_cookie_or_an_unknown_key_is_anonymous():
    scope = await _scope(None)
    assert not scope["user"].is_authenticated
    assert scope["cookies"] == {}
    assert not (await _scope("nosuchsessionkey00000000000000000"))["user"].is_authenticated


@pytest.mark.asyncio
async def test_logged_out_expired_deactivated_or_password_changed_sessions_are_anonymous():
    def logged_out() -> str:
        _user, key = _signed_in()
        Session.objects.filter(session_key=key).delete()
        return key

    def expired() -> str:
        _user, key = _signed_in()
        Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(seconds=1))
        return key

    def deactivated() -> str:
        user, key = _signed_in()
        type(user).objects.filter(pk=user.pk).update(is_active=False)
        return key

    for make in (logged_out, expired, deactivated):
        key = await database_sync_to_async(make)()
        assert not (await _scope(key))["user"].is_authenticated, make.__name__


@pytest.mark.asyncio
async def test_a_changed_password_ends_the_session_as_django_does():
    def changed() -> str:
        user, key = _signed_in()
        user.set_password("ein-ganz-neues-passwort")
        user.save()
        return key

    key = await database_sync_to_async(changed)()
    assert not (await _scope(key))["user"].is_authenticated
    # As Django's get_user (and Channels'): the session whose hash no longer matches is flushed.
    assert not await Session.objects.filter(session_key=key).aexists()


@pytest.mark.asyncio
async def test_a_session_of_a_backend_no_longer_configured_is_anonymous():
    def foreign() -> str:
        _user, key = _signed_in()
        session = Session.objects.get(session_key=key)
        data = session.get_decoded()
        data[BACKEND_SESSION_KEY] = "some.removed.Backend"
        Session.objects.save(key, data, session.expire_date)
        return key

    key = await database_sync_to_async(foreign)()
    assert not (await _scope(key))["user"].is_authenticated


@pytest.mark.asyncio
async def test_the_full_stack_lets_a_signed_in_socket_in_and_refuses_an_ended_session():
    _user, key = await database_sync_to_async(_signed_in)()
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/inbox/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.disconnect()

    await Session.objects.filter(session_key=key).adelete()
    communicator = WebsocketCommunicator(application, "/ws/inbox/", headers=headers)
    # Accepted, then closed with 4401: a handshake refused would reach the browser as 1006, which htmx retries.
    assert await communicator.connect(timeout=5) == (True, None)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}


@pytest.mark.asyncio
async def test_connect_and_close_take_no_hop_to_the_shared_sync_thread(monkeypatch):
    # Channels' AuthMiddlewareStack and websocket_disconnect each queued a call on the process's one
    # thread-sensitive sync thread per socket; these sockets read the database on db()'s pool only.
    import channels.db
    import channels.generic.websocket
    from asgiref.sync import SyncToAsync

    hops = []
    real = SyncToAsync.__call__

    async def counting(self, *args, **kwargs):
        if self._thread_sensitive:
            hops.append(getattr(self.func, "__name__", self.func))
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counting)
    assert channels.generic.websocket.aclose_old_connections is channels.db.aclose_old_connections
    _user, key = await database_sync_to_async(_signed_in)()
    hops.clear()
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode())]
    communicator = WebsocketCommunicator(application, "/ws/inbox/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    await communicator.disconnect()
    assert hops == []


@pytest.mark.asyncio
async def test_a_sockets_user_asks_for_the_manager_flag_when_asked_not_at_connect():
    # A socket lives for hours: what the request's user carries for one request (the manager flag read with it,
    # kimportal.sessions.user_flag) must not answer for the socket's user after the permission was revoked.
    from django.contrib.auth.models import Permission

    from mailbox.permissions import is_manager

    def manager() -> tuple[object, str]:
        user, key = _signed_in()
        user.user_permissions.add(Permission.objects.get(content_type__app_label="mailbox", codename="manage_house"))
        return user, key

    user, key = await database_sync_to_async(manager)()
    scope = await _scope(key)
    assert await database_sync_to_async(is_manager)(scope["user"])
    await database_sync_to_async(user.user_permissions.clear)()
    assert not await database_sync_to_async(is_manager)(scope["user"])


def _member_with_message() -> tuple[object, str, int, int]:
    from mailbox.services.ingest import message_ingest
    from tests.mailbox.factories import MailboxFactory, MembershipFactory
    from tests.mailbox.mails import MAIL_WITH_PDF

    user, key = _signed_in()
    box = MailboxFactory()
    MembershipFactory(mailbox=box, user=user)
    message = message_ingest(mailbox=box, uidl="ws-1", raw=MAIL_WITH_PDF)
    stranger_box = MailboxFactory()
    other = message_ingest(mailbox=stranger_box, uidl="ws-2", raw=MAIL_WITH_PDF)
    return user, key, message.pk, other.pk


@pytest.mark.asyncio
async def test_a_message_page_socket_reads_its_user_in_the_hop_of_its_join_and_refuses_an_ended_session(monkeypatch):
    # The session's user is read on the socket's database thread together with the message check and the presence
    # join: one hop per connect. A logged-out session joins nothing and is refused.
    from mailbox.consumers import base
    from mailbox.models import Presence

    user, key, message_id, foreign_id = await database_sync_to_async(_member_with_message)()
    hops: list[object] = []
    submit = base._db_threads.submit
    monkeypatch.setattr(base._db_threads, "submit", lambda fn, *a, **k: hops.append(fn) or submit(fn, *a, **k))
    headers = [(b"origin", b"http://localhost"), (b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode())]

    page = WebsocketCommunicator(application, f"/ws/message/{message_id}/", headers=headers)
    connected, _ = await page.connect(timeout=5)
    assert connected
    assert len(hops) == 1
    # So does the page-wide socket: its user and the mailboxes it follows in one hop.
    inbox = WebsocketCommunicator(application, "/ws/inbox/", headers=headers)
    assert (await inbox.connect(timeout=5))[0]
    assert len(hops) == 2
    await inbox.disconnect()
    assert await Presence.objects.filter(message_id=message_id, user=user).acount() == 1
    await page.disconnect()
    assert await Presence.objects.filter(message_id=message_id).acount() == 0

    # Someone else's message: no presence, 4404.
    page = WebsocketCommunicator(application, f"/ws/message/{foreign_id}/", headers=headers)
    assert await page.connect(timeout=5) == (True, None)
    assert await page.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}
    assert not await Presence.objects.filter(message_id=foreign_id).aexists()

    await Session.objects.filter(session_key=key).adelete()  # what logout does
    page = WebsocketCommunicator(application, f"/ws/message/{message_id}/", headers=headers)
    assert await page.connect(timeout=5) == (True, None)
    assert await page.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert not await Presence.objects.filter(message_id=message_id).aexists()


@pytest.mark.asyncio
async def test_a_sockets_user_is_not_read_on_the_event_loop(monkeypatch):
    # The browser tests' conftest allows async-unsafe calls for the whole session; a server never does.
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    # Before a consumer resolves it (on a database thread), touching the scope's user is a database read in async
    # code: Django refuses it, so a consumer that forgot to resolve it fails closed instead of reading on the loop.
    from django.core.exceptions import SynchronousOnlyOperation

    _user, key = await database_sync_to_async(_signed_in)()
    recorder = _Recorder()
    headers = [(b"cookie", f"{settings.SESSION_COOKIE_NAME}={key}".encode())]
    communicator = WebsocketCommunicator(WebsocketAuthMiddleware(recorder), "/ws/inbox/", headers=headers)
    assert (await communicator.connect(timeout=5))[0]
    await communicator.disconnect()
    with pytest.raises(SynchronousOnlyOperation):
        _ = recorder.scope["user"].is_authenticated
    assert (await scope_user(recorder.scope)).is_authenticated
