"""Received signatures through the real path: the sending practice's ``tisim send --sign`` → the simulated CM's
SMTP → the portal's POP3 fetch and ingest → the messages_ingested signal → the task (eager here) → the simulated
Konnektor's VerifyDocument over its socket → the stored result → the message page, the live socket and the audit.

The Konnektor simulator shares its data directory with the CM, so the sending physician's QES certificate comes
from the QES CA the Konnektor trusts (as in the demo)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import current_app
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone, translation

from audit.models import AuditEvent
from mailbox.extensions import messages_ingested
from mailbox.models import KimAccount, Membership, Message
from mailbox.services.fetch import account_fetch
from signing.models import ReceivedSignature
from signing.services import received as received_service
from signing.services.received import (
    messages_with_candidates,
    on_messages_ingested,
    received_signatures_dispatch,
    received_signatures_retry_due,
    received_signatures_verify,
)
from tests.fixtures.konnektor_sim import WORKPLACE, sample_pdf
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tests.signing.factories import WorkplaceFactory
from tisim.__main__ import main as tisim_main
from tisim.cm import CMSimulator
from tisim.konnektor import KonnektorSimulator
from tisim.signedmail import DEFAULT_SIGNER

pytestmark = pytest.mark.django_db(transaction=True)

HOSPITAL = "kardiologie@klinikum-test.kim.telematik-test"
PRAXIS = "praxis.mueller@praxis-mueller.kim.telematik-test"
PASSWORD = "kim-secret"
GOOD = f"QES von {DEFAULT_SIGNER} — gültig"


# --- the world: CM and Konnektor simulators sharing one data directory, a KIM account, a member -------------------


@pytest.fixture
def ti_dir(tmp_path: Path) -> Path:
    return tmp_path / "ti"


@pytest.fixture
def cm(ti_dir: Path) -> Iterator[CMSimulator]:
    sim = CMSimulator(ti_dir, accounts={HOSPITAL: PASSWORD, PRAXIS: PASSWORD}, tls=True)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def konnektor(konnektor_sim_factory: Callable[..., KonnektorSimulator], ti_dir: Path, settings) -> KonnektorSimulator:
    sim = konnektor_sim_factory(mode="plain", data_dir=ti_dir)
    settings.KIMPORTAL_KONNEKTOR_URL = sim.base_url
    settings.KIMPORTAL_KONNEKTOR_MODE = "plain"
    settings.KIMPORTAL_KONNEKTOR_MANDANT = sim.mandant_id
    settings.KIMPORTAL_KONNEKTOR_CLIENT_SYSTEM = sim.client_system_id
    settings.KIMPORTAL_KONNEKTOR_TIMEOUT = 10.0
    return sim


@pytest.fixture
def workplace(db):
    # The first active workstation is the verification's WorkplaceId (no setting): the one the simulator serves.
    return WorkplaceFactory(workplace_id=WORKPLACE)


@pytest.fixture
def account(cm: CMSimulator) -> KimAccount:
    return KimAccountFactory(
        mailbox__address=HOSPITAL,
        mailbox__display_name="Kardiologie",
        smtp_port=cm.smtp_port,
        pop3_port=cm.pop3_port,
        transport=KimAccount.Transport.IMPLICIT_TLS,
        tls_certificate_check=KimAccount.CertificateCheck.PINNED,
        tls_fingerprint_sha256=cm.fingerprint,
        password=PASSWORD,
    )


@pytest.fixture
def member(account: KimAccount):
    user = UserFactory(username="station", first_name="Sina", last_name="Station")
    MembershipFactory(mailbox=account.mailbox, user=user, role=Membership.Role.PROCESSOR)
    return user


@pytest.fixture(autouse=True)
def eager() -> Iterator[None]:
    """Tasks run in place, as in a one-process setup: the fetch's signal queues the check and it runs."""
    before = current_app.conf.task_always_eager
    current_app.conf.task_always_eager = True
    try:
        yield
    finally:
        current_app.conf.task_always_eager = before


