"""The send path's pieces that stream: whatever the chunks' edges, they give what the whole-message code gave.

The references below are the whole-message transformations the send path used before it streamed (the email
package's attachment part, the regexes over the whole message); each streaming piece is fed the same bytes cut
at every position (and in random pieces) and must give exactly their bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import re

import pytest

from mailbox.clients.smtp import MessageSource, MessageUnreadable, dot_stuffed, smtp_send
from mailbox.services.accounts import account_endpoint
from mailbox.services.compose import (
    DraftInvalid,
    OutgoingData,
    _file_part,
    _file_part_chunks,
    _part_bytes,
    base64_lines,
    crlf_lines,
    outgoing_attachment_add,
    outgoing_draft_save,
)
from mailbox.storage import (
    BlobCorrupted,
    BlobMissing,
    blob_chunks,
    blob_path,
    blob_put,
    blob_put_chunks,
)
from tests.mailbox.conftest import HOSPITAL, PRAXIS


def _stuffed_whole(raw: bytes) -> bytes:
    """What DATA carried when it was written whole."""
    data = re.sub(rb"(?:\r\n|\n|\r(?!\n))", b"\r\n", raw)
    data = re.sub(rb"(?m)^\.", b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _crlf_whole(original: bytes) -> bytes:
    """A forwarded original's body as the whole-message build wrote it."""
    body = re.sub(rb"\r?\n", b"\r\n", original)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def _cuts(raw: bytes) -> list[list[bytes]]:
    """*raw* whole, cut once at every position, cut into single bytes, and with empty chunks in between."""
    out = [[raw], [bytes([b]) for b in raw], [b"", raw, b""]]
    out += [[raw[:i], raw[i:]] for i in range(len(raw) + 1)]
    out += [[raw[:i], b"", raw[i:j], raw[j:]] for i in range(len(raw) + 1) for j in range(i, len(raw) + 1, 3)]
    return out


TRICKY = [
    b"",
    b".",
    b"..",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\r\n",
    b"\n.",
    b"\r\n.\r\n",
    b"a\r\n.b\r\n..c\r\n",
    b".starts with a dot\r\nand ends without a line end",
    b"bare LF\n.dot\nbare CR\r.dot\rCRLF\r\n.dot\r\n",
    b"text\r",
    b"text\r\r",
    b"\r.\n.\r\n.",
    b"Sehr geehrte \xc3\xa4rztin,\n.\n\n..\n",
]


@pytest.mark.parametrize("raw", TRICKY, ids=[repr(r)[:30] for r in TRICKY])
def test_dot_stuffing_and_line_ends_are_the_same_wherever_the_chunks_are_cut(raw):
    expected = _stuffed_whole(raw)
    for chunks in _cuts(raw):
        assert b"".join(dot_stuffed(chunks)) == expected, chunks


def test_a_dot_line_at_a_chunk_edge_is_stuffed_once_and_a_cr_ending_a_chunk_waits_for_its_lf():
    # The edge right after the LF: the next chunk starts a line with a dot.
    assert b"".join(dot_stuffed([b"one\r\n", b".two\r\n"])) == b"one\r\n..two\r\n"
    # The edge between CR and LF: one line end, and the dot behind it is still at a line's start.
    assert b"".join(dot_stuffed([b"one\r", b"\n.two"])) == b"one\r\n..two\r\n"
    # A dot in the middle of a line, right at an edge, is no line start.
    assert b"".join(dot_stuffed([b"one", b".two\r\n"])) == b"one.two\r\n"
    # A CR alone at the very end is a line end; no extra one follows.
    assert b"".join(dot_stuffed([b"one\r"])) == b"one\r\n"


def test_dot_stuffing_of_random_text_in_random_chunks():
    rng = random.Random(5321)
    alphabet = b"..\r\n\r\nab \xff"
    for _ in range(300):
        raw = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        chunks, rest = [], raw
        while rest:
            n = rng.randrange(0, 12)
            chunks.append(rest[:n])
            rest = rest[n:]
        assert b"".join(dot_stuffed(chunks)) == _stuffed_whole(raw)
        assert b"".join(crlf_lines(chunks)) == _crlf_whole(raw)


@pytest.mark.parametrize("raw", TRICKY, ids=[repr(r)[:30] for r in TRICKY])
def test_a_forwarded_originals_line_ends_are_the_same_wherever_the_chunks_are_cut(raw):
    expected = _crlf_whole(raw)
    for chunks in _cuts(raw):
        assert b"".join(crlf_lines(chunks)) == expected, chunks


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 113, 114, 115, 57 * 40, 57 * 40 + 1, 100_000])
def test_base64_lines_are_the_email_packages_whatever_the_chunk_sizes(size):
    data = os.urandom(size)
    expected = _part_bytes(_file_part(data, "Befund.pdf", "application/pdf"))
    head = _part_bytes(_file_part(b"", "Befund.pdf", "application/pdf"))
    assert expected.startswith(head)
    for step in (1, 7, 56, 57, 58, 1000, 57 * 100, max(size, 1)):
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        assert head + b"".join(base64_lines(chunks)) == expected, step
    # And read from the blob store, as the build reads an attachment.
    assert b"".join(_file_part_chunks(blob_put(data), "Befund.pdf", "application/pdf")) == expected


def test_blob_put_chunks_stores_what_blob_put_stores_in_memory_or_through_a_spool_file():
    small = os.urandom(1000)
    assert blob_put_chunks([small[:10], b"", small[10:]]) == (hashlib.sha256(small).hexdigest(), 1000)
    large = os.urandom(3 * 1024 * 1024 + 17)
    digest, size = blob_put_chunks(large[i : i + 65536] for i in range(0, len(large), 65536))
    assert (digest, size) == (hashlib.sha256(large).hexdigest(), len(large))
    assert blob_path(digest).read_bytes() == large
    assert b"".join(blob_chunks(digest, chunk_size=1000)) == large
    incoming = blob_path(digest).parents[2] / ".incoming"
    assert not any(incoming.iterdir())


