"""Access ends when it should: logout, removal from a mailbox, deactivation, forged page tokens, floods.

Each test is what a stranger tries: a tab left open after logout, an ex-member with notifications and
open work, a client that sends forty frames in two seconds.
"""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from mailbox.consumers import InboxConsumer, MessageConsumer
from mailbox.consumers.base import FRAME_BURST
from mailbox.models import AssignmentPeriod, Membership, Message, Notification, Presence
from mailbox.permissions import Action, can, user_role
from mailbox.services import assignment, claims, members
from mailbox.services.claims import page_token_new, page_token_valid
from mailbox.services.ingest import message_ingest
from tests.mailbox.factories import MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.test_consumers import watch_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fast(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def ward():
    box = MailboxFactory(display_name="Kardiologie")
    owner = UserFactory(username="chefin", first_name="Clara", last_name="Chef")
    nurse = UserFactory(username="pfleger", first_name="Paul", last_name="Pfleger")
    MembershipFactory(mailbox=box, user=owner, role=Membership.Role.OWNER)
    nurse_membership = MembershipFactory(mailbox=box, user=nurse, role=Membership.Role.PROCESSOR)
    message = message_ingest(mailbox=box, uidl="w-1", raw=MAIL_WITH_PDF)
    return box, owner, nurse, nurse_membership, message


async def _socket(consumer, path: str, user, *, session_key: str | None = None, **kwargs) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(consumer.as_asgi(), path)
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"args": (), "kwargs": kwargs}
    if session_key is not None:
        communicator.scope["session"] = SessionStore(session_key=session_key)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def _until_closed(communicator: WebsocketCommunicator) -> dict:
    while True:
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            return output


# --- logout ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_logout_closes_the_open_pages_sockets_at_once(ward):
    _box, _owner, nurse, _m, message = ward
    client = Client()
    await sync_to_async(client.force_login)(nurse)
    key = client.session.session_key
    page = await _socket(MessageConsumer, f"/ws/message/{message.pk}/", nurse, session_key=key, pk=message.pk)
    inbox = await _socket(InboxConsumer, "/ws/inbox/", nurse, session_key=key)

    response = await sync_to_async(client.post)(reverse("logout"))
    assert response.status_code == 302
    # No event in the mailbox is needed: the logout itself reaches both sockets.
    assert (await _until_closed(page))["code"] == 4401
    assert (await _until_closed(inbox))["code"] == 4401


@pytest.mark.asyncio
async def test_a_logged_out_tabs_heartbeat_renews_nothing(ward):
    _box, _owner, nurse, _m, message = ward
    client = Client()
    await sync_to_async(client.force_login)(nurse)
    key = client.session.session_key
    await database_sync_to_async(claims.message_claim)(user=nurse, message=message)
    page = await _socket(MessageConsumer, f"/ws/message/{message.pk}/", nurse, session_key=key, pk=message.pk)
    expires = (await database_sync_to_async(Message.objects.get)(pk=message.pk)).claim_expires_at
    # The session ends without the logout view (expired, or deleted by an administrator): no event at all.
    await database_sync_to_async(SessionStore(session_key=key).delete)()

    await page.send_to(text_data=json.dumps({"writing": False}))
    # The frame itself is the moment to look: the socket closes instead of renewing.
    assert (await _until_closed(page))["code"] == 4401
    fresh = await database_sync_to_async(Message.objects.get)(pk=message.pk)
    assert fresh.claim_expires_at == expires


# --- page tokens -----------------------------------------------------------------------------------


def test_page_tokens_speak_only_for_their_user_and_message(ward):
    _box, owner, nurse, _m, message = ward
    token = page_token_new(user=nurse, message_id=message.pk)
    assert page_token_valid(token, user=nurse, message_id=message.pk)
    assert not page_token_valid(token, user=owner, message_id=message.pk)
    assert not page_token_valid(token, user=nurse, message_id=message.pk + 1)
    assert not page_token_valid(token[:-1] + ("0" if token[-1] != "0" else "1"), user=nurse, message_id=message.pk)
    assert not page_token_valid("a" * 32, user=nurse, message_id=message.pk)


def test_a_forged_page_token_names_no_page(ward, client):
    _box, _owner, nurse, _m, message = ward
    client.force_login(nurse)
    client.post(reverse("mailbox:message-claim", args=[message.pk]), {"page": "0" * 16 + ".forged"})
    fresh = Message.objects.get(pk=message.pk)
    assert fresh.claimed_by == nurse and fresh.claim_page == ""
    real = page_token_new(user=nurse, message_id=message.pk)
    client.post(reverse("mailbox:message-release", args=[message.pk]))
    client.post(reverse("mailbox:message-claim", args=[message.pk]), {"page": real})
    assert Message.objects.get(pk=message.pk).claim_page == real