def send(cm: CMSimulator, tmp_path: Path, *args: str, files: dict[str, bytes], subject: str = "Arztbrief") -> None:
    """python -m tisim send from Praxis Müller to the hospital (in process: the same code as the CLI)."""
    paths = []
    for name, content in files.items():
        path = tmp_path / "out" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        paths.append(str(path))
    argv = ["send", "--data-dir", str(cm.data_dir), "--from", PRAXIS, "--to", HOSPITAL, "--subject", subject]
    assert tisim_main([*argv, *args, *(["--attach", *paths] if paths else [])]) == 0


def fetch(account: KimAccount) -> list[Message]:
    result = account_fetch(account_id=account.pk)
    assert result.error == "", result.error
    return list(Message.objects.filter(pk__in=result.stored).order_by("pk"))


def page(client: Client, user: Any, message: Message) -> str:
    client.force_login(user)
    response = client.get(reverse("mailbox:message-detail", args=[message.pk]))
    assert response.status_code == 200
    return response.content.decode()


def verdicts(html: str) -> list[str]:
    return [" ".join(v.split()) for v in re.findall(r'class="received-signature-verdict">(.*?)</strong>', html, re.S)]


# --- good, tampered, unsigned -------------------------------------------------------------------------------------


def test_a_pades_letter_is_checked_by_the_konnektor_and_the_page_shows_who_signed(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    send(cm, tmp_path, "--sign", files={"Entlassbrief Müller.pdf": sample_pdf("Entlassbrief")})

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.kind, row.status, row.result) == ("pades", "valid", "VALID")
    assert row.signer_name == DEFAULT_SIGNER and row.is_qes
    assert row.filename == "Entlassbrief Müller.pdf" and row.reason_text == ""
    assert row.signer_certificate and row.checked_at is not None and row.next_try_at is None
    assert verdicts(page(client, member, message)) == [GOOD]
    [event] = AuditEvent.objects.filter(action="signing.received_verified")
    assert event.message_id == message.pk and event.actor_id is None, "the automatic check is the system's"
    assert event.details["status"] == "valid" and event.details["signer"] == DEFAULT_SIGNER
    assert event.details["file"] == "Entlassbrief Müller.pdf"


def test_a_document_with_a_detached_p7s_is_checked_as_cades(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    send(cm, tmp_path, "--sign", files={"befund.xml": b"<befund><kalium>4.1</kalium></befund>"})

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.kind, row.status, row.filename) == ("cades_detached", "valid", "befund.xml")
    assert row.signature_position is not None and row.signature_position != row.document_position
    assert row.signer_name == DEFAULT_SIGNER and row.is_qes
    html = page(client, member, message)
    assert verdicts(html) == [GOOD]
    assert "Signaturdatei (CAdES, .p7s)" in html


def test_a_pdf_changed_after_signing_is_invalid_with_the_reason(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    send(cm, tmp_path, "--fault", "bad-signature", files={"brief.pdf": sample_pdf("Befund")})

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.status, row.result) == ("invalid", "INVALID")
    assert row.reason_text, "the Konnektor's reason is kept"
    [verdict] = verdicts(page(client, member, message))
    assert verdict.startswith(f"QES von {DEFAULT_SIGNER} — ungültig: ")
    assert row.reason_text in verdict
    assert AuditEvent.objects.get(action="signing.received_verified").details["status"] == "invalid"


def test_a_document_changed_beside_its_p7s_is_invalid(cm, konnektor, workplace, account, member, client, tmp_path):
    send(cm, tmp_path, "--fault", "bad-signature", files={"befund.txt": b"Kalium 4,1 mmol/l\n"})

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.kind, row.status) == ("cades_detached", "invalid")
    assert "— ungültig: " in verdicts(page(client, member, message))[0]


