"""The signing app's permission walker: every URL from the resolver, a stranger gets 404 for someone else's draft or
batch and for the managers' pages, and nothing of theirs changes or is recorded; every websocket route of the app
refuses strangers."""

from __future__ import annotations

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from audit.models import AuditEvent
from kimportal.routing import websocket_urlpatterns
from mailbox.services.ingest import message_ingest
from signing.consumers import BatchConsumer, QueueConsumer
from signing.models import Draft, ReceivedSignature, ReviewRule, SignatureBatch, SignerCard, Workplace
from signing.models.comfort import ComfortActivation
from tests.mailbox.factories import MailboxFactory, UserFactory
from tests.mailbox.mails import MAIL_WITH_PDF
from tests.signing.factories import DraftFactory, SignerCardFactory, WorkplaceFactory

# What each route's int argument names, and whether only managers may use it at all.
ROUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "queue": ("list", ("GET",)),
    "drafts": ("list", ("GET",)),
    "draft-create": ("list", ("GET", "POST")),
    "draft-detail": ("draft", ("GET",)),
    "draft-edit": ("draft", ("GET", "POST")),
    "draft-document": ("draft", ("GET",)),
    "draft-signed": ("draft", ("GET",)),
    "batch-start": ("list", ("POST",)),
    "batches": ("list", ("GET",)),
    "batch": ("batch", ("GET",)),
    "batch-cancel": ("batch", ("POST",)),
    "workplace-choose": ("list", ("POST",)),
    "manage-cards": ("manager", ("GET", "POST")),
    "manage-card-remove": ("manager-card", ("POST",)),
    "manage-workplaces": ("manager", ("GET", "POST")),
    "manage-workplace-edit": ("manager-workplace", ("GET", "POST")),
    # Review before signature and the versions (issue 12).
    "draft-withdraw": ("draft", ("POST",)),
    "review-approve": ("draft", ("POST",)),
    "review-return": ("draft", ("POST",)),
    "review-request": ("draft", ("POST",)),
    "draft-versions": ("draft", ("GET",)),
    "draft-version": ("draft-version", ("GET",)),
    "draft-version-document": ("draft-version", ("GET",)),
    "draft-compare": ("draft", ("GET",)),
    "review-queue": ("list", ("GET", "POST")),
    "review-rules": ("manager", ("GET", "POST")),
    "review-rule-remove": ("manager-rule", ("POST",)),
    # Signatures on received letters: check again (a message of someone else's mailbox).
    "received-verify": ("message", ("POST",)),
    # Komfortsignatur: one's own page and activation; someone else's activation cannot be ended (404).
    "comfort": ("list", ("GET",)),
    "comfort-activate": ("list", ("POST",)),
    "comfort-deactivate": ("comfort", ("POST",)),
    # Orphaned drafts: only owners of the draft's mailbox see the page or act (a processor of it gets 404).
    "orphans": ("owner", ("GET",)),
    "orphan-take-over": ("draft", ("POST",)),
    "orphan-withdraw": ("draft", ("POST",)),
}


def signing_url_names() -> list[str]:
    found: list[str] = []

    def walk(patterns, namespaces: tuple[str, ...]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, (*namespaces, p.namespace) if p.namespace else namespaces)
            elif isinstance(p, URLPattern) and namespaces == ("signing",):
                found.append(p.name or f"<unnamed {p.pattern}>")

    walk(get_resolver().url_patterns, ())
    return found


def test_every_signing_url_has_an_expectation():
    assert set(signing_url_names()) == set(ROUTES)


def build_foreign(mailbox) -> dict:
    """Someone else's world: a physician with a draft and a batch, a card mapping and a workplace."""
    owner = UserFactory(username="fremdaerztin")
    SignerCardFactory(user=owner)
    draft = DraftFactory(author=owner, signer=owner, mailbox=mailbox)
    workplace = WorkplaceFactory(workplace_id="AP-fremd")
    batch = SignatureBatch.objects.create(signer=owner, workplace=workplace, total=1, job_number="ABC-123")
    rule = ReviewRule.objects.create(mailbox=mailbox, document_type="eau")
    # A letter in a mailbox none of the test's users belongs to (the physician is a member of *mailbox*).
    message = message_ingest(mailbox=MailboxFactory(), uidl="fremd-1", raw=MAIL_WITH_PDF)
    return {
        "owner": owner,
        "draft": draft,
        "batch": batch,
        "card": owner.signer_card,
        "workplace": workplace,
        "rule": rule,
        "message": message,
        "comfort": ComfortActivation.objects.create(signer=owner, workplace=workplace, state="active"),
    }


