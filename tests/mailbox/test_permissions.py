"""The permission walker: every URL of the mailbox app and every websocket route × every role × a stranger's mailbox.

The URL list comes from the resolver, not from this file: a new URL without a row in ROUTES fails
`test_every_mailbox_url_has_an_expectation`. Someone else's object is always 404 (never 403 or 200, which would
tell that it exists); too weak a role is 403; a sufficient role succeeds and the change is visible in the database.

One module on purpose, though long: the route table, the roles and the walker must be read together.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from audit.models import AuditEvent
from kimportal.routing import websocket_urlpatterns
from mailbox import events
from mailbox.consumers import InboxConsumer, MessageConsumer
from mailbox.models import (
    Absence,
    Membership,
    Message,
    Note,
    Notification,
    OutgoingAttachment,
    OutgoingMessage,
    Presence,
    RoutingRule,
)
from mailbox.services import claims, notes
from mailbox.services.ingest import message_ingest
from mailbox.storage import blob_put
from tests.mailbox.factories import KimAccountFactory, MailboxFactory, MembershipFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.mailbox.test_consumers import watch_rows

Role = Membership.Role
ROLES = [Role.OBSERVER, Role.READER, Role.PROCESSOR, Role.OWNER]
OWN_SUBJECT = "Entlassbrief Müller"
FOREIGN_SUBJECT = "Fremdgeheimnis"
FOREIGN_MAIL = MAIL_WITH_PDF.replace(b"=?utf-8?q?Entlassbrief_M=C3=BCller?=", FOREIGN_SUBJECT.encode())


@pytest.fixture(autouse=True)
def _fast_passwords(settings) -> None:
    # Every world has a dozen users; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    """The user under test (role in `box`, or none) next to a stranger's mailbox with the same kinds of objects."""

    user: object
    box: object
    message: Message
    colleague: object
    newcomer: object
    removable: Membership
    own_absence: Absence
    foreign_owner: object
    foreign_box: object
    foreign_message: Message
    foreign_membership: Membership
    foreign_absence: Absence
    # The send path: the user's draft (with an attachment) and a failed sent message, and the stranger's.
    draft: OutgoingMessage
    sent: OutgoingMessage
    foreign_draft: OutgoingMessage
    foreign_sent: OutgoingMessage


def build_world(role: str | None) -> World:
    box = MailboxFactory(display_name="Kardiologie")
    KimAccountFactory(mailbox=box)
    boss = UserFactory(username="chef")
    MembershipFactory(mailbox=box, user=boss, role=Role.OWNER)  # the mailbox keeps an owner whatever the user is
    colleague = UserFactory(username="kollege", first_name="Karl", last_name="Kollege")
    MembershipFactory(mailbox=box, user=colleague, role=Role.PROCESSOR)
    removable = MembershipFactory(mailbox=box, user=UserFactory(username="leser2"), role=Role.READER)
    user = UserFactory(username="tester", first_name="Tina", last_name="Test")
    if role:
        MembershipFactory(mailbox=box, user=user, role=role)
    message = message_ingest(mailbox=box, uidl="own", raw=MAIL_WITH_PDF)

    foreign_box = MailboxFactory(display_name="Fremdstation")
    KimAccountFactory(mailbox=foreign_box)
    foreign_owner = UserFactory(username="fremdchef", first_name="Fritz", last_name="Fremdling")
    MembershipFactory(mailbox=foreign_box, user=foreign_owner, role=Role.OWNER)
    foreign_membership = MembershipFactory(mailbox=foreign_box, user=UserFactory(username="fremdleser"), role="reader")
    foreign_message = message_ingest(mailbox=foreign_box, uidl="foreign", raw=FOREIGN_MAIL)
    now = timezone.now()
    # The stranger's message is locked and assigned — to the user, as if they had been a member once.
    Message.objects.filter(pk=foreign_message.pk).update(
        claimed_by=foreign_owner, claimed_at=now, claim_expires_at=now + timedelta(minutes=10), assignee=user
    )
    # The stranger's notification names the foreign message: it must stay theirs.
    Notification.objects.create(user=foreign_owner, kind="mention", message=foreign_message, text=FOREIGN_SUBJECT)
    later = now + timedelta(days=3)
    draft, sent = _outgoing_pair(box, user, "praxis@praxis-test.kim.telematik-test")
    foreign_draft, foreign_sent = _outgoing_pair(foreign_box, foreign_owner, "geheim@praxis-test.kim.telematik-test")
    return World(
        draft=draft,
        sent=sent,
        foreign_draft=foreign_draft,
        foreign_sent=foreign_sent,
        user=user,
        box=box,
        message=message,
        colleague=colleague,
        newcomer=UserFactory(username="neu"),
        removable=removable,
        own_absence=Absence.objects.create(
            user=user, substitute=colleague, starts_at=later, ends_at=later + timedelta(days=1)
        ),
        foreign_owner=foreign_owner,
        foreign_box=foreign_box,
        foreign_message=Message.objects.get(pk=foreign_message.pk),
        foreign_membership=foreign_membership,
        foreign_absence=Absence.objects.create(
            user=foreign_owner, substitute=foreign_membership.user, starts_at=later, ends_at=later + timedelta(days=1)
        ),
    )


