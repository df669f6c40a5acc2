from __future__ import annotations

import hashlib
import os
import stat

import pytest

from mailbox.storage import (
    DELETING_DIR,
    BlobBatch,
    BlobCorrupted,
    BlobMissing,
    blob_delete_if_idle,
    blob_get,
    blob_path,
    blob_put,
    deleting_sweep,
)


def test_blob_roundtrip_is_content_addressed():
    digest = blob_put(b"KIM")
    assert digest == hashlib.sha256(b"KIM").hexdigest()
    assert blob_put(b"KIM") == digest
    assert blob_get(digest) == b"KIM"


def test_corrupted_blob_is_detected():
    digest = blob_put(b"original")
    path = blob_path(digest)
    path.chmod(0o640)
    path.write_bytes(b"tampered")
    with pytest.raises(BlobCorrupted):
        blob_get(digest)


def test_missing_blob_is_an_error():
    with pytest.raises(BlobMissing):
        blob_get("0" * 64)


def test_put_repairs_an_existing_blob_of_the_same_size_with_other_bytes(caplog):
    digest = blob_put(b"original")
    path = blob_path(digest)
    path.chmod(0o640)
    path.write_bytes(b"tampered")  # same length: a size check would trust it
    with pytest.raises(BlobCorrupted):
        blob_get(digest)

    assert blob_put(b"original") == digest
    assert blob_get(digest) == b"original"
    assert f"blob {digest} does not match its checksum" in caplog.text
    # Replaced by rename like every write (read-only, no temp file left), not patched in place.
    assert stat.S_IMODE(path.stat().st_mode) == 0o440
    assert list(path.parent.glob(".tmp-*")) == []


def test_put_leaves_an_intact_blob_alone():
    digest = blob_put(b"KIM")
    path = blob_path(digest)
    os.utime(path, (1, 1))
    before = path.stat()
    blob_put(b"KIM")
    after = path.stat()
    # The same file, not written again; only its time says a writer found it (see blob_delete_if_idle).
    assert after.st_ino == before.st_ino and after.st_mtime_ns > before.st_mtime_ns


def test_a_batch_names_blobs_at_once_and_has_them_on_disk_after_wait():
    with BlobBatch() as blobs:
        digests = [blobs.put(b"raw %d" % i) for i in range(20)]
        assert digests == [hashlib.sha256(b"raw %d" % i).hexdigest() for i in range(20)]
        blobs.wait()
        assert [blob_get(d) for d in digests] == [b"raw %d" % i for i in range(20)]
    # Written the way blob_put writes: read-only, no temp file left behind.
    assert stat.S_IMODE(blob_path(digests[0]).stat().st_mode) == 0o440
    assert list(blob_path(digests[0]).parent.glob(".tmp-*")) == []


def test_a_batch_writes_the_same_bytes_once_and_repairs_a_corrupted_blob(caplog):
    digest = blob_put(b"Befund")
    blob_path(digest).chmod(0o640)
    blob_path(digest).write_bytes(b"kaputt")
    with BlobBatch() as blobs:
        assert blobs.put(b"Befund") == blobs.put(b"Befund") == digest
        blobs.wait()
    assert blob_get(digest) == b"Befund"
    assert caplog.text.count(f"blob {digest} does not match its checksum") == 1


def test_a_batch_whose_blob_cannot_be_written_says_so_on_wait(settings, tmp_path):
    (tmp_path / "file").write_bytes(b"")
    settings.KIMPORTAL_BLOB_DIR = tmp_path / "file" / "blobs"
    with BlobBatch() as blobs:
        blobs.put(b"nirgends")
        with pytest.raises(NotADirectoryError):
            blobs.wait()


def test_delete_if_idle_takes_only_a_blob_no_writer_touched_lately():
    digest = blob_put(b"Befund")
    path = blob_path(digest)
    assert blob_delete_if_idle(digest) is False and path.exists()  # just written
    os.utime(path, (1, 1))
    assert blob_put(b"Befund") == digest  # a writer finds it present: it is busy again
    assert blob_delete_if_idle(digest) is False and path.exists()
    os.utime(path, (1, 1))
    assert blob_delete_if_idle(digest) is True
    assert list(path.parent.iterdir()) == []  # nothing left aside
    assert list((path.parents[2] / DELETING_DIR).iterdir()) == []
    assert blob_delete_if_idle(digest) is None
    assert blob_put(b"Befund") == digest and blob_get(digest) == b"Befund"


def test_what_a_killed_deletion_left_aside_goes_back_once_it_is_old():
    # A deletion killed between its two renames leaves the file in the store's .deleting directory, maybe the only
    # copy of bytes a writer (which looked just before the rename) is about to name.
    digest = blob_put(b"Arztbrief")
    path = blob_path(digest)
    os.utime(path, (1, 1))  # idle for decades: its content's time says nothing about when it was put aside
    aside = path.parents[2] / DELETING_DIR / f"{digest}-4711-killed"
    aside.parent.mkdir(exist_ok=True)
    os.rename(path, aside)
    assert deleting_sweep() == [] and aside.exists()  # put aside just now: a live deletion may still hold it
    assert deleting_sweep(older_than_seconds=-1) == [digest]
    assert not aside.exists() and blob_get(digest) == b"Arztbrief"  # back in its place, to be decided again


def test_a_left_aside_copy_of_bytes_written_anew_meanwhile_goes():
    digest = blob_put(b"Laborwerte")
    path = blob_path(digest)
    aside = path.parents[2] / DELETING_DIR / f"{digest}-4712-killed"
    aside.parent.mkdir(exist_ok=True)
    os.rename(path, aside)
    assert blob_put(b"Laborwerte") == digest  # a writer found nothing and wrote the bytes anew
    assert deleting_sweep(older_than_seconds=-1) == [digest]
    assert not aside.exists() and blob_get(digest) == b"Laborwerte"