def url_kwargs(kind: str, f: dict) -> dict:
    """The URL arguments of a route of this kind, naming the foreign world's objects."""
    return {
        "list": {},
        "manager": {},
        "owner": {},
        "draft": {"pk": f["draft"].pk},
        "draft-version": {"pk": f["draft"].pk, "number": 1},
        "batch": {"pk": f["batch"].pk},
        "manager-card": {"pk": f["card"].pk},
        "manager-workplace": {"pk": f["workplace"].pk},
        "manager-rule": {"pk": f["rule"].pk},
        "message": {"pk": f["message"].pk},
        "comfort": {"pk": f["comfort"].pk} if "comfort" in f else {},
    }[kind]


@pytest.fixture
def foreign(mailbox) -> dict:
    return build_foreign(mailbox)


def _state(f) -> tuple:
    draft = Draft.objects.get(pk=f["draft"].pk)
    batch = SignatureBatch.objects.get(pk=f["batch"].pk)
    return (
        draft.version,
        draft.state,
        batch.state,
        batch.cancel_requested_at,
        SignerCard.objects.filter(pk=f["card"].pk).exists(),
        Workplace.objects.get(pk=f["workplace"].pk).label,
        AuditEvent.objects.filter(details__draft=draft.pk).count(),
        draft.review_state,
        ReviewRule.objects.filter(pk=f["rule"].pk).exists(),
        ReceivedSignature.objects.filter(message=f["message"]).count(),
        AuditEvent.objects.filter(message_id=f["message"].pk).count(),
        ComfortActivation.objects.get(pk=f["comfort"].pk).state,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["stranger", "physician"])
def test_someone_elses_objects_are_404_and_unchanged(client, foreign, who, request):
    user = request.getfixturevalue(who)
    client.force_login(user)
    before = _state(foreign)
    checked = 0
    for name, (kind, methods) in ROUTES.items():
        if kind == "list":
            continue
        url = reverse(f"signing:{name}", kwargs=url_kwargs(kind, foreign))
        for method in methods:
            response = client.get(url) if method == "GET" else client.post(url, {"version": 1, "label": "x"})
            assert response.status_code == 404, (name, method, response.status_code)
            checked += 1
    assert checked == sum(len(methods) for kind, methods in ROUTES.values() if kind != "list")
    assert _state(foreign) == before


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client, foreign):
    for name, (kind, methods) in ROUTES.items():
        url = reverse(f"signing:{name}", kwargs=url_kwargs(kind, foreign))
        for method in methods:
            response = client.get(url) if method == "GET" else client.post(url, {})
            assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    assert not AuditEvent.objects.exists()


WS_ROUTES = {"ws/signing/queue/": QueueConsumer, "ws/signing/batch/<int:pk>/": BatchConsumer}


def test_the_apps_websocket_routes_are_these():
    routes = {str(p.pattern): p.callback.consumer_class for p in websocket_urlpatterns}
    assert {k: v for k, v in routes.items() if k.startswith("ws/signing/")} == WS_ROUTES


@pytest_asyncio.fixture
async def _close_async_connection():
    yield
    await database_sync_to_async(lambda: connection.close())()


async def _open(consumer, path: str, user, **kwargs):
    communicator = WebsocketCommunicator(consumer.as_asgi(), path)
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"args": (), "kwargs": kwargs}
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


def async_db(test):
    """An async test on the real database (as tests/mailbox/test_permissions.py does it)."""
    for mark in (
        pytest.mark.usefixtures("_close_async_connection"),
        pytest.mark.django_db(transaction=True),
        pytest.mark.asyncio,
    ):
        test = mark(test)
    return test


@async_db
async def test_batch_socket_refuses_strangers_and_anonymous(mailbox):
    f = await database_sync_to_async(build_foreign)(mailbox)
    stranger = await database_sync_to_async(UserFactory)(username="fremd2")
    socket, connected, code = await _open(BatchConsumer, "/", stranger, pk=f["batch"].pk)
    assert (connected, code) == (True, None)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4404}
    # Signed out: accepted, then closed with 4401 (htmx reconnects on a refused handshake's 1006, not on 4401).
    socket, connected, code = await _open(BatchConsumer, "/", AnonymousUser(), pk=f["batch"].pk)
    assert (connected, code) == (True, None)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await socket.disconnect()
    socket, connected, code = await _open(QueueConsumer, "/", AnonymousUser())
    assert (connected, code) == (True, None)
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await socket.disconnect()
