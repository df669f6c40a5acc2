"""A real worker process killed in the middle of SMTP: never a lost message, never two copies.

Killed after its end-of-data sequence reached the CM (the CM delivers) but before the answer and the
database update: the message becomes "Zustellung ungewiss" and is not sent again by any later worker; the
Fachdienst's DSN then reconciles it. Killed before the message went out: it is sent again, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from mailbox.models import DeliveryAttempt, KimAccount, OutgoingMessage
from mailbox.services.compose import OutgoingData, outgoing_draft_save
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver, outgoing_recover_stale, outgoing_send
from tests.mailbox.conftest import HOSPITAL, PASSWORD, PRAXIS
from tests.mailbox.factories import KimAccountFactory, MembershipFactory, UserFactory
from tests.mailbox.send.stallproxy import StallProxy
from tisim.cm import CMSimulator

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def plain_cm(tmp_path) -> Iterator[CMSimulator]:
    sim = CMSimulator(tmp_path / "cm", accounts={HOSPITAL: PASSWORD, PRAXIS: PASSWORD}, tls=False, fachdienst=True)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _account(port: int) -> KimAccount:
    return KimAccountFactory(
        mailbox__address=HOSPITAL,
        smtp_port=port,
        pop3_port=port,
        transport=KimAccount.Transport.PLAIN,
        password=PASSWORD,
    )


def _env() -> dict[str, str]:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        pytest.fail("this test needs PostgreSQL (DATABASE_URL)")
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["KIMPORTAL_BLOB_DIR"] = str(settings.KIMPORTAL_BLOB_DIR)
    env["DJANGO_SETTINGS_MODULE"] = "tests.mailbox.send.kill_settings"
    return env


def _worker(outgoing_id: int) -> subprocess.Popen[bytes]:
    code = (
        "import django; django.setup(); from mailbox.tasks import outgoing_deliver_task; "
        f"print(outgoing_deliver_task({outgoing_id}))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def _queue(user_account, sender) -> OutgoingMessage:
    draft = outgoing_draft_save(
        user=sender, mailbox_id=user_account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=[PRAXIS])
    )
    return outgoing_send(user=sender, draft=draft, version=draft.version)


def _kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    assert worker.returncode == -signal.SIGKILL


def _copies(cm: CMSimulator, message_id: str) -> int:
    return sum(1 for r in cm.sent_messages() if r.message_id == message_id)


def test_worker_killed_after_the_end_of_data_leaves_one_copy_and_an_uncertain_entry_that_the_dsn_settles(
    plain_cm, vzd, sent_tasks
):
    proxy = StallProxy(("127.0.0.1", plain_cm.smtp_port), hold="final_dot")
    try:
        account = _account(proxy.port)
        KimAccount.objects.filter(pk=account.pk).update(pop3_port=plain_cm.pop3_port)
        sender = UserFactory(username="station")
        MembershipFactory(mailbox=account.mailbox, user=sender)
        outgoing = _queue(account, sender)

        worker = _worker(outgoing.pk)
        try:
            # The CM has the whole message (and delivered it); the worker waits for the answer.
            _wait_for(proxy.holding.is_set, 60, "the end of DATA")
            _wait_for(lambda: _copies(plain_cm, outgoing.message_id) == 1, 30, "the CM to take the message")
            _wait_for(lambda: len(plain_cm.maildrop_uidls(PRAXIS)) == 1, 30, "the delivery")
        finally:
            _kill(worker)
        attempt = DeliveryAttempt.objects.get(outgoing=outgoing)
        assert attempt.final_dot_at is not None and attempt.outcome == "running"
        assert OutgoingMessage.objects.get(pk=outgoing.pk).state == OutgoingMessage.State.SENDING

        # The dead worker's lease runs out; the beat's recovery does not send it again but says "ungewiss".
        _wait_for(lambda: outgoing_recover_stale() == [] and _state(outgoing) == "uncertain", 30, "the recovery")
        # A second worker process (a duplicate task, a restarted worker) does not send it either.
        again = _worker(outgoing.pk)
        out, _ = again.communicate(timeout=120)
        assert again.returncode == 0, out
        assert out.decode().strip().splitlines()[-1] == "uncertain"
        assert _copies(plain_cm, outgoing.message_id) == 1
        assert len(plain_cm.maildrop_uidls(PRAXIS)) == 1
    finally:
        proxy.close()

    # The DSN of the one delivered copy settles it.
    KimAccount.objects.filter(pk=account.pk).update(smtp_port=plain_cm.smtp_port)
    assert account_fetch(account_id=account.pk).error == ""
    assert _state(outgoing) == OutgoingMessage.State.DELIVERED


def test_worker_killed_before_the_message_went_out_is_sent_again_exactly_once(plain_cm, vzd, sent_tasks):
    proxy = StallProxy(("127.0.0.1", plain_cm.smtp_port), hold="data")
    try:
        account = _account(proxy.port)
        sender = UserFactory(username="station")
        MembershipFactory(mailbox=account.mailbox, user=sender)
        outgoing = _queue(account, sender)
        worker = _worker(outgoing.pk)
        try:
            _wait_for(proxy.holding.is_set, 60, "the DATA command")
            _wait_for(lambda: DeliveryAttempt.objects.filter(outgoing=outgoing).exists(), 30, "the attempt row")
        finally:
            _kill(worker)
    finally:
        proxy.close()
    assert DeliveryAttempt.objects.get(outgoing=outgoing).final_dot_at is None

    _wait_for(lambda: outgoing_recover_stale() == [outgoing.pk], 30, "the recovery to queue it again")
    assert DeliveryAttempt.objects.get(outgoing=outgoing, number=1).outcome == "aborted"
    KimAccount.objects.filter(pk=account.pk).update(smtp_port=plain_cm.smtp_port)
    assert outgoing_deliver(outgoing_id=outgoing.pk) == OutgoingMessage.State.SENT
    assert _copies(plain_cm, outgoing.message_id) == 1
    assert len(plain_cm.maildrop_uidls(PRAXIS)) == 1


def _state(outgoing: OutgoingMessage) -> str:
    return OutgoingMessage.objects.get(pk=outgoing.pk).state