def _outgoing_pair(box, author, to: str) -> tuple[OutgoingMessage, OutgoingMessage]:
    """A draft of the author's with one attachment, and a message of the mailbox whose sending failed."""
    subject = "Fremdgeheimnis Entwurf" if box.display_name == "Fremdstation" else "Rückfrage"
    draft = OutgoingMessage.objects.create(mailbox=box, author=author, subject=subject, to=[to])
    OutgoingAttachment.objects.create(
        outgoing=draft, position=1, filename="befund.txt", content_type="text/plain", size=5, sha256=blob_put(b"hallo")
    )
    sent = OutgoingMessage.objects.create(
        mailbox=box,
        author=author,
        subject=subject,
        to=[to],
        state=OutgoingMessage.State.FAILED,
        message_id=f"<{box.pk}-sent@kim.local>",
        queued_at=timezone.now(),
    )
    OutgoingAttachment.objects.create(
        outgoing=sent, position=1, filename="befund.txt", content_type="text/plain", size=5, sha256=blob_put(b"hallo")
    )
    return draft, sent


def _sent_attachment_kwargs(w: World, foreign: bool) -> dict:
    sent = w.foreign_sent if foreign else w.sent
    return {"pk": sent.pk, "attachment_pk": sent.attachments.get().pk}


def _leave_draft(w: World) -> None:
    """The draft was begun by someone who has since left the mailbox."""
    OutgoingMessage.objects.filter(pk=w.draft.pk).update(
        author=UserFactory(username="ehemalig"), author_left_at=timezone.now()
    )


def _out(o: OutgoingMessage) -> OutgoingMessage:
    return OutgoingMessage.objects.get(pk=o.pk)


def _replies(w: World, kind: str) -> bool:
    return OutgoingMessage.objects.filter(in_reply_to=w.message, kind=kind, author=w.user).exists()


def _msg(w: World) -> Message:
    return Message.objects.get(pk=w.message.pk)


@dataclass(frozen=True)
class Route:
    methods: tuple[str, ...]  # the methods the view serves; every other one is 405
    kind: str  # what the URL points at: list | user | mailbox | membership | absence | message | attachment
    role: str = Role.OBSERVER  # the least role that succeeds (observer: every member)
    data: Callable[[World], dict] = field(default=lambda w: {})
    prepare: Callable[[World], None] = field(default=lambda w: None)
    done: Callable[[World], bool] | None = None  # the change a successful request makes
    # What a member with too weak a role gets (404 where even the page's existence is private; 423 for the work and
    # lock actions, which answer htmx with the panel and the reason: a page left open since the role was lowered
    # would swallow a 403).
    refused: int = 403


def _hold(w: World, user) -> None:
    now = timezone.now()
    Message.objects.filter(pk=w.message.pk).update(
        claimed_by=user, claimed_at=now, claim_expires_at=now + timedelta(minutes=10)
    )


def _notify_user(w: World) -> None:
    Notification.objects.create(user=w.user, kind="mention", message=w.message, text="x")


def _local(delta: timedelta) -> str:
    return timezone.localtime(timezone.now() + delta).strftime("%Y-%m-%dT%H:%M")


