from __future__ import annotations

import hashlib

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
