"""Content-addressed, immutable storage for raw messages and attachments.

A blob's name is its SHA-256, so writing the same bytes twice is harmless (idempotent ingest),
and every read verifies the checksum: a silently corrupted file is an error, never shown as mail.
Writing bytes whose blob exists but no longer hashes to its name repairs it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

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

    def put_spool(self, spool: BlobSpool) -> str:
        """Put a finished spool's bytes under their name: from memory, or by renaming its file into place."""
        digest = spool.finish()
        held = spool.held_bytes()
        if held is not None:
            if digest not in self._pending:
                self._pending[digest] = self._pool.submit(_blob_write, digest, held)
            spool.discard()
            return digest
        if digest in self._pending:
            spool.discard()
        else:
            self._pending[digest] = self._pool.submit(spool.commit)
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


class BlobSpool:
    """Bytes on their way into the store, hashed as they arrive; a large blob never sits in memory.

    Up to *memory_limit* bytes are held in memory (most mails: written like any blob); beyond it
    they go to a temp file inside the blob store (same file system, so the blob is later renamed
    into place, never copied). ``finish()`` names it; ``commit()`` makes it durable under that name
    (temp file fsynced, renamed, directory fsynced) exactly as blob_put would; ``discard()`` drops
    it. ``open()`` reads the bytes back (a file kept open stays readable across the rename).
    """

    def __init__(self, *, memory_limit: int = 8 * 1024 * 1024) -> None:
        self._limit = memory_limit
        self._buffer: bytearray | None = bytearray()
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
        self._hash = hashlib.sha256()
        self._digest: str | None = None
        self.size = 0

    def write(self, data: bytes) -> int:
        if self._digest is not None:
            raise BlobError("spool already finished")
        self._hash.update(data)
        self.size += len(data)
        if self._buffer is not None and len(self._buffer) + len(data) <= self._limit:
            self._buffer += data
            return len(data)
        if self._file is None:
            incoming = _root() / ".incoming"
            incoming.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=incoming, prefix=".tmp-")
            self._tmp = Path(tmp)
            self._file = os.fdopen(fd, "w+b")
            if self._buffer:
                self._file.write(self._buffer)
            self._buffer = None
        self._file.write(data)
        return len(data)

    def finish(self) -> str:
        """The blob's name (its SHA-256); nothing more may be written."""
        if self._digest is None:
            self._digest = self._hash.hexdigest()
            if self._file is not None:
                self._file.flush()
        return self._digest

    def held_bytes(self) -> bytes | None:
        """The bytes, if they are small enough to be held in memory; None once they went to a file."""
        return bytes(self._buffer) if self._buffer is not None else None

    def open(self) -> BinaryIO:
        """A fresh reader over the spooled bytes, from the start."""
        self.finish()
        if self._buffer is not None:
            return io.BytesIO(bytes(self._buffer))
        assert self._tmp is not None
        return open(self._tmp, "rb")

    def commit(self) -> None:
        """Make the file durable under its name (for spools that went to a file)."""
        digest = self.finish()
        assert self._file is not None and self._tmp is not None
        path = blob_path(digest)
        try:
            if _hashes_to(path, digest):
                return
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.chmod(self._tmp, 0o440)
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._tmp, path)
            self._tmp = None
            _fsync_dir(path.parent)
        finally:
            self.discard()

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None

    def __enter__(self) -> BlobSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def incoming_sweep(*, older_than_seconds: float = 6 * 3600) -> int:
    """Remove spool files a killed worker left behind (a live spool's file is never that old)."""
    incoming = _root() / ".incoming"
    removed = 0
    cutoff = time.time() - older_than_seconds
    try:
        entries = list(os.scandir(incoming))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.name.startswith(".tmp-") and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def _hashes_to(path: Path, digest: str) -> bool | None:
    """None if there is no file; else whether its content hashes to *digest* (a size check is not enough).

    A writer asks this before it skips writing bytes that are there already: the file's time is refreshed first,
    so blob_delete_if_idle leaves it to the row the writer is about to commit (see there).
    """
    try:
        os.utime(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        return None  # not ours to touch (another user's file): writing it anew gives a fresh one
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


# A writer commits the row that names a blob within this long of finding (or writing) it; .incoming's files are
# swept after the same time on the same assumption.
BLOB_IDLE_SECONDS = 6 * 3600


def blob_delete_if_idle(sha256: str, *, idle_seconds: float = BLOB_IDLE_SECONDS) -> bool | None:
    """Delete a blob no row names any more, unless a writer may be about to name it again: True when deleted,
    None when there was none, False when kept because it was written or found by a writer within `idle_seconds`.

    The caller has checked that nothing names the blob. A writer that finds the same bytes present does not write
    them but commits its row later; it refreshed the file's time first (_hashes_to). So the file is renamed aside
    before its time is read: a writer that looks after the rename finds nothing and writes the bytes anew, one that
    looked before it left a fresh time, and the file goes back. Rename, utime and stat act on the shared file
    system itself, so this holds for any number of processes and hosts sharing the store (hosts' clocks need to
    agree only to well within `idle_seconds`).
    """
    path = blob_path(sha256)
    idle_since = time.time() - idle_seconds
    try:
        if path.stat().st_mtime > idle_since:
            return False
        # Aside into one directory of the store (same file system, so the rename is atomic): a process killed
        # between the renames leaves its file there, where deleting_sweep finds it, not in one of 65,536 directories.
        deleting = _root() / DELETING_DIR
        deleting.mkdir(exist_ok=True)
        aside = deleting / f"{sha256}-{os.getpid()}-{os.urandom(4).hex()}"
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    try:
        if aside.stat().st_mtime > idle_since:
            os.rename(aside, path)  # a writer's copy put there meanwhile holds the same bytes
            return False
        aside.unlink()
    except FileNotFoundError:
        pass  # swept meanwhile (deleting_sweep): gone all the same
    # The removal reaches the disk like the write did (the directory entry is what names the blob).
    _fsync_dir(path.parent)
    return True


def blob_touch(sha256: str) -> None:
    """A row is about to name a blob already in the store without writing it (a forwarded original): the file's
    time says so, as a writer's does (_hashes_to), and blob_delete_if_idle keeps it. BlobMissing if it is gone."""
    try:
        os.utime(blob_path(sha256))
    except FileNotFoundError:
        raise BlobMissing(sha256) from None


DELETING_DIR = ".deleting"


def deleting_sweep(*, older_than_seconds: float = 3600) -> list[str]:
    """Put back what a deletion killed between its two renames left aside (blob_delete_if_idle): the blobs put back.

    Such a file may be the only copy of bytes a row now names: a writer that looked just before the rename
    refreshed the file's time and commits its row without writing (the deletion, alive, would have put the file
    back). So nothing here is deleted: the file goes back to its place (or, if a writer wrote the bytes anew
    meanwhile, the copy aside goes), and the caller asks for its deletion again the usual way. A live deletion
    holds its file for microseconds, never an hour; the age is the time it was put aside (st_ctime: a rename
    changes it), not its content's (st_mtime is hours old by then).
    """
    cutoff = time.time() - older_than_seconds
    restored: list[str] = []
    try:
        entries = list(os.scandir(_root() / DELETING_DIR))
    except FileNotFoundError:
        return restored
    for entry in entries:
        sha = entry.name.split("-", 1)[0]
        try:
            if entry.stat().st_ctime >= cutoff:
                continue
            if not re.fullmatch(r"[0-9a-f]{64}", sha):
                continue  # not one of ours: left for an administrator
            path = blob_path(sha)
            if path.exists():
                os.unlink(entry.path)  # written anew meanwhile: the same bytes
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.rename(entry.path, path)
                _fsync_dir(path.parent)
            restored.append(sha)
        except FileNotFoundError:
            continue
    return restored


# --- streaming: large blobs in and out without holding them whole ------------------------------------------

BLOB_CHUNK_BYTES = 1024 * 1024


def blob_put_chunks(chunks: Iterable[bytes], *, memory_limit: int = BLOB_CHUNK_BYTES) -> tuple[str, int]:
    """Store bytes that arrive in pieces (an upload, a message being written): returns (name, size).

    Durable on return exactly as blob_put's blobs are. At most *memory_limit* bytes are held in memory; beyond
    that the bytes go to a spool file that is renamed into place. An error while *chunks* is read leaves nothing.
    """
    with BlobSpool(memory_limit=memory_limit) as spool:
        for chunk in chunks:
            if chunk:
                spool.write(chunk)
        digest = spool.finish()
        held = spool.held_bytes()
        if held is not None:
            _blob_write(digest, held)
        else:
            spool.commit()
        return digest, spool.size


def blob_chunks(sha256: str, *, chunk_size: int = BLOB_CHUNK_BYTES) -> Iterator[bytes]:
    """A blob's bytes in pieces of *chunk_size* (the last may be shorter), checked as blob_get checks them.

    The checksum is known only at the end: BlobCorrupted comes after the last piece, so a reader must not act on
    the bytes (commit them, send the end of DATA) before the iteration has ended. BlobMissing comes at the first.
    """
    path = blob_path(sha256)
    try:
        fh = path.open("rb")
    except FileNotFoundError as exc:
        raise BlobMissing(sha256) from exc
    digest = hashlib.sha256()
    with fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
            yield chunk
    if digest.hexdigest() != sha256:
        raise BlobCorrupted(sha256)