ROUTES: dict[str, Route] = {
    "inbox": Route(("GET",), "list"),
    "mine": Route(("GET",), "list"),
    "notifications": Route(("GET",), "user"),
    "notifications-read": Route(
        ("POST",),
        "user",
        prepare=_notify_user,
        done=lambda w: not Notification.objects.filter(user=w.user, read_at__isnull=True).exists(),
    ),
    "absences": Route(
        ("GET", "POST"),
        "user",
        data=lambda w: {
            "substitute": w.colleague.pk,
            "starts_at": _local(timedelta(days=10)),
            "ends_at": _local(timedelta(days=12)),
        },
        done=lambda w: Absence.objects.filter(user=w.user).count() == 2,
    ),
    "absence-end": Route(("POST",), "absence", done=lambda w: not Absence.objects.filter(pk=w.own_absence.pk).exists()),
    "mailbox-messages": Route(("GET",), "mailbox"),
    "mailbox-fetch": Route(
        ("POST",),
        "mailbox",
        done=lambda w: AuditEvent.objects.filter(action="mailbox.fetch_requested", actor_id=w.user.pk).exists(),
    ),
    "mailbox-members": Route(
        ("GET", "POST"),
        "mailbox",
        role=Role.OWNER,
        data=lambda w: {"user": w.newcomer.username, "role": Role.READER},
        done=lambda w: Membership.objects.filter(mailbox=w.box, user=w.newcomer).exists(),
    ),
    "mailbox-member-remove": Route(
        ("POST",),
        "membership",
        role=Role.OWNER,
        done=lambda w: not Membership.objects.filter(pk=w.removable.pk).exists(),
    ),
    "mailbox-dashboard": Route(("GET",), "mailbox", role=Role.OWNER),
    "message-legal-hold": Route(
        ("POST",),
        "message",
        role=Role.OWNER,
        data=lambda w: {"hold": "on", "reason": "Az. 1/26"},
        done=lambda w: _msg(w).legal_hold,
    ),
    "mailbox-routing": Route(
        ("GET", "POST"),
        "mailbox",
        role=Role.OWNER,
        refused=404,
        data=lambda w: {"name": "Neu", "dienstkennung": "eAU", "set_state": "waiting", "is_active": "on"},
        done=lambda w: RoutingRule.objects.filter(mailbox=w.box, name="Neu").exists(),
    ),
    "mailbox-routing-edit": Route(
        ("GET", "POST"),
        "rule",
        role=Role.OWNER,
        refused=404,
        data=lambda w: {"name": "Neu", "dienstkennung": "eAU", "set_state": "waiting", "is_active": "on"},
        done=lambda w: RoutingRule.objects.filter(mailbox=w.box, name="Neu").exists(),
    ),
    "mailbox-routing-move": Route(
        ("POST",),
        "rule",
        role=Role.OWNER,
        refused=404,
        prepare=lambda w: [_rule_of(w.box, fresh=True) for _ in range(2)],
        done=lambda w: RoutingRule.objects.filter(mailbox=w.box).order_by("position", "id").first().name == "R1",
    ),
    "mailbox-routing-active": Route(
        ("POST",),
        "rule",
        role=Role.OWNER,
        refused=404,
        done=lambda w: not RoutingRule.objects.get(mailbox=w.box).is_active,
    ),
    "mailbox-routing-delete": Route(
        ("POST",),
        "rule",
        role=Role.OWNER,
        refused=404,
        done=lambda w: not RoutingRule.objects.filter(mailbox=w.box).exists(),
    ),
    "message-detail": Route(("GET",), "message"),
    "message-html": Route(("GET",), "message"),
    "message-raw": Route(("GET",), "message"),
    "attachment-download": Route(("GET",), "attachment"),
    "message-attachments": Route(("GET",), "message"),
    "message-claim": Route(
        ("POST",), "message", role=Role.PROCESSOR, done=lambda w: _msg(w).claimed_by == w.user, refused=423
    ),
    # Anyone may give back their own lock (a processor demoted to reader must not be stuck with it).
    "message-release": Route(
        ("POST",), "message", prepare=lambda w: _hold(w, w.user), done=lambda w: _msg(w).claimed_by is None
    ),
    "message-break-lock": Route(
        ("POST",),
        "message",
        role=Role.OWNER,
        prepare=lambda w: _hold(w, w.colleague),
        done=lambda w: _msg(w).claimed_by is None,
        refused=423,
    ),
    "message-take": Route(
        ("POST",),
        "message",
        role=Role.PROCESSOR,
        data=lambda w: {"version": w.message.version},
        done=lambda w: _msg(w).assignee == w.user,
        refused=423,
    ),
    "message-assign": Route(
        ("POST",),
        "message",
        role=Role.PROCESSOR,
        data=lambda w: {"version": w.message.version, "assignee": w.colleague.pk, "note": "bitte"},
        done=lambda w: _msg(w).assignee == w.colleague,
        refused=423,
    ),
    "message-unassign": Route(
        ("POST",),
        "message",
        role=Role.PROCESSOR,
        prepare=lambda w: Message.objects.filter(pk=w.message.pk).update(assignee=w.colleague),
        data=lambda w: {"version": w.message.version},
        done=lambda w: _msg(w).assignee is None,
        refused=423,
    ),
    "message-state": Route(
        ("POST",),
        "message",
        role=Role.PROCESSOR,
        data=lambda w: {"version": w.message.version, "state": Message.State.DONE},
        done=lambda w: _msg(w).state == Message.State.DONE,
        refused=423,
    ),
    "message-note": Route(
        ("POST",),
        "message",
        role=Role.PROCESSOR,
        data=lambda w: {"version": w.message.version, "body": "Rückruf erledigt"},
        done=lambda w: Note.objects.filter(message=w.message, author=w.user).exists(),
        refused=423,
    ),
    # --- the send path -------------------------------------------------------------------------------------
    "message-reply": Route(("POST",), "message", role=Role.PROCESSOR, done=lambda w: _replies(w, "reply")),
    "message-reply-all": Route(("POST",), "message", role=Role.PROCESSOR, done=lambda w: _replies(w, "reply_all")),
    "message-forward": Route(("POST",), "message", role=Role.PROCESSOR, done=lambda w: _replies(w, "forward")),
    # The directory is not reachable in this test: the acknowledgement is prepared, the pre-flight stops it.
    "message-acknowledge": Route(
        ("POST",),
        "message",
        role=Role.PROCESSOR,
        done=lambda w: OutgoingMessage.objects.filter(in_reply_to=w.message, kind="acknowledgement").exists(),
    ),
    "message-conversation": Route(("GET",), "message"),
    "compose": Route(
        ("GET", "POST"),
        "list",
        role=Role.PROCESSOR,
        data=lambda w: {"mailbox": w.box.pk},
        done=lambda w: OutgoingMessage.objects.filter(mailbox=w.box, author=w.user, state="draft").count() == 2,
    ),
    "compose-address": Route(("GET",), "list", role=Role.PROCESSOR),
    "drafts": Route(("GET",), "list"),
    "sent": Route(("GET",), "list"),
    "outbox": Route(("GET",), "list"),
    "mailbox-sent": Route(("GET",), "mailbox"),
    "draft-edit": Route(
        ("GET", "POST"),
        "draft",
        role=Role.PROCESSOR,
        data=lambda w: {"mailbox": w.box.pk, "subject": "Neu", "dienstkennung": "KIM-Mail;Default;V1.0"},
        done=lambda w: _out(w.draft).subject == "Neu",
    ),
    "draft-attachment-add": Route(
        ("POST",),
        "draft",
        role=Role.PROCESSOR,
        data=lambda w: {"files": SimpleUploadedFile("brief.txt", b"Brieftext")},
        done=lambda w: w.draft.attachments.count() == 2,
    ),
    "draft-attachment-remove": Route(
        ("POST",), "draft-attachment", role=Role.PROCESSOR, done=lambda w: not w.draft.attachments.exists()
    ),
    "draft-remove-recipient": Route(
        ("POST",),
        "draft",
        role=Role.PROCESSOR,
        data=lambda w: {"address": "praxis@praxis-test.kim.telematik-test"},
        done=lambda w: _out(w.draft).to == [],
    ),
    # No recipient: the pre-flight refuses before the directory is asked; the walker checks who may try.
    "draft-send": Route(
        ("POST",),
        "draft",
        role=Role.PROCESSOR,
        data=lambda w: {"mailbox": w.box.pk, "subject": "Neu", "dienstkennung": "KIM-Mail;Default;V1.0"},
        done=lambda w: _out(w.draft).subject == "Neu",
    ),
    "draft-discard": Route(
        ("POST",),
        "draft",
        role=Role.PROCESSOR,
        done=lambda w: not OutgoingMessage.objects.filter(pk=w.draft.pk).exists(),
    ),
    # A former member's draft: only an owner sees it; everyone below gets 404 from the selector.
    "draft-take-over": Route(
        ("POST",),
        "draft",
        role=Role.OWNER,
        refused=404,
        prepare=_leave_draft,
        done=lambda w: _out(w.draft).author_id == w.user.pk,
    ),
    "draft-left-discard": Route(
        ("POST",),
        "draft",
        role=Role.OWNER,
        refused=404,
        prepare=_leave_draft,
        done=lambda w: not OutgoingMessage.objects.filter(pk=w.draft.pk).exists(),
    ),
    "outgoing-detail": Route(("GET",), "outgoing"),
    "outgoing-retry": Route(
        ("POST",), "outgoing", role=Role.PROCESSOR, done=lambda w: _out(w.sent).state == OutgoingMessage.State.QUEUED
    ),
    "outgoing-uncertain": Route(
        ("POST",),
        "outgoing",
        role=Role.PROCESSOR,
        prepare=lambda w: OutgoingMessage.objects.filter(pk=w.sent.pk).update(state=OutgoingMessage.State.UNCERTAIN),
        data=lambda w: {"delivered": "yes"},
        done=lambda w: _out(w.sent).state == OutgoingMessage.State.SENT,
    ),
    "outgoing-attachment-download": Route(
        ("GET",),
        "outgoing-attachment",
        done=lambda w: AuditEvent.objects.filter(action="outgoing.attachment_downloaded", actor_id=w.user.pk).exists(),
    ),
    "outgoing-claim": Route(
        ("POST",), "outgoing", role=Role.PROCESSOR, done=lambda w: _out(w.sent).claimed_by == w.user
    ),
    "outgoing-withdraw": Route(
        ("POST",),
        "outgoing",
        role=Role.PROCESSOR,
        prepare=lambda w: OutgoingMessage.objects.filter(pk=w.sent.pk).update(state=OutgoingMessage.State.HELD),
        done=lambda w: _out(w.sent).state == OutgoingMessage.State.DRAFT,
    ),
    "outgoing-release": Route(
        ("POST",),
        "outgoing",
        role=Role.PROCESSOR,
        prepare=lambda w: OutgoingMessage.objects.filter(pk=w.sent.pk).update(claimed_by=w.user),
        done=lambda w: _out(w.sent).claimed_by is None,
    ),
}


