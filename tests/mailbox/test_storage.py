from __future__ import annotations

import hashlib
import stat

import pytest

from mailbox.storage import BlobCorrupted, BlobMissing, blob_get, blob_path, blob_put


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
    before = blob_path(digest).stat()
    blob_put(b"KIM")
    after = blob_path(digest).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