def test_an_unsigned_pdf_has_no_signature_and_the_page_says_nothing_about_one(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    send(cm, tmp_path, files={"brief.pdf": sample_pdf("Unsigniert")})
    konnektor.stop()  # an unsigned letter is never sent to the Konnektor: its being down changes nothing

    [message] = fetch(account)

    assert not ReceivedSignature.objects.exists()
    html = page(client, member, message)
    assert verdicts(html) == []
    assert 'id="received-signatures"' in html and "QES" not in html
    assert not AuditEvent.objects.filter(action__startswith="signing.received").exists()


def test_a_letter_without_candidate_attachments_gets_no_task_and_no_panel(
    cm, konnektor, workplace, account, member, client, tmp_path, monkeypatch
):
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(received_service, "enqueue_on_commit", lambda *args: queued.append(args))
    send(cm, tmp_path, files={"notiz.txt": b"Bitte um Rueckruf"})

    [message] = fetch(account)

    assert queued == []
    assert 'id="received-signatures"' not in page(client, member, message)


# --- the Konnektor down: "nicht prüfbar", tried again --------------------------------------------------------------


def test_konnektor_down_is_not_verifiable_and_tried_again_when_due(
    cm, konnektor, workplace, account, member, client, tmp_path, settings
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    reachable = settings.KIMPORTAL_KONNEKTOR_URL
    settings.KIMPORTAL_KONNEKTOR_URL = "http://127.0.0.1:9"  # nothing listens there

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.status, row.attempts) == ("unverifiable", 1)
    assert row.next_try_at is not None and row.next_try_at > timezone.now()
    assert row.signer_name == DEFAULT_SIGNER, "who signed is read from the signature itself meanwhile"
    [verdict] = verdicts(page(client, member, message))
    assert verdict.startswith(f"QES von {DEFAULT_SIGNER} — nicht prüfbar: ")
    assert "Konnektor" in verdict

    # Not due yet: the sweep leaves it; still down when due: a second attempt, a later next try.
    assert received_signatures_retry_due() == 0
    first_next = row.next_try_at
    assert received_signatures_retry_due(now=first_next + timedelta(seconds=1)) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("unverifiable", 2)
    assert row.next_try_at - timezone.now() > first_next - row.checked_at - timedelta(seconds=5)

    # Back again: the next due try finds it valid and ends the retries.
    settings.KIMPORTAL_KONNEKTOR_URL = reachable
    assert received_signatures_retry_due(now=row.next_try_at + timedelta(seconds=1)) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_try_at) == ("valid", 0, None)
    assert verdicts(page(client, member, message)) == [GOOD]
    statuses = list(
        AuditEvent.objects.filter(action="signing.received_verified")
        .order_by("pk")
        .values_list("details__status", flat=True)
    )
    assert statuses == ["unverifiable", "unverifiable", "valid"], "every check is audited"


def test_two_sweeps_never_queue_one_message_twice(cm, konnektor, workplace, account, tmp_path, settings, monkeypatch):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    settings.KIMPORTAL_KONNEKTOR_URL = "http://127.0.0.1:9"
    [message] = fetch(account)
    due = ReceivedSignature.objects.get(message=message).next_try_at + timedelta(seconds=1)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(received_service, "enqueue_on_commit", lambda *args: queued.append(args))

    assert received_signatures_retry_due(now=due) == 1
    assert received_signatures_retry_due(now=due) == 0
    assert queued == [("signing.tasks.signing_received_verify", message.pk, True)]


def test_without_a_workplace_it_is_not_verifiable_and_says_what_to_set_up(
    cm, konnektor, account, member, client, tmp_path
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})

    [message] = fetch(account)

    row = ReceivedSignature.objects.get(message=message)
    assert row.status == "unverifiable" and row.next_try_at is not None
    assert "kein Arbeitsplatz" in row.reason_text


def test_why_a_signature_could_not_be_checked_is_shown_in_the_readers_language(
    cm, konnektor, account, member, client, tmp_path
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    with translation.override("de"):  # the worker's language
        [message] = fetch(account)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    [english] = verdicts(html.unescape(page(client, member, message)))
    assert "No workstation is set up for signature verification" in english and "Arbeitsplatz" not in english
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"
    [german] = verdicts(html.unescape(page(client, member, message)))
    assert "Für die Signaturprüfung ist kein Arbeitsplatz eingerichtet" in german
    [event] = AuditEvent.objects.filter(action="signing.received_verified")
    assert event.details["reason"]["msgid"].startswith("Für die Signaturprüfung ist kein Arbeitsplatz")


def test_the_verify_workplace_setting_wins_over_the_first_workplace(cm, konnektor, account, member, tmp_path, settings):
    WorkplaceFactory(workplace_id="AP-unbekannt", label="A")  # the Konnektor does not know this one
    settings.KIMPORTAL_KONNEKTOR_VERIFY_WORKPLACE = WORKPLACE
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})

    [message] = fetch(account)

    assert ReceivedSignature.objects.get(message=message).status == "valid"