def mailbox_url_names() -> list[str]:
    """Every URL pattern in the `mailbox` namespace, found recursively from the root URLconf."""
    found: list[str] = []

    def walk(patterns, namespaces: tuple[str, ...]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, (*namespaces, p.namespace) if p.namespace else namespaces)
            elif isinstance(p, URLPattern) and namespaces == ("mailbox",):
                found.append(p.name or f"<unnamed {p.pattern}>")

    walk(get_resolver().url_patterns, ())
    return found


def _rule_of(box, *, fresh: bool = False) -> RoutingRule:
    """The mailbox's last routing rule, made when there is none (or a new one with `fresh`)."""
    rule = RoutingRule.objects.filter(mailbox=box).order_by("position", "id").last()
    if rule is None or fresh:
        n = RoutingRule.objects.filter(mailbox=box).count()
        rule = RoutingRule.objects.create(
            mailbox=box, position=n + 1, name=f"R{n}", subject_words="x", set_state="done"
        )
    return rule


def url_for(name: str, w: World, *, foreign: bool) -> str:
    kind = ROUTES[name].kind
    box = w.foreign_box if foreign else w.box
    message = w.foreign_message if foreign else w.message
    kwargs = {
        "list": {},
        "user": {},
        "mailbox": {"pk": box.pk},
        "membership": {"pk": box.pk, "membership_pk": (w.foreign_membership if foreign else w.removable).pk},
        "absence": {"pk": (w.foreign_absence if foreign else w.own_absence).pk},
        "rule": {"pk": box.pk, "rule_pk": _rule_of(box).pk} if kind == "rule" else {},
        "message": {"pk": message.pk},
        "attachment": {"pk": message.pk, "position": message.attachments.get().position},
        "draft": {"pk": (w.foreign_draft if foreign else w.draft).pk},
        "draft-attachment": {
            "pk": (w.foreign_draft if foreign else w.draft).pk,
            "attachment_pk": (w.foreign_draft if foreign else w.draft).attachments.first().pk,
        }
        if kind == "draft-attachment"
        else {},
        "outgoing": {"pk": (w.foreign_sent if foreign else w.sent).pk},
        "outgoing-attachment": _sent_attachment_kwargs(w, foreign) if kind == "outgoing-attachment" else {},
    }[kind]
    return reverse(f"mailbox:{name}", kwargs=kwargs)


