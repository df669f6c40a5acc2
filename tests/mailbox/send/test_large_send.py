"""A large attachment (KIM carries mail of hundreds of MB) is sent without being held in memory.

A 30 MB file is attached from disk, queued, delivered through the simulated CM's real SMTP over TLS and fetched
by the practice's portal account: the attachment arrives byte for byte. tracemalloc's peak of each step stays
far below the file's size: the upload goes to the blob store in chunks, the outgoing message (40 MB once
base64-encoded) is written into a spool file and stored, and DATA sends it from the store a chunk at a time.
Delivery runs in a worker process of its own, so its peak is the sending worker's alone (the simulated CM runs
in the test process and keeps what it receives).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files import File

from mailbox.models import Attachment, Message, OutgoingMessage
from mailbox.services.compose import (
    OutgoingData,
    outgoing_attachment_add,
    outgoing_draft_save,
    outgoing_forward_start,
)
from mailbox.services.fetch import account_fetch
from mailbox.services.outbox import outgoing_deliver, outgoing_send
from mailbox.storage import blob_path
from tests.mailbox.conftest import HOSPITAL, PRAXIS
from tests.mailbox.factories import MembershipFactory, UserFactory

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db(transaction=True)

ATTACHMENT_BYTES = 30 * 1000 * 1000
# Far below the 30 MB attachment (and the 40 MB message): a few chunks of a MiB (measured: 1.6 MB for the upload,
# 2.8 MB for the queueing, 2.3 MB for the delivery; each was above 30 MB when the message was built whole).
PEAK_LIMIT = 6_000_000


def _peak(call):
    tracemalloc.start()
    try:
        result = call()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def _deliver_in_worker(warm_up_id: int, outgoing_id: int) -> tuple[str, int]:
    """outgoing_deliver in a worker process of its own; returns its outcome and tracemalloc's peak there.

    The worker first delivers a small message, untraced: the modules a delivery imports on its way (a few MB of
    code objects) are then loaded, and the peak is the one message's.
    """
    db = settings.DATABASES["default"]
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env["KIMPORTAL_BLOB_DIR"] = str(settings.KIMPORTAL_BLOB_DIR)
    code = (
        "import tracemalloc, django; django.setup()\n"
        "from mailbox.services.outbox import outgoing_deliver\n"
        f"assert outgoing_deliver(outgoing_id={warm_up_id}) == 'sent'\n"
        "tracemalloc.start()\n"
        f"state = outgoing_deliver(outgoing_id={outgoing_id})\n"
        "print(state, tracemalloc.get_traced_memory()[1])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, timeout=240)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    state, peak = done.stdout.decode().split()[-2:]
    return state, int(peak)


def test_a_large_attachment_is_sent_intact_without_being_held_in_memory(
    cm, account, praxis_account, sender, vzd, sent_tasks, tmp_path
):
    path = tmp_path / "Aufnahmen.pdf"
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(ATTACHMENT_BYTES // 1_000_000):
            block = os.urandom(1_000_000)
            digest.update(block)
            fh.write(block)
    expected = digest.hexdigest()
    # The simulated CM takes a few seconds to check and deliver 40 MB before it answers the end of DATA.
    type(account).objects.filter(pk=account.pk).update(timeout_seconds=60)

    draft = outgoing_draft_save(
        user=sender,
        mailbox_id=account.mailbox_id,
        data=OutgoingData(subject="Große Aufnahmen", body="Anbei die Aufnahmen.\n.\n", to=[PRAXIS]),
    )
    with path.open("rb") as fh:
        attachment, upload_peak = _peak(
            lambda: outgoing_attachment_add(user=sender, draft=draft, filename="Aufnahmen.pdf", content=File(fh))
        )
    assert (attachment.sha256, attachment.size) == (expected, ATTACHMENT_BYTES)
    assert upload_peak < PEAK_LIMIT, f"upload peak {upload_peak / 1e6:.1f} MB"

    warm_up = outgoing_draft_save(
        user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Vorab", body="Text", to=[PRAXIS])
    )
    warm_up = outgoing_send(user=sender, draft=warm_up, version=None)
    queued, queue_peak = _peak(lambda: outgoing_send(user=sender, draft=draft, version=None))
    assert queued.state == OutgoingMessage.State.QUEUED
    assert queue_peak < PEAK_LIMIT, f"queue peak {queue_peak / 1e6:.1f} MB"
    with blob_path(queued.raw_sha256).open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == queued.raw_sha256
    assert queued.size == blob_path(queued.raw_sha256).stat().st_size > ATTACHMENT_BYTES * 4 // 3

    state, deliver_peak = _deliver_in_worker(warm_up.pk, queued.pk)
    assert state == OutgoingMessage.State.SENT, OutgoingMessage.objects.get(pk=queued.pk).last_error_text
    assert deliver_peak < PEAK_LIMIT, f"delivery peak {deliver_peak / 1e6:.1f} MB"
    [record] = [r for r in cm.sent_messages() if r.message_id == queued.message_id]
    assert record.recipients == [PRAXIS]
    assert cm.header_violations() == []

    # The practice's portal fetches it: the attachment is the very file, the text kept its dot line (the CM adds
    # its note on decryption and signature below it).
    assert account_fetch(account_id=praxis_account.pk).error == ""
    received = Message.objects.get(mailbox=praxis_account.mailbox, message_id=queued.message_id)
    assert received.text_body.replace("\r\n", "\n").startswith("Anbei die Aufnahmen.\n.\n")
    pdf = Attachment.objects.get(message=received)
    assert (pdf.filename, pdf.size, pdf.sha256) == ("Aufnahmen.pdf", ATTACHMENT_BYTES, expected)
    with blob_path(pdf.sha256).open("rb") as fh:
        assert hashlib.file_digest(fh, "sha256").hexdigest() == expected

    # The practice forwards the 40 MB mail it received: the original is copied into the new message from its
    # blob, unchanged, without being held either.
    colleague = UserFactory(username="praxis")
    MembershipFactory(mailbox=praxis_account.mailbox, user=colleague)
    forward = outgoing_forward_start(user=colleague, message=received)
    forward = outgoing_draft_save(
        user=colleague,
        mailbox_id=praxis_account.mailbox_id,
        data=OutgoingData(subject=forward.subject, body="Zur Kenntnis.", to=[HOSPITAL]),
        draft=forward,
        version=forward.version,
    )
    forwarded, forward_peak = _peak(lambda: outgoing_send(user=colleague, draft=forward, version=forward.version))
    assert forwarded.state == OutgoingMessage.State.QUEUED
    assert forward_peak < PEAK_LIMIT, f"forward peak {forward_peak / 1e6:.1f} MB"
    stored = blob_path(forwarded.raw_sha256).read_bytes()
    assert b"\r\n\r\n" + blob_path(received.raw_sha256).read_bytes() + b"\r\n--=_kim_" in stored


def test_a_queued_message_whose_stored_bytes_were_damaged_is_not_sent_and_stays_in_the_outbox(
    cm, account, sender, vzd, sent_tasks
):
    draft = outgoing_draft_save(
        user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(subject="Befund", body="Text", to=[PRAXIS])
    )
    outgoing_attachment_add(user=sender, draft=draft, filename="a.bin", content=os.urandom(3_000_000))
    queued = outgoing_send(user=sender, draft=draft, version=None)
    path = blob_path(queued.raw_sha256)
    raw = path.read_bytes()
    path.chmod(0o640)
    path.write_bytes(raw[:-100] + b"X" + raw[-99:])

    assert outgoing_deliver(outgoing_id=queued.pk) == OutgoingMessage.State.QUEUED
    attempt = queued.attempts.get()
    assert attempt.outcome == "temporary" and attempt.final_dot_at is None
    assert "BlobCorrupted" in OutgoingMessage.objects.get(pk=queued.pk).last_error_text
    assert cm.sent_messages() == [] and cm.maildrop_uidls(PRAXIS) == []