# --- on demand: permission, CSRF, audit, live ---------------------------------------------------------------------


def test_a_member_has_it_checked_again_and_both_checks_are_audited(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    first = ReceivedSignature.objects.get(message=message).checked_at
    client.force_login(member)

    response = client.post(reverse("signing:received-verify", args=[message.pk]), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert verdicts(response.content.decode()) == [GOOD]
    row = ReceivedSignature.objects.get(message=message)
    assert row.checked_at > first
    requested = AuditEvent.objects.get(action="signing.received_verify_requested")
    assert (requested.actor_id, requested.message_id) == (member.pk, message.pk)
    again = AuditEvent.objects.filter(action="signing.received_verified").order_by("pk").last()
    assert again.actor_id == member.pk, "the check asked for is recorded as that person's"


def test_without_htmx_the_redo_goes_back_to_the_message(cm, konnektor, workplace, account, member, client, tmp_path):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    client.force_login(member)

    response = client.post(reverse("signing:received-verify", args=[message.pk]))

    assert response.status_code == 302
    assert response["Location"] == reverse("mailbox:message-detail", args=[message.pk])


@pytest.mark.parametrize("who", ["outsider", "ex-member"])
def test_an_outsider_or_ex_member_gets_404_and_nothing_happens(
    cm, konnektor, workplace, account, member, client, tmp_path, who
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    if who == "outsider":
        user = UserFactory(username="fremd")
        MembershipFactory(user=user)  # a member elsewhere
    else:
        user = member
        Membership.objects.filter(user=member).delete()
    client.force_login(user)
    before = list(ReceivedSignature.objects.values_list("status", "checked_at"))
    events = AuditEvent.objects.count()

    response = client.post(reverse("signing:received-verify", args=[message.pk]))

    assert response.status_code == 404
    assert list(ReceivedSignature.objects.values_list("status", "checked_at")) == before
    assert AuditEvent.objects.count() == events
    assert client.get(reverse("mailbox:message-detail", args=[message.pk])).status_code == 404


def test_the_redo_needs_the_csrf_token_and_a_post(cm, konnektor, workplace, account, member, tmp_path):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(member)
    url = reverse("signing:received-verify", args=[message.pk])

    assert guarded.post(url).status_code == 403
    assert guarded.get(url).status_code == 405
    assert not AuditEvent.objects.filter(action="signing.received_verify_requested").exists()


def test_anonymous_is_sent_to_login(cm, konnektor, workplace, account, tmp_path, client):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    response = client.post(reverse("signing:received-verify", args=[message.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


async def _message_socket(user, message_id: int) -> WebsocketCommunicator:
    from mailbox.consumers import MessageConsumer

    communicator = WebsocketCommunicator(MessageConsumer.as_asgi(), f"/ws/message/{message_id}/")
    communicator.scope["user"] = user
    communicator.scope["url_route"] = {"kwargs": {"pk": message_id}}
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def _receive_until(communicator: WebsocketCommunicator, needle: str, timeout: float = 10) -> str:
    seen = []
    while True:
        try:
            html = await communicator.receive_from(timeout=timeout)
        except TimeoutError:
            raise AssertionError(f"{needle!r} not among {seen}") from None
        if needle in html:
            return html
        seen.append(html[:300])


@pytest.mark.asyncio
async def test_an_open_message_page_follows_the_check_live(cm, konnektor, workplace, account, member, tmp_path):
    await database_sync_to_async(send)(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    current_app.conf.task_always_eager = False  # the fetch stores; the check runs below, while the page is open
    try:
        [message] = await database_sync_to_async(fetch)(account)
    finally:
        current_app.conf.task_always_eager = True
    outsider = await database_sync_to_async(UserFactory)(username="fremd")
    await database_sync_to_async(MembershipFactory)(user=outsider)
    socket = await _message_socket(member, message.pk)

    await database_sync_to_async(received_signatures_verify)(message_id=message.pk)

    # Each event makes the socket re-read the panel as it is then (the rows pending, later the result).
    done = await _receive_until(socket, "— gültig")
    assert 'id="received-signatures"' in done and 'hx-swap-oob="true"' in done
    assert GOOD in " ".join(done.split())
    await socket.disconnect()


@pytest.mark.asyncio
async def test_a_removed_member_gets_no_live_panel(cm, konnektor, workplace, account, member, tmp_path):
    await database_sync_to_async(send)(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    current_app.conf.task_always_eager = False
    try:
        [message] = await database_sync_to_async(fetch)(account)
    finally:
        current_app.conf.task_always_eager = True
    socket = await _message_socket(member, message.pk)
    # Once it listens, the socket draws the lock panel as it is (sent as the socket is accepted).
    assert 'id="lock-panel"' in await socket.receive_from(timeout=5)
    await database_sync_to_async(lambda: Membership.objects.filter(user=member).delete())()

    await database_sync_to_async(received_signatures_verify)(message_id=message.pk)

    # The socket re-checks the role per event: the ex-member's page closes instead of receiving the panel.
    output = await socket.receive_output(timeout=5)
    assert output == {"type": "websocket.close", "code": 4403}
    await socket.disconnect()


# --- the extension point: one signal per fetch round, cheap -------------------------------------------------------


def test_ingest_sends_one_signal_per_fetch_round_with_all_new_ids(cm, account, settings, monkeypatch):
    settings.KIMPORTAL_FETCH_BATCH_MESSAGES = 1  # three batches, three commits: still one signal for the round
    monkeypatch.setattr(received_service, "enqueue_on_commit", lambda *args: None)
    calls: list[dict[str, Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        assert not connection.in_atomic_block, "sent after commit, outside any transaction"
        calls.append(kwargs)

    messages_ingested.connect(receiver, dispatch_uid="test-receiver")
    try:
        for n in range(3):
            cm.deliver(HOSPITAL, f"From: {PRAXIS}\r\nTo: {HOSPITAL}\r\nSubject: Brief {n}\r\n\r\nText\r\n".encode())
        result = account_fetch(account_id=account.pk)
        assert len(calls) == 1
        assert calls[0]["mailbox_id"] == account.mailbox_id
        assert sorted(calls[0]["message_ids"]) == sorted(result.stored) and len(result.stored) == 3

        account_fetch(account_id=account.pk)  # nothing new: no signal
        assert len(calls) == 1
    finally:
        messages_ingested.disconnect(dispatch_uid="test-receiver")


def test_a_failing_receiver_does_not_fail_the_fetch(cm, account, monkeypatch):
    monkeypatch.setattr(received_service, "enqueue_on_commit", lambda *args: None)

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    messages_ingested.connect(broken, dispatch_uid="test-broken")
    try:
        cm.deliver(HOSPITAL, f"From: {PRAXIS}\r\nTo: {HOSPITAL}\r\nSubject: x\r\n\r\nText\r\n".encode())
        result = account_fetch(account_id=account.pk)
        assert result.error == "" and len(result.stored) == 1
        assert cm.maildrop_uidls(HOSPITAL) == []
    finally:
        messages_ingested.disconnect(dispatch_uid="test-broken")


def test_the_receiver_reads_a_whole_round_with_one_query(cm, account, tmp_path, monkeypatch):
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(received_service, "enqueue_on_commit", lambda *args: queued.append(args))
    # Stored without the signal, to count the receiver's own queries.
    monkeypatch.setattr("mailbox.services.fetch.messages_ingested_send", lambda **kwargs: None)
    send(cm, tmp_path, files={"a.pdf": sample_pdf("A")}, subject="PDF")
    send(cm, tmp_path, files={"b.txt": b"b", "b.txt.p7s": b"x"}, subject="p7s")
    send(cm, tmp_path, files={"c.p7m": b"x"}, subject="p7m")
    for n in range(20):
        send(cm, tmp_path, files={f"n{n}.txt": b"kein Kandidat"}, subject=f"Text {n}")
    stored = account_fetch(account_id=account.pk).stored
    assert len(stored) == 23

    with CaptureQueriesContext(connection) as queries:
        on_messages_ingested(Message, mailbox_id=account.mailbox_id, message_ids=stored)

    assert len(queries) == 1
    # One task for the round (not one per message: the fetch's speed is a measured target) …
    [(name, candidates)] = queued
    assert name == "signing.tasks.signing_received_dispatch"
    subjects = dict(Message.objects.values_list("pk", "subject"))
    assert sorted(subjects[pk] for pk in candidates) == ["PDF", "p7m", "p7s"]
    assert messages_with_candidates([]) == []
    # … which gives each candidate a task of its own, in the worker.
    queued.clear()
    assert received_signatures_dispatch(message_ids=candidates) == 3
    assert queued == [("signing.tasks.signing_received_verify", pk) for pk in candidates]


# --- the other shapes, and hostile or odd input -------------------------------------------------------------------


def test_an_enveloping_p7m_is_checked_with_the_document_inside(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    from tisim.konnektor.signatures import cades
    from tisim.signedmail import signer_certificate

    signed = cades(b"<befund>4.1</befund>", signer_certificate(cm.data_dir), short_text="befund", include_content=True)
    send(cm, tmp_path, files={"befund.xml.p7m": signed})

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.kind, row.status, row.filename) == ("cades_enveloping", "valid", "befund.xml.p7m")
    assert verdicts(page(client, member, message)) == [GOOD]


def test_a_p7m_that_is_no_signature_is_not_reported(cm, konnektor, workplace, account, tmp_path):
    send(cm, tmp_path, files={"verschluesselt.p7m": b"\x30\x03\x02\x01\x00 kein SignedData"})

    [message] = fetch(account)

    assert not ReceivedSignature.objects.filter(message=message).exists()


def test_a_p7s_without_its_document_is_not_verifiable_and_not_retried(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    from tisim.konnektor.signatures import cades
    from tisim.signedmail import signer_certificate

    signature = cades(b"weg", signer_certificate(cm.data_dir), short_text="brief")
    send(cm, tmp_path, files={"brief.txt.p7s": signature, "anderes.txt": b"a", "drittes.txt": b"b"})

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.kind, row.status, row.next_try_at) == ("cades_detached", "unverifiable", None)
    assert row.signer_name == DEFAULT_SIGNER, "read from the signature itself"
    assert "fehlt das signierte Dokument" in row.reason_text
    assert "— nicht prüfbar: Zur Signaturdatei" in verdicts(page(client, member, message))[0]


def test_a_broken_p7s_is_sent_to_the_konnektor_and_not_called_valid(cm, konnektor, workplace, account, tmp_path):
    send(cm, tmp_path, files={"brief.txt": b"Hallo", "brief.txt.p7s": b"kein CMS"})

    [message] = fetch(account)

    row = ReceivedSignature.objects.get(message=message)
    assert row.status in ("invalid", "unverifiable") and row.reason_text
    assert row.next_try_at is None, "the Konnektor's answer about a signature is not retried"


def test_a_signed_pdf_over_the_konnektors_limit_is_not_sent(
    cm, konnektor, workplace, account, member, client, tmp_path, settings
):
    settings.KIMPORTAL_SIGNING_MAX_DOCUMENT_BYTES = 2000
    send(cm, tmp_path, "--sign", files={"gross.pdf": sample_pdf("Gross")})
    konnektor.stop()  # never asked

    [message] = fetch(account)

    [row] = ReceivedSignature.objects.filter(message=message)
    assert (row.status, row.next_try_at) == ("unverifiable", None)
    assert "zu groß" in row.reason_text


def test_a_message_whose_content_was_deleted_is_not_checked_again(
    cm, konnektor, workplace, account, member, client, tmp_path
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    Message.objects.filter(pk=message.pk).update(content_deleted_at=timezone.now())
    checked = ReceivedSignature.objects.get(message=message).checked_at
    client.force_login(member)

    response = client.post(reverse("signing:received-verify", args=[message.pk]), HTTP_HX_REQUEST="true")

    assert response.status_code == 422
    assert "gelöscht" in response.content.decode()
    assert received_signatures_verify(message_id=message.pk, force=True) == 0
    assert ReceivedSignature.objects.get(message=message).checked_at == checked
    assert not AuditEvent.objects.filter(action="signing.received_verify_requested").exists()


def test_the_panel_shows_a_running_check(cm, konnektor, workplace, account, member, client, tmp_path):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    ReceivedSignature.objects.filter(message=message).update(status="pending")

    html = page(client, member, message)

    assert verdicts(html) == [f"Signatur von {DEFAULT_SIGNER} wird geprüft …"]
    assert re.search(r'<button type="submit" id="received-signatures-redo" disabled>', html)


def test_a_second_request_while_a_check_runs_queues_nothing(
    cm, konnektor, workplace, account, member, client, tmp_path, monkeypatch
):
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    queued: list[tuple[Any, ...]] = []
    monkeypatch.setattr(received_service, "enqueue_on_commit", lambda *args: queued.append(args))
    client.force_login(member)
    url = reverse("signing:received-verify", args=[message.pk])

    first = client.post(url, HTTP_HX_REQUEST="true")
    second = client.post(url, HTTP_HX_REQUEST="true")

    assert first.status_code == second.status_code == 200
    assert 'id="received-signatures-redo" disabled' in second.content.decode()
    assert queued == [("signing.tasks.signing_received_verify", message.pk, True, member.pk)]
    assert AuditEvent.objects.filter(action="signing.received_verify_requested").count() == 1
    # A check whose worker died holds the rows only for its lease; then asking again works.
    ReceivedSignature.objects.filter(message=message).update(next_try_at=timezone.now() - timedelta(seconds=1))
    assert client.post(url, HTTP_HX_REQUEST="true").status_code == 200
    assert len(queued) == 2


def test_a_konnektor_setting_pointing_nowhere_is_not_verifiable_and_tried_again(
    cm, konnektor, workplace, account, tmp_path, settings
):
    settings.KIMPORTAL_KONNEKTOR_CA = str(tmp_path / "fehlt.pem")
    send(cm, tmp_path, "--sign", files={"brief.pdf": sample_pdf("Befund")})

    [message] = fetch(account)

    row = ReceivedSignature.objects.get(message=message)
    assert row.status == "unverifiable" and row.next_try_at is not None, "no check is left 'running'"
    assert "Interner Fehler bei der Prüfung (FileNotFoundError)" in row.reason_text


def test_retention_deletes_the_checked_signatures_with_the_content(cm, konnektor, workplace, account, member, tmp_path):
    from mailbox.services.retention import retention_run

    send(cm, tmp_path, "--sign", files={"Entlassbrief Müller.pdf": sample_pdf("Befund")})
    [message] = fetch(account)
    assert ReceivedSignature.objects.filter(message=message).exists()
    account.mailbox.retention_days_after_done = 30
    account.mailbox.save(update_fields=["retention_days_after_done"])
    Message.objects.filter(pk=message.pk).update(state="done", done_at=timezone.now() - timedelta(days=31))

    assert retention_run(mailbox=account.mailbox, dry_run=False).messages == 1

    assert not ReceivedSignature.objects.filter(message=message).exists(), "file names and signers go too"
    assert received_signatures_verify(message_id=message.pk, force=True) == 0
    assert not ReceivedSignature.objects.exists()


def test_a_mail_with_many_signatures_keeps_the_konnektor_busy_only_so_long(
    cm, konnektor, workplace, account, tmp_path, monkeypatch
):
    monkeypatch.setattr(received_service, "MAX_SIGNATURES_PER_MESSAGE", 2)
    send(cm, tmp_path, "--sign", files={f"befund-{n}.txt": f"Befund {n}".encode() for n in range(3)})
    # Nor the worker's memory: the files beyond the limit are not read at all (each could be 25 MB).
    read: list[str] = []
    real_read = received_service._read
    monkeypatch.setattr(received_service, "_read", lambda a: read.append(a.filename) or real_read(a))

    [message] = fetch(account)

    assert ReceivedSignature.objects.filter(message=message).count() == 2
    assert len(read) == 4, read  # two signatures and their two documents


def test_a_hostile_signer_name_is_shown_as_text(cm, konnektor, workplace, account, member, client, tmp_path):
    send(cm, tmp_path, "--sign", "--signer", "<script>alert(1)</script>", files={"brief.pdf": sample_pdf("X")})

    [message] = fetch(account)

    html = page(client, member, message)
    assert "<script>alert(1)</script>" not in html
    assert "QES von &lt;script&gt;alert(1)&lt;/script&gt; — gültig" in " ".join(html.split())
