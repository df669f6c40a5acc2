"""Content-addressed, immutable storage for raw messages and attachments.

A blob's name is its SHA-256, so writing the same bytes twice is harmless (idempotent ingest),
and every read verifies the checksum: a silently corrupted file is an error, never shown as mail.
Writing bytes whose blob exists but no longer hashes to its name repairs it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)


class BlobError(Exception):
    pass


class BlobMissing(BlobError):
    pass


class BlobCorrupted(BlobError):
    pass


def _root() -> Path:
    return Path(settings.KIMPORTAL_BLOB_DIR)


def blob_path(sha256: str) -> Path:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BlobError(f"not a sha256: {sha256!r}")
    return _root() / sha256[:2] / sha256[2:4] / sha256


def blob_put(data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    _blob_write(digest, data)
    return digest


def _blob_write(digest: str, data: bytes) -> None:
    """Put *data* under its name *digest*, durably: when this returns, file and name are on disk."""
    path = blob_path(digest)
    intact = _hashes_to(path, digest)
    if intact:
        return
    if intact is False:
        # Same name, other bytes (bit rot, a partial copy from a restore): the caller holds the
        # right bytes, so replace the file the same atomic way it was first written.
        log.warning("blob %s does not match its checksum; rewriting it", digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write to a temp file in the same directory and rename: a crash never leaves a partial blob.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o440)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk before the server copy is deleted (power loss).
    _fsync_dir(path.parent)


class BlobBatch:
    """Blobs of several messages written side by side; ``wait()`` returns once all of them are on disk.

    Each blob is written exactly as blob_put writes it (temp file fsynced, renamed, directory
    fsynced), on a few threads: fsyncs issued together share the file system's journal commits and
    overlap with the caller's RETR and parsing, where one after the other each waited for the disk
    alone. The caller gets the name at once and must call ``wait()`` before committing a row that
    names it (and so before any DELE).
    """

    def __init__(self, *, threads: int = 4) -> None:
        # Four fsyncs in flight already share journal commits; more threads only contend for the GIL.
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="blob-write")
        self._pending: dict[str, Future[None]] = {}

    def put(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        # The same bytes twice in one batch (one PDF sent to two patients' letters) are written once.
        if digest not in self._pending:
            self._pending[digest] = self._pool.submit(_blob_write, digest, data)
        return digest

    def wait(self) -> None:
        """Block until every blob put so far is durable; raises the first write's error, if any."""
        pending, self._pending = list(self._pending.values()), {}
        futures.wait(pending)
        for future in pending:
            future.result()

    def close(self) -> None:
        # Writes still running finish (a temp file is never left half-renamed); none is waited for by a row.
        self._pool.shutdown(wait=True)

    def __enter__(self) -> BlobBatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hashes_to(path: Path, digest: str) -> bool | None:
    """None if there is no file; else whether its content hashes to *digest* (a size check is not enough)."""
    try:
        with path.open("rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest() == digest
    except FileNotFoundError:
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_get(sha256: str) -> bytes:
    path = blob_path(sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise BlobMissing(sha256) from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise BlobCorrupted(sha256)
    return data