@pytest.mark.asyncio
async def test_a_socket_with_a_forged_page_token_is_not_a_page_load(ward):
    _box, _owner, nurse, _m, message = ward
    forged = "0" * 16 + ".0123456789abcdef"
    page = await _socket(MessageConsumer, f"/ws/message/{message.pk}/?page={forged}", nurse, pk=message.pk)
    row = await database_sync_to_async(Presence.objects.get)(user=nurse)
    assert row.page_token == ""
    await page.disconnect()


# --- floods ----------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_forty_writing_toggles_do_not_become_forty_broadcasts(ward):
    _box, owner, nurse, _m, message = ward
    watcher = await _socket(InboxConsumer, "/ws/inbox/", owner)
    await watch_rows(watcher, [message.pk])
    page = await _socket(MessageConsumer, f"/ws/message/{message.pk}/", nurse, pk=message.pk)
    assert "row-presence" in await watcher.receive_from(timeout=5)  # the join

    for i in range(40):
        await page.send_to(text_data=json.dumps({"writing": i % 2 == 0}))
    # The last toggle said "not writing"; it is applied once the window allows, then nothing more comes.
    updates = 0
    while not await watcher.receive_nothing(timeout=3):
        html = await watcher.receive_from(timeout=1)
        assert "row-presence" in html
        updates += 1
    assert 1 <= updates <= FRAME_BURST + 1
    row = await database_sync_to_async(Presence.objects.get)(user=nurse)
    assert row.writing is False
    await page.disconnect()
    await watcher.disconnect()


# --- removal from a mailbox ------------------------------------------------------------------------


def test_a_removed_members_work_returns_to_the_queue_and_the_owners_are_told(ward):
    box, owner, nurse, nurse_membership, message = ward
    second = message_ingest(mailbox=box, uidl="w-2", raw=MAIL_WITH_PDF)
    finished = message_ingest(mailbox=box, uidl="w-3", raw=MAIL_WITH_PDF)
    assignment.message_take(user=nurse, message=message, version=message.version)
    assignment.message_assign(user=owner, message=second, version=second.version, assignee_id=nurse.pk)
    Message.objects.filter(pk=finished.pk).update(assignee=nurse, state=Message.State.DONE)
    claims.message_claim(user=nurse, message=second)
    deputy = UserFactory(username="stellv", first_name="Dora", last_name="Deputy")
    MembershipFactory(mailbox=box, user=deputy, role=Membership.Role.OWNER)

    members.membership_remove(user=owner, mailbox=box, membership_id=nurse_membership.pk)

    for returned in Message.objects.filter(pk__in=[message.pk, second.pk]):
        assert returned.assignee is None and returned.claimed_by is None
        assert returned.state == Message.State.NEW
        assert not AssignmentPeriod.objects.filter(message=returned, ended_at__isnull=True).exists()
        assert AuditEvent.objects.filter(
            message_id=returned.pk, action="message.unassigned", details__reason="membership_ended"
        ).exists()
    # Finished work keeps its history: who did it stays true.
    assert Message.objects.get(pk=finished.pk).assignee == nurse
    # The other owners are told; the one who removed the member knows already.
    told = Notification.objects.get(user=deputy, kind=Notification.Kind.WORK_RETURNED)
    assert "Paul Pfleger" in told.display_text and "2 offene Nachrichten" in told.display_text
    assert set(Notification.objects.filter(kind=Notification.Kind.WORK_RETURNED).values_list("user", flat=True)) == {
        deputy.pk
    }


def test_a_downgrade_to_reader_also_hands_the_work_back(ward):
    box, owner, nurse, _m, message = ward
    assignment.message_take(user=nurse, message=message, version=message.version)
    members.membership_set(user=owner, mailbox=box, username="pfleger", role=Membership.Role.READER)
    assert Message.objects.get(pk=message.pk).assignee is None


def test_an_ex_members_notifications_no_longer_show_the_mailbox(ward, client):
    box, owner, nurse, nurse_membership, message = ward
    other = MailboxFactory(display_name="Aufnahme")
    MembershipFactory(mailbox=other, user=owner, role=Membership.Role.OWNER)
    MembershipFactory(mailbox=other, user=nurse, role=Membership.Role.PROCESSOR)
    elsewhere = message_ingest(mailbox=other, uidl="o-1", raw=MAIL_WITH_PDF.replace(b"Entlassbrief", b"Aufnahmebrief"))
    assignment.message_assign(
        user=owner, message=message, version=message.version, assignee_id=nurse.pk, note="Bitte Befund Herzkatheter"
    )
    assignment.message_assign(user=owner, message=elsewhere, version=elsewhere.version, assignee_id=nurse.pk)
    client.force_login(nurse)
    before = client.get(reverse("mailbox:notifications")).content.decode()
    assert "Herzkatheter" in before and "Entlassbrief" in before

    members.membership_remove(user=owner, mailbox=box, membership_id=nurse_membership.pk)

    after = client.get(reverse("mailbox:notifications")).content.decode()
    assert "Herzkatheter" not in after and "Entlassbrief Müller" not in after
    assert "Aufnahmebrief" in after  # the mailbox they still belong to
    badge = client.get(reverse("mailbox:inbox")).content.decode()
    assert 'data-count="1"' in badge or ">1<" in badge