def send(client, method: str, url: str, data: dict | None = None):
    # As htmx, a refused action answers 4xx instead of redirecting with a flash message: 2xx then proves success.
    headers = {"HX-Request": "true"} if method == "POST" and "/nachricht/" in url else {}
    if method == "GET":
        return client.get(url, headers=headers)
    if method == "POST":
        return client.post(url, data or {}, headers=headers)
    return client.generic(method, url, headers=headers)


def foreign_state(w: World) -> dict:
    """Everything a stranger's request could touch in the foreign mailbox."""
    m = Message.objects.get(pk=w.foreign_message.pk)
    return {
        "message": (m.state, m.version, m.assignee_id, m.claimed_by_id, m.claim_expires_at),
        "notes": Note.objects.filter(message=m).count(),
        "reads": m.reads.count(),
        "presence": Presence.objects.filter(message=m).count(),
        "audit": AuditEvent.objects.filter(mailbox_id=w.foreign_box.pk).count(),
        "memberships": sorted(Membership.objects.filter(mailbox=w.foreign_box).values_list("pk", flat=True)),
        "absence": Absence.objects.filter(pk=w.foreign_absence.pk).values_list("ends_at", flat=True).first(),
        "notifications": list(Notification.objects.filter(user=w.foreign_owner).values_list("pk", "read_at")),
        "outgoing": sorted(
            OutgoingMessage.objects.filter(mailbox=w.foreign_box).values_list("pk", "state", "version", "subject")
        ),
        "outgoing_attachments": OutgoingAttachment.objects.filter(outgoing__mailbox=w.foreign_box).count(),
    }


# --- the table covers the URLconf ------------------------------------------------------------------------------


def test_every_mailbox_url_has_an_expectation():
    names = mailbox_url_names()
    assert len(names) == len(set(names)), "two mailbox URLs share a name"
    assert set(names) == set(ROUTES), "add the new URL to ROUTES with the role it needs"


# --- members: role below → 403, role enough → success and the change happens -----------------------------------


ROUTE_METHODS = [(name, method) for name in sorted(ROUTES) for method in ROUTES[name].methods]


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "method"), ROUTE_METHODS)
def test_member_gets_what_the_role_allows(name, method, role, client):
    route = ROUTES[name]
    w = build_world(role)
    route.prepare(w)
    w.message.refresh_from_db()
    client.force_login(w.user)

    response = send(client, method, url_for(name, w, foreign=False), route.data(w) if method == "POST" else None)

    if Membership.RANK[role] >= Membership.RANK[route.role]:
        assert 200 <= response.status_code < 400, response.status_code
        if route.done and method == "POST":
            assert route.done(w), f"{method} {name} as {role} answered {response.status_code} but did nothing"
    else:
        assert response.status_code == route.refused, response.status_code
        if route.done and method == "POST":
            assert not route.done(w), f"{method} {name} as {role} was refused but happened anyway"


# --- strangers: someone else's object is 404 for every role, and nothing there changes ---------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_stranger_gets_404_and_changes_nothing(name, role, client):
    route = ROUTES[name]
    w = build_world(role)
    Message.objects.filter(pk=w.message.pk).update(assignee=w.user)
    client.force_login(w.user)
    before = foreign_state(w)
    foreign_version = w.foreign_message.version

    for method in route.methods:
        data = {
            "version": foreign_version,
            "assignee": w.foreign_owner.pk,
            "state": Message.State.DONE,
            "body": "x",
            "substitute": w.foreign_owner.pk,
            "starts_at": _local(timedelta(days=10)),
            "ends_at": _local(timedelta(days=12)),
            "user": w.newcomer.username,
            "role": Role.OWNER,
        }
        response = send(client, method, url_for(name, w, foreign=True), data if method == "POST" else None)
        content = response.content.decode(errors="replace") if not response.streaming else ""

        if route.kind in ("list", "user"):
            # Pages without an object: they answer, and show nothing of the stranger's mailbox.
            assert response.status_code != 404
            assert FOREIGN_SUBJECT not in content and "Fremdstation" not in content and "Fremdling" not in content
        else:
            assert response.status_code == 404, (method, response.status_code)
            assert FOREIGN_SUBJECT not in content
    assert foreign_state(w) == before


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", ["inbox", "mine", "mailbox-messages"])
def test_lists_show_own_messages_never_foreign_ones(name, role, client):
    w = build_world(role)
    # Assigned to the user in both mailboxes: "Mir zugewiesen" must still only show what they may see.
    Message.objects.filter(pk=w.message.pk).update(assignee=w.user)
    client.force_login(w.user)
    url = url_for(name, w, foreign=False)
    own = {w.message.pk}
    for query, expected in [("", own), ("?q=Fremdgeheimnis", set()), ("?q=Entlassbrief", own), ("?sort=subject", own)]:
        html = client.get(url + query).content.decode()
        assert {int(pk) for pk in re.findall(r'id="msg-(\d+)"', html)} == expected, query
        # The search box echoes the query; beyond that the stranger's subject appears nowhere.
        assert html.count(FOREIGN_SUBJECT) == html.count(f'value="{FOREIGN_SUBJECT}"') + html.count(
            f"q={FOREIGN_SUBJECT}"
        ), query


