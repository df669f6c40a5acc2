"""Fetching over the simulator's real POP3 (TLS with a pinned certificate)."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from mailbox.models import FetchFailure, KimAccount, Message
from mailbox.services.fetch import account_fetch, account_lease_acquire, accounts_due_claim
from mailbox.storage import blob_get
from tests.mailbox.conftest import HOSPITAL, send_as_practice, simple_mail
from tests.mailbox.corpus import HOSTILE_CORPUS

# Real commits: "DELE only after commit" and the on-commit events run as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def test_fetch_stores_messages_and_deletes_them_on_the_server(cm, account):
    for i in range(3):
        cm.deliver(HOSPITAL, simple_mail(f"Befund {i}"))
    uidls = cm.maildrop_uidls(HOSPITAL)

    result = account_fetch(account_id=account.pk)

    assert result.error == ""
    assert len(result.stored) == 3
    stored = Message.objects.filter(mailbox=account.mailbox)
    assert sorted(stored.values_list("uidl", flat=True)) == sorted(uidls)
    assert sorted(stored.values_list("subject", flat=True)) == ["Befund 0", "Befund 1", "Befund 2"]
    assert cm.maildrop_uidls(HOSPITAL) == []
    account.refresh_from_db()
    assert account.status == KimAccount.Status.OK
    assert account.last_success_at is not None
    assert account.fetch_lease_until is None


def _listen(mailbox_id: int):
    """A channel in the mailbox's group, and a function that returns what reached it (then leaves).

    The channel lives on one event loop of its own, as a server process's sockets do: the Pub/Sub layer keeps
    channels and subscriptions per loop.
    """
    import asyncio

    import redis
    from channels.layers import get_channel_layer
    from django.conf import settings

    from mailbox.events import mailbox_group

    layer = get_channel_layer()
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    def run(coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    listener = run(layer.new_channel())
    run(layer.group_add(mailbox_group(mailbox_id), listener))
    # SUBSCRIBE is not acknowledged inline: wait (bounded) until Redis counts the subscription.
    client = redis.Redis.from_url(settings.REDIS_URL)
    name = f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}__group__{mailbox_group(mailbox_id)}"
    for _ in range(500):
        if client.pubsub_numsub(name)[0][1]:
            break
        threading.Event().wait(0.01)
    client.close()

    async def drain() -> list[dict]:
        received = []
        while True:
            try:
                received.append(await asyncio.wait_for(layer.receive(listener), timeout=1))
            except TimeoutError:
                await layer.group_discard(mailbox_group(mailbox_id), listener)
                return received

    def received() -> list[dict]:
        try:
            return run(drain())
        finally:
            loop.call_soon_threadsafe(loop.stop)

    return received


def test_a_fetch_round_is_announced_in_one_event_after_its_commit(cm, account):
    received = _listen(account.mailbox_id)
    for i in range(3):
        cm.deliver(HOSPITAL, simple_mail(f"Angekündigt {i}"))

    result = account_fetch(account_id=account.pk)

    events = [e for e in received() if e["type"] in ("message.created", "messages.created")]
    assert [e["type"] for e in events] == ["messages.created"], "one event for the round, none per mail"
    assert sorted(events[0]["message_ids"]) == sorted(result.stored)
    assert Message.objects.filter(pk__in=events[0]["message_ids"]).count() == 3


def test_a_long_round_is_announced_batch_by_batch(cm, account, settings):
    settings.KIMPORTAL_FETCH_BATCH_MESSAGES = 2
    received = _listen(account.mailbox_id)
    for i in range(5):
        cm.deliver(HOSPITAL, simple_mail(f"Stapel {i}"))

    result = account_fetch(account_id=account.pk)

    batches = [e["message_ids"] for e in received() if e["type"] == "messages.created"]
    assert [len(ids) for ids in batches] == [2, 2, 1]
    assert [pk for ids in batches for pk in ids] == result.stored
    assert cm.maildrop_uidls(HOSPITAL) == []


def test_live_updates_go_out_on_one_kept_event_loop_not_one_per_event(cm, account):
    from mailbox import events

    received = _listen(account.mailbox_id)
    loops = []
    for round_number in range(3):
        cm.deliver(HOSPITAL, simple_mail(f"Runde {round_number}"))
        account_fetch(account_id=account.pk)
        loops.append(events._sender._loop)

    assert len([e for e in received() if e["type"] == "messages.created"]) == 3
    # One loop (and so one Redis connection pool) for all of them, not a new loop and thread per event.
    assert loops[0] is not None and loops.count(loops[0]) == 3
    assert [t.name for t in threading.enumerate()].count("events-sender") == 1


def test_the_lease_is_renewed_by_time_not_per_mail(cm, account):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for i in range(10):
        cm.deliver(HOSPITAL, simple_mail(f"Zehn {i}"))

    with CaptureQueriesContext(connection) as queries:
        result = account_fetch(account_id=account.pk)

    assert len(result.stored) == 10
    lease_writes = [q["sql"] for q in queries if "UPDATE" in q["sql"] and '"fetch_lease_token"' in q["sql"]]
    # Acquire and release only; renewals come from the lease keeper's clock (its own connection).
    assert len(lease_writes) == 2, lease_writes


def test_the_lease_keeper_notices_when_another_fetch_took_the_account(account):
    from mailbox.services.fetch import LeaseLost, _LeaseKeeper

    token = account_lease_acquire(account_id=account.pk)
    keeper = _LeaseKeeper(account.pk, token)
    assert keeper.renew()
    keeper.check()
    # Our lease ran out while we stalled, and another worker took the account over.
    KimAccount.objects.filter(pk=account.pk).update(fetch_lease_token="another-worker")

    assert not keeper.renew()
    with pytest.raises(LeaseLost):
        keeper.check()


def test_a_fetch_whose_lease_was_lost_commits_and_deletes_nothing_more(cm, account):
    from mailbox.services.fetch import FetchResult, LeaseLost, _fetch, _LeaseKeeper

    cm.deliver(HOSPITAL, simple_mail("Nicht doppelt"))
    token = account_lease_acquire(account_id=account.pk)
    keeper = _LeaseKeeper(account.pk, token)
    KimAccount.objects.filter(pk=account.pk).update(fetch_lease_token="another-worker")
    keeper.renew()

    with pytest.raises(LeaseLost):
        _fetch(account, keeper, FetchResult(account_id=account.pk))

    assert Message.objects.count() == 0
    assert len(cm.maildrop_uidls(HOSPITAL)) == 1


def test_a_fetch_inside_a_transaction_is_refused_before_any_dele(cm, account):
    from django.db import transaction

    from mailbox.services.fetch import FetchInTransaction

    cm.deliver(HOSPITAL, simple_mail("Nicht löschen"))
    with pytest.raises(FetchInTransaction), transaction.atomic():
        account_fetch(account_id=account.pk)
    assert len(cm.maildrop_uidls(HOSPITAL)) == 1


def test_raw_message_is_kept_byte_exact(cm, account):
    raw = simple_mail("Roh")
    cm.deliver(HOSPITAL, raw)
    account_fetch(account_id=account.pk)
    message = Message.objects.get()
    stored = blob_get(message.raw_sha256)
    assert stored.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert message.size == len(stored)


def test_second_fetch_is_idempotent(cm, account):
    cm.deliver(HOSPITAL, simple_mail("Einmal"))
    account_fetch(account_id=account.pk)
    second = account_fetch(account_id=account.pk)
    assert second.stored == []
    assert Message.objects.count() == 1


def test_keep_on_server_keeps_until_due_then_deletes(cm, account):
    account.keep_on_server_days = 3
    account.save()
    cm.deliver(HOSPITAL, simple_mail("Bleibt"))
    account_fetch(account_id=account.pk)
    assert len(cm.maildrop_uidls(HOSPITAL)) == 1
    account_fetch(account_id=account.pk)
    assert Message.objects.count() == 1, "a message kept on the server must not be stored twice"
    Message.objects.update(received_at=timezone.now() - timedelta(days=4))
    account_fetch(account_id=account.pk)
    assert cm.maildrop_uidls(HOSPITAL) == []


def test_cm_headers_are_evaluated_after_smtp_delivery(cm, account):
    send_as_practice(cm, simple_mail("Über SMTP", X_KIM_Dienstkennung="Arztbrief;VHitG-Versand;V1.2"))
    account_fetch(account_id=account.pk)
    message = Message.objects.get()
    assert message.dienstkennung == "Arztbrief;VHitG-Versand;V1.2"
    assert message.decryption_results == ["00"]
    assert message.integrity_results == ["01"]
    assert not message.has_security_warning


def test_tampered_message_is_flagged_with_the_original_attached(cm, account):
    send_as_practice(cm, simple_mail("Manipuliert", X_Tisim_Fault="integrity"))
    account_fetch(account_id=account.pk)
    message = Message.objects.get()
    assert message.integrity_results == ["08"]
    assert message.has_security_warning
    assert [a.content_type for a in message.attachments.all()] == ["message/rfc822"]


def test_connection_dropped_during_retr_loses_nothing_and_stalls_nothing(cm, account):
    uidls = [cm.deliver(HOSPITAL, simple_mail(f"Teil {i}", body="x" * 5000)) for i in range(3)]
    cm.inject_fault(HOSPITAL, "drop_retr", after_bytes=200, times=1)

    first = account_fetch(account_id=account.pk)

    # The broken message waits on the server; the others came over a new connection.
    assert first.error == ""
    assert sorted(Message.objects.values_list("uidl", flat=True)) == sorted(uidls[1:])
    assert cm.maildrop_uidls(HOSPITAL) == [uidls[0]], "nothing unstored may be deleted"
    failure = FetchFailure.objects.get()
    assert (failure.uidl, failure.tries) == (uidls[0], 1)
    assert "abgebrochen" in failure.last_error_text
    account.refresh_from_db()
    assert account.status == KimAccount.Status.OK

    FetchFailure.objects.update(next_try_at=timezone.now())
    second = account_fetch(account_id=account.pk)
    assert second.error == ""
    assert Message.objects.count() == 3
    assert cm.maildrop_uidls(HOSPITAL) == []
    assert not FetchFailure.objects.exists(), "a message stored at last is no longer shown as failing"


def test_server_down_marks_account_unreachable_and_backs_off(cm, account):
    cm.deliver(HOSPITAL, simple_mail("Vorher"))
    account_fetch(account_id=account.pk)
    account.refresh_from_db()
    last_success = account.last_success_at
    cm.stop()

    result = account_fetch(account_id=account.pk)
    assert "nicht erreichbar" in result.error
    account.refresh_from_db()
    assert account.status == KimAccount.Status.UNREACHABLE
    assert account.last_success_at == last_success
    first_delay = account.next_fetch_at - account.last_attempt_at
    account_fetch(account_id=account.pk)
    account.refresh_from_db()
    assert account.consecutive_failures == 2
    assert account.next_fetch_at - account.last_attempt_at > first_delay

    cm.start()
    account_fetch(account_id=account.pk)
    account.refresh_from_db()
    assert account.status == KimAccount.Status.OK
    assert account.consecutive_failures == 0


def test_wrong_password_is_an_auth_failure(cm, account):
    account.set_password("falsch")
    account.save()
    result = account_fetch(account_id=account.pk)
    account.refresh_from_db()
    assert account.status == KimAccount.Status.AUTH_FAILED
    assert "Passwort" in result.error


def test_fingerprint_mismatch_stops_the_fetch_and_needs_an_administrator(cm, account):
    cm.deliver(HOSPITAL, simple_mail("Nicht abholen"))
    account.tls_fingerprint_sha256 = "00" * 32
    account.save()
    result = account_fetch(account_id=account.pk)
    assert "Fingerabdruck" in result.error
    assert Message.objects.count() == 0
    assert len(cm.maildrop_uidls(HOSPITAL)) == 1
    account.refresh_from_db()
    assert account.status == KimAccount.Status.ERROR


def test_fetch_is_skipped_while_another_holds_the_lease(cm, account):
    cm.deliver(HOSPITAL, simple_mail("Später"))
    assert account_lease_acquire(account_id=account.pk) is not None
    result = account_fetch(account_id=account.pk)
    assert result.skipped_busy
    assert Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_fetches_store_each_message_once(cm, account):
    for i in range(20):
        cm.deliver(HOSPITAL, simple_mail(f"Parallel {i}"))
    barrier = threading.Barrier(4)
    results = []

    def run() -> None:
        barrier.wait()
        results.append(account_fetch(account_id=account.pk))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(r.stored) for r in results) == 20
    assert sum(1 for r in results if not r.skipped_busy) >= 1
    assert Message.objects.count() == 20


def test_due_accounts_are_claimed_once(account):
    assert accounts_due_claim() == [account.pk]
    assert accounts_due_claim() == [], "a claimed account is not due again before its interval"
    KimAccount.objects.filter(pk=account.pk).update(next_fetch_at=timezone.now() - timedelta(seconds=1))
    assert accounts_due_claim() == [account.pk]


@pytest.mark.parametrize("case", sorted(HOSTILE_CORPUS))
def test_hostile_mail_is_stored_through_pop3_and_never_crashes_ingest(cm, account, case):
    raw = HOSTILE_CORPUS[case]()
    cm.deliver(HOSPITAL, raw)
    cm.deliver(HOSPITAL, simple_mail("Danach"))
    result = account_fetch(account_id=account.pk)
    assert result.error == ""
    assert Message.objects.count() == 2, "the hostile mail and the one after it are both stored"
    hostile = Message.objects.exclude(subject="Danach").get()
    assert blob_get(hostile.raw_sha256)  # raw kept and checksum-verified
    assert "<script" not in hostile.html_body.lower()


def test_unreachable_port_is_reported(account):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    account.pop3_port = port
    account.save()
    result = account_fetch(account_id=account.pk)
    assert "nicht erreichbar" in result.error


def test_a_reused_uidl_with_another_size_is_new_mail_not_deleted_unseen(cm, account):
    uidl = cm.deliver(HOSPITAL, simple_mail("Neue Nachricht, alte UIDL"))
    # Earlier, another (smaller) message was stored under the same UIDL and deleted on the server.
    Message.objects.create(mailbox=account.mailbox, uidl=uidl, pop3_size=10, raw_sha256="0" * 64, size=10)

    result = account_fetch(account_id=account.pk)

    assert result.error == ""
    new = Message.objects.get(subject="Neue Nachricht, alte UIDL")
    assert new.uidl.startswith(f"{uidl}~")
    assert cm.maildrop_uidls(HOSPITAL) == [], "deleted only after it was stored"
    assert Message.objects.count() == 2


def test_an_inactive_account_is_not_fetched(cm, account):
    cm.deliver(HOSPITAL, simple_mail("Bleibt liegen"))
    account.is_active = False
    account.save()
    result = account_fetch(account_id=account.pk)
    assert "abgeschaltet" in result.error
    assert len(cm.maildrop_uidls(HOSPITAL)) == 1
    assert Message.objects.count() == 0


def test_an_unexpected_error_is_visible_and_backs_off(cm, account, settings, tmp_path):
    cm.deliver(HOSPITAL, simple_mail("Platte kaputt"))
    # The blob store cannot be written (here: its directory is a file); no row may name missing bytes.
    (tmp_path / "not-a-directory").write_bytes(b"")
    settings.KIMPORTAL_BLOB_DIR = tmp_path / "not-a-directory" / "blobs"

    result = account_fetch(account_id=account.pk)

    assert "Interner Fehler" in result.error
    account.refresh_from_db()
    assert account.status == KimAccount.Status.ERROR
    assert account.consecutive_failures == 1
    assert Message.objects.count() == 0, "no row without its blob"
    assert len(cm.maildrop_uidls(HOSPITAL)) == 1, "nothing deleted"