def test_blob_put_chunks_keeps_nothing_when_its_input_fails():
    large = os.urandom(2 * 1024 * 1024)

    def failing():
        yield large
        raise RuntimeError("upload broke off")

    with pytest.raises(RuntimeError):
        blob_put_chunks(failing())
    assert not blob_path(hashlib.sha256(large).hexdigest()).exists()
    incoming = blob_path(hashlib.sha256(large).hexdigest()).parents[2] / ".incoming"
    assert not any(incoming.iterdir())


def test_blob_chunks_checks_the_checksum_once_read_and_names_a_missing_blob():
    data = os.urandom(5000)
    digest = blob_put(data)
    path = blob_path(digest)
    path.chmod(0o640)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    chunks = blob_chunks(digest, chunk_size=1000)
    assert len(next(chunks)) == 1000
    with pytest.raises(BlobCorrupted):
        list(chunks)
    with pytest.raises(BlobMissing):
        next(blob_chunks("0" * 64))


@pytest.mark.django_db(transaction=True)
def test_a_source_that_fails_during_data_sends_no_end_of_data_and_nothing_is_delivered(cm, account):
    body = (
        f"From: {HOSPITAL}\r\nTo: {PRAXIS}\r\nSubject: Abgebrochen\r\nMessage-ID: <abgebrochen@kim.local>\r\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n\r\n"
    ).encode() + (b"x" * 998 + b"\r\n") * 2000

    def broken():
        yield body[:1_000_000]
        raise OSError(5, "Input/output error")

    source = MessageSource(len(body), False, broken)
    with pytest.raises(MessageUnreadable):
        smtp_send(account_endpoint(account, "smtp"), mail_from=HOSPITAL, recipients=[PRAXIS], raw=source)

    def corrupted():
        yield body[:1_000_000]
        raise BlobCorrupted("0" * 64)

    with pytest.raises(BlobCorrupted):
        smtp_send(
            account_endpoint(account, "smtp"),
            mail_from=HOSPITAL,
            recipients=[PRAXIS],
            raw=MessageSource(len(body), False, corrupted),
        )
    assert cm.sent_messages() == [] and cm.maildrop_uidls(PRAXIS) == []
    # The same message whole goes through (the CM works; the aborted sends left nothing behind).
    smtp_send(
        account_endpoint(account, "smtp"),
        mail_from=HOSPITAL,
        recipients=[PRAXIS],
        raw=MessageSource(len(body), False, lambda: (body[i : i + 65536] for i in range(0, len(body), 65536))),
    )
    assert [r.message_id for r in cm.sent_messages()] == ["<abgebrochen@kim.local>"]


def test_chunks_larger_than_a_slice_are_rewritten_slice_by_slice_with_the_same_result():
    # Bare LFs (a rewrite is needed) and dot lines and CRs right at the 64 KiB slices' edges.
    line = b"." + b"y" * 65534 + b"\n"
    raw = line * 3 + b"z" * 65535 + b"\r" + b"\n.end\r" + b"." * 70_000
    for step in (len(raw), 65536, 65537, 100_000):
        chunks = [raw[i : i + step] for i in range(0, len(raw), step)]
        assert b"".join(dot_stuffed(chunks)) == _stuffed_whole(raw), step
        assert b"".join(crlf_lines(chunks)) == _crlf_whole(raw), step


@pytest.mark.django_db
def test_an_upload_django_keeps_in_a_temp_file_is_stored_from_it(client, account, sender):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse

    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    data = os.urandom(3 * 1024 * 1024)  # above FILE_UPLOAD_MAX_MEMORY_SIZE: a TemporaryUploadedFile
    client.force_login(sender)
    response = client.post(
        reverse("mailbox:draft-attachment-add", args=[draft.pk]),
        {"files": [SimpleUploadedFile("Aufnahme.dcm", data)]},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    attachment = draft.attachments.get()
    assert (attachment.size, attachment.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert blob_path(attachment.sha256).read_bytes() == data


@pytest.mark.django_db
def test_a_file_over_the_limit_is_refused_as_it_streams_and_nothing_is_kept(account, sender, monkeypatch):
    import mailbox.services.compose as compose

    monkeypatch.setattr(compose, "MAX_ATTACHMENT_BYTES", 2 * 1024 * 1024)
    draft = outgoing_draft_save(user=sender, mailbox_id=account.mailbox_id, data=OutgoingData(to=[PRAXIS]))
    data = os.urandom(2 * 1024 * 1024 + 1)
    # A reader that does not say its size: the limit is found while the bytes arrive.
    with pytest.raises(DraftInvalid, match="ist zu groß"):
        outgoing_attachment_add(user=sender, draft=draft, filename="gross.bin", content=io.BytesIO(data))
    assert not draft.attachments.exists()
    assert not blob_path(hashlib.sha256(data).hexdigest()).exists()
    incoming = blob_path(hashlib.sha256(data).hexdigest()).parents[2] / ".incoming"
    assert not incoming.exists() or not any(incoming.iterdir())
    # One that does is refused before a byte is read.
    with pytest.raises(DraftInvalid, match="ist zu groß"):
        outgoing_attachment_add(user=sender, draft=draft, filename="gross.bin", content=data)
    exact = outgoing_attachment_add(user=sender, draft=draft, filename="genau.bin", content=io.BytesIO(data[:-1]))
    assert exact.size == 2 * 1024 * 1024