@pytest.mark.django_db
def test_stranger_cannot_name_a_stranger_as_substitute(client):
    w = build_world(Role.PROCESSOR)
    client.force_login(w.user)
    data = {
        "substitute": w.foreign_owner.pk,
        "starts_at": _local(timedelta(days=1)),
        "ends_at": _local(timedelta(days=2)),
    }
    response = client.post(reverse("mailbox:absences"), data)
    assert response.status_code == 422
    assert not Absence.objects.filter(user=w.user, substitute=w.foreign_owner).exists()


@pytest.mark.django_db
def test_owner_cannot_remove_a_foreign_membership_through_their_own_mailbox(client):
    w = build_world(Role.OWNER)
    client.force_login(w.user)
    url = reverse("mailbox:mailbox-member-remove", args=[w.box.pk, w.foreign_membership.pk])
    assert client.post(url).status_code == 404
    assert Membership.objects.filter(pk=w.foreign_membership.pk).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.PROCESSOR, Role.OWNER])
def test_nobody_can_make_a_stranger_responsible(role, client):
    w = build_world(role)
    client.force_login(w.user)
    url = reverse("mailbox:message-assign", args=[w.message.pk])
    response = client.post(url, {"version": 1, "assignee": w.foreign_owner.pk}, headers={"HX-Request": "true"})
    # The choice is refused (as for any id that is no working member), not the assigner's role.
    assert response.status_code == 422
    assert _msg(w).assignee is None


@pytest.mark.django_db
def test_attachment_position_of_another_message_is_404(client):
    w = build_world(Role.OWNER)
    client.force_login(w.user)
    position = w.message.attachments.get().position
    assert client.get(reverse("mailbox:attachment-download", args=[w.message.pk, position + 1])).status_code == 404


@pytest.mark.django_db
def test_inactive_mailbox_is_404_for_its_own_owner(client):
    w = build_world(Role.OWNER)
    w.box.is_active = False
    w.box.save()
    client.force_login(w.user)
    assert client.get(reverse("mailbox:mailbox-messages", args=[w.box.pk])).status_code == 404
    assert client.get(reverse("mailbox:message-detail", args=[w.message.pk])).status_code == 404


# --- methods and login -----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_methods_the_view_does_not_serve_are_405(name, client):
    route = ROUTES[name]
    w = build_world(Role.OWNER)
    client.force_login(w.user)
    url = url_for(name, w, foreign=False)
    for method in ("GET", "POST", "PUT", "DELETE"):
        if method in route.methods:
            continue
        before = (_msg(w).claimed_by_id, _msg(w).version, Membership.objects.count(), Absence.objects.count())
        response = send(client, method, url)
        assert response.status_code == 405, (method, response.status_code)
        assert (_msg(w).claimed_by_id, _msg(w).version, Membership.objects.count(), Absence.objects.count()) == before


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_anonymous_is_sent_to_login(name, client):
    route = ROUTES[name]
    w = build_world(Role.OWNER)
    url = url_for(name, w, foreign=False)
    for method in route.methods:
        response = send(client, method, url, route.data(w) if method == "POST" else None)
        if method == "POST" and "/nachricht/" in url:
            # An htmx request: the whole page goes to the login, nothing is swapped into the fragment.
            assert response.status_code == 200 and response["HX-Redirect"].startswith(reverse("login"))
            continue
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login") + "?next=")
    assert not AuditEvent.objects.exists()


# --- websockets ------------------------------------------------------------------------------------------------

WS_ROUTES = {"ws/inbox/": InboxConsumer, "ws/message/<int:pk>/": MessageConsumer}


def test_every_websocket_route_has_an_expectation():
    routes = {str(p.pattern): p.callback.consumer_class for p in websocket_urlpatterns}
    # The signing app's sockets have their walker in tests/signing/test_permissions.py.
    assert {k: v for k, v in routes.items() if not k.startswith("ws/signing/")} == WS_ROUTES


@pytest_asyncio.fixture
async def _close_async_connection():
    yield
    # Consumers and setup ran in asgiref's worker thread; its connection would outlive the test database.
    await database_sync_to_async(lambda: connection.close())()


def async_db(test):
    """An async test on the real database, through its own connection (Channels runs ORM calls in a thread)."""
    for mark in (
        pytest.mark.usefixtures("_close_async_connection"),
        pytest.mark.django_db(transaction=True),
        pytest.mark.asyncio,
    ):
        test = mark(test)
    return test


async def _open(consumer, path: str, user, **url_kwargs) -> tuple[WebsocketCommunicator, bool, int | None]:
    communicator = WebsocketCommunicator(consumer.as_asgi(), path)
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"args": (), "kwargs": url_kwargs}
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