@pytest.mark.asyncio
async def test_a_removed_members_open_message_page_closes(ward):
    box, owner, nurse, nurse_membership, message = ward
    page = await _socket(MessageConsumer, f"/ws/message/{message.pk}/", nurse, pk=message.pk)
    await database_sync_to_async(members.membership_remove)(user=owner, mailbox=box, membership_id=nurse_membership.pk)
    assert (await _until_closed(page))["code"] == 4403


def test_a_deactivated_account_has_no_role_even_with_a_stale_user_object(ward):
    box, _owner, nurse, _m, _message = ward
    assert can(user_role(nurse, box), Action.PROCESS)
    get_user_model().objects.filter(pk=nurse.pk).update(is_active=False)
    # `nurse` still says is_active=True in memory, as a socket's user does.
    assert nurse.is_active
    assert user_role(nurse, box) is None
    assert not Message.objects.visible_to(nurse).exists()


# --- the admin goes through the same service --------------------------------------------------------


def _inline_post(box, rows: list[dict]) -> dict:
    data = {
        "address": box.address,
        "display_name": box.display_name,
        "kind": box.kind,
        "is_active": "on",
        "created_at_0": timezone.localtime(box.created_at).strftime("%Y-%m-%d"),
        "created_at_1": timezone.localtime(box.created_at).strftime("%H:%M:%S"),
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for r in rows if r.get("id"))),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{i}-{key}"] = value
    return data


def test_removing_a_member_in_the_admin_is_audited_and_hands_work_back(ward, client):
    box, owner, nurse, nurse_membership, message = ward
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    assignment.message_take(user=nurse, message=message, version=message.version)
    owner_membership = Membership.objects.get(mailbox=box, user=owner)
    client.force_login(admin)
    url = reverse("admin:mailbox_mailbox_change", args=[box.pk])
    rows = [
        {"id": owner_membership.pk, "mailbox": box.pk, "user": owner.pk, "role": "owner"},
        {"id": nurse_membership.pk, "mailbox": box.pk, "user": nurse.pk, "role": "processor", "DELETE": "on"},
    ]
    response = client.post(url, _inline_post(box, rows))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert not Membership.objects.filter(pk=nurse_membership.pk).exists()
    assert AuditEvent.objects.filter(action="membership.removed", actor_id=admin.pk, details__member="pfleger").exists()
    assert Message.objects.get(pk=message.pk).assignee is None


def test_the_admin_cannot_remove_the_last_owner(ward, client):
    box, owner, nurse, nurse_membership, _message = ward
    admin = UserFactory(username="admin", is_staff=True, is_superuser=True)
    owner_membership = Membership.objects.get(mailbox=box, user=owner)
    client.force_login(admin)
    rows = [
        {"id": owner_membership.pk, "mailbox": box.pk, "user": owner.pk, "role": "owner", "DELETE": "on"},
        {"id": nurse_membership.pk, "mailbox": box.pk, "user": nurse.pk, "role": "processor"},
    ]
    response = client.post(reverse("admin:mailbox_mailbox_change", args=[box.pk]), _inline_post(box, rows))
    assert response.status_code == 200
    assert "mindestens einen Eigentümer" in response.content.decode()
    assert Membership.objects.filter(pk=owner_membership.pk, role="owner").exists()


def test_a_deactivated_account_hands_its_work_back_and_every_owner_is_told(ward):
    """IT switches off the account of someone who left the hospital (the Django admin, a directory sync): the letters
    they were responsible for go back to the unassigned queue instead of staying with nobody who sees them."""
    _box, owner, nurse, _membership, message = ward
    assignment.message_take(user=nurse, message=message, version=message.version)
    claims.message_claim(user=nurse, message=Message.objects.get(pk=message.pk))
    nurse.last_login = timezone.now()
    nurse.save(update_fields=["last_login"])  # every sign-in saves the user: nothing happens
    assert Message.objects.get(pk=message.pk).assignee == nurse

    nurse.is_active = False
    nurse.save()

    returned = Message.objects.get(pk=message.pk)
    assert returned.assignee is None and returned.claimed_by is None and returned.state == Message.State.NEW
    event = AuditEvent.objects.get(message_id=message.pk, action="message.unassigned")
    assert event.details["reason"] == "account_deactivated" and event.actor_id is None
    told = Notification.objects.get(user=owner, kind=Notification.Kind.WORK_RETURNED)
    assert "Paul Pfleger" in told.display_text
    # Switching it on again changes nothing more.
    nurse.is_active = True
    nurse.save()
    assert Notification.objects.filter(kind=Notification.Kind.WORK_RETURNED).count() == 1