@async_db
@pytest.mark.parametrize("role", ROLES)
async def test_message_socket_accepts_members_of_every_role(role):
    w = await database_sync_to_async(build_world)(role)
    socket, connected, _ = await _open(MessageConsumer, f"/ws/message/{w.message.pk}/", w.user, pk=w.message.pk)
    assert connected
    assert await database_sync_to_async(Presence.objects.filter(message=w.message, user=w.user).count)() == 1
    await socket.disconnect()


@async_db
@pytest.mark.parametrize("role", ROLES)
async def test_message_socket_refuses_strangers(role):
    w = await database_sync_to_async(build_world)(role)
    pk = w.foreign_message.pk
    # Accepted, then closed with 4404: a handshake refused would reach the browser as 1006, which htmx retries.
    socket, connected, code = await _open(MessageConsumer, f"/ws/message/{pk}/", w.user, pk=pk)
    assert (connected, code) == (True, None)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}
    assert not await database_sync_to_async(Presence.objects.filter(user=w.user).exists)()
    # A pk that does not exist looks exactly the same.
    missing = pk + 10_000
    socket, connected, code = await _open(MessageConsumer, f"/ws/message/{missing}/", w.user, pk=missing)
    assert (connected, code) == (True, None)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}


@async_db
@pytest.mark.parametrize(("consumer", "path"), [(InboxConsumer, "/ws/inbox/"), (MessageConsumer, "/ws/message/1/")])
async def test_sockets_refuse_anonymous(consumer, path):
    socket, connected, code = await _open(consumer, path, AnonymousUser(), pk=1)
    # Accepted, then closed with 4401 (htmx does not reconnect on it, as it would on a refused handshake's 1006).
    assert (connected, code) == (True, None)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert not await database_sync_to_async(Presence.objects.exists)()
    # Let the refused consumer end, as a server does when the client is gone.
    await socket.disconnect()


@async_db
async def test_inbox_events_reach_only_the_mailboxs_members():
    w = await database_sync_to_async(build_world)(None)

    def members_of_every_role():
        users = {}
        for role in ROLES:
            users[role] = UserFactory(username=f"ws-{role}")
            MembershipFactory(mailbox=w.box, user=users[role], role=role)
        leaver = UserFactory(username="ws-leaver")
        users["leaver"] = leaver
        MembershipFactory(mailbox=w.box, user=leaver, role=Role.PROCESSOR)
        return users

    users = await database_sync_to_async(members_of_every_role)()
    inboxes = {key: (await _open(InboxConsumer, "/ws/inbox/", user))[0] for key, user in users.items()}
    for socket in inboxes.values():
        # Each page shows the message's row (portal.js says so on connect).
        await watch_rows(socket, [w.message.pk])
    # Not members: the stranger owns another mailbox; the leaver is removed after connecting.
    stranger, connected, _ = await _open(InboxConsumer, "/ws/inbox/", w.foreign_owner)
    assert connected
    # The stranger's page shows their own mailbox's message (and, trying its luck, ours).
    await watch_rows(stranger, [w.foreign_message.pk, w.message.pk])
    await database_sync_to_async(Membership.objects.filter(user=users["leaver"]).delete)()

    # A change (a note), a lock and a presence in the mailbox: each is an event for its members.
    await database_sync_to_async(notes.note_add)(user=w.colleague, message=w.message, body="Befund da")
    for role in ROLES:
        html = await inboxes[role].receive_from(timeout=5)
        assert f'id="msg-{w.message.pk}"' in html and OWN_SUBJECT in html
    await database_sync_to_async(claims.message_claim)(user=w.colleague, message=w.message)
    for role in ROLES:
        html = await inboxes[role].receive_from(timeout=5)
        assert f'id="msg-{w.message.pk}"' in html and "Karl Kollege" in html
    detail, connected, _ = await _open(MessageConsumer, f"/ws/message/{w.message.pk}/", w.colleague, pk=w.message.pk)
    assert connected
    for role in ROLES:
        html = await inboxes[role].receive_from(timeout=5)
        assert f'id="row-presence-{w.message.pk}"' in html

    assert await stranger.receive_nothing(timeout=0.5)
    assert await inboxes["leaver"].receive_nothing(timeout=0.1)

    # The account status line of the mailbox goes to its members; the leaver at most gets their own navigation.
    await database_sync_to_async(events.broadcast_account_status)(mailbox_id=w.box.pk)
    for role in ROLES:
        assert f'id="account-status-{w.box.pk}"' in await inboxes[role].receive_from(timeout=5)
    if not await inboxes["leaver"].receive_nothing(timeout=0.5):
        html = await inboxes["leaver"].receive_from()
        assert f'id="account-status-{w.box.pk}"' not in html and "Kardiologie" not in html
    assert await stranger.receive_nothing(timeout=0.1)

    # And the other way round: the stranger's mailbox tells the members nothing.
    await database_sync_to_async(claims.message_release)(user=w.foreign_owner, message=w.foreign_message)
    assert await stranger.receive_from(timeout=5)
    for role in ROLES:
        assert await inboxes[role].receive_nothing(timeout=0.1)

    for socket in [*inboxes.values(), stranger, detail]:
        await socket.disconnect()


@async_db
async def test_message_socket_events_stop_when_membership_ends():
    w = await database_sync_to_async(build_world)(Role.READER)
    watcher, connected, _ = await _open(MessageConsumer, f"/ws/message/{w.message.pk}/", w.user, pk=w.message.pk)
    assert connected
    # Once it listens, the socket draws the lock panel as it is (sent as the socket is accepted).
    assert 'id="lock-panel"' in await watcher.receive_from(timeout=5)
    await database_sync_to_async(claims.message_claim)(user=w.colleague, message=w.message)
    assert "Karl Kollege" in await watcher.receive_from(timeout=5)

    await database_sync_to_async(Membership.objects.filter(user=w.user).delete)()
    await database_sync_to_async(claims.message_release)(user=w.colleague, message=w.message)
    # The next event finds the ex-member without access: the socket closes instead of sending the panel.
    output = await watcher.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4403}
    await watcher.disconnect()


@async_db
@pytest.mark.parametrize("change", ["reader", "observer", "removed"])
async def test_heartbeat_after_losing_the_processor_role_keeps_the_socket_and_does_not_renew(change):
    w = await database_sync_to_async(build_world)(Role.PROCESSOR)
    await database_sync_to_async(claims.message_claim)(user=w.user, message=w.message)
    page, connected, _ = await _open(MessageConsumer, f"/ws/message/{w.message.pk}/", w.user, pk=w.message.pk)
    assert connected
    # Once it listens, the socket draws the lock panel as it is (mailbox.consumers.message).
    assert 'id="lock-panel"' in await page.receive_from(timeout=5)
    expires = (await database_sync_to_async(_msg)(w)).claim_expires_at
    mine = Membership.objects.filter(mailbox=w.box, user=w.user)
    if change == "removed":
        await database_sync_to_async(mine.delete)()
    else:
        await database_sync_to_async(mine.update)(role=change)

    seen_before = (await database_sync_to_async(Presence.objects.get)(user=w.user)).last_seen
    # A plain heartbeat (no change of "writing", so no presence event is sent back to this page).
    await page.send_to(text_data=json.dumps({"writing": False}))

    # Wait until the consumer has processed the frame (it refreshes the presence row) before judging it.
    for _ in range(100):
        if (await database_sync_to_async(Presence.objects.get)(user=w.user)).last_seen > seen_before:
            break
        await page.receive_nothing(timeout=0.05)
    else:
        pytest.fail("the heartbeat was never processed")
    # The page's socket must survive (a crash would leave presence and lock behind until they time out) …
    assert await page.receive_nothing(timeout=0.2)
    # … and the lease of someone who may no longer work the message is not renewed.
    assert (await database_sync_to_async(_msg)(w)).claim_expires_at <= expires
    await page.disconnect()
    assert (await database_sync_to_async(_msg)(w)).claimed_by is None
    assert not await database_sync_to_async(Presence.objects.filter(user=w.user).exists)()


# --- the managers' pages (Leitung): 404 for everyone who is not a manager ---------------------------------------


def manage_url_patterns() -> list[URLPattern]:
    """Every URL pattern in the `manage` namespace (/leitung/), found recursively from the root URLconf."""
    found: list[URLPattern] = []

    def walk(patterns, namespaces: tuple[str, ...]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, (*namespaces, p.namespace) if p.namespace else namespaces)
            elif isinstance(p, URLPattern) and namespaces[:1] == ("manage",):
                found.append(p)

    walk(get_resolver().url_patterns, ())
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("role", [*ROLES, None])
def test_manager_pages_are_404_for_everyone_else(role, client):
    """Owners included: administering the house is the manager permission, not a mailbox role."""
    w = build_world(role)
    client.force_login(w.user)
    patterns = manage_url_patterns()
    assert patterns, "the manager pages are not in the URLconf"
    before = foreign_state(w)
    for p in patterns:
        # Any int argument gets a real object's pk (the mailbox's; for a user or group route it is a real id too).
        kwargs = {name: w.box.pk for name in p.pattern.converters}
        url = reverse(f"manage:{p.name}", kwargs=kwargs)
        for method in ("GET", "POST"):
            response = client.get(url) if method == "GET" else client.post(url, {})
            assert response.status_code == 404, (method, url, response.status_code)
    assert foreign_state(w) == before


def leitung_url_patterns_outside_manage() -> list[tuple[str, URLPattern]]:
    """URLs under /leitung/ that other apps mount there (the audit's search and export), with their namespace."""
    found: list[tuple[str, URLPattern]] = []

    def walk(patterns, prefix: str, namespaces: tuple[str, ...]) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route, (*namespaces, p.namespace) if p.namespace else namespaces)
            elif route.startswith("leitung/") and namespaces[:1] != ("manage",):
                found.append((":".join(namespaces), p))

    walk(get_resolver().url_patterns, "", ())
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("role", [*ROLES, None])
def test_other_apps_pages_under_leitung_are_404_for_everyone_else(role, client):
    w = build_world(role)
    client.force_login(w.user)
    patterns = leitung_url_patterns_outside_manage()
    assert {namespace for namespace, _ in patterns} >= {"audit"}, "the audit pages are not under /leitung/"
    before = foreign_state(w)
    for namespace, p in patterns:
        url = reverse(f"{namespace}:{p.name}", kwargs={name: w.box.pk for name in p.pattern.converters})
        for response in (client.get(url), client.post(url, {})):
            assert response.status_code == 404, (url, response.status_code)
    assert foreign_state(w) == before
