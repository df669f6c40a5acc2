"""Per-address maildrops on disk: ``<data_dir>/maildrops/<address>/<uidl>.eml``.

One file per message, stored in CRLF form so its size *is* the POP3 octet count and RETR can stream
the file. Files appear atomically (temp file + ``os.replace``), so a concurrent listing never sees a
half-written message. The UIDL is the file name: time-ordered (listing order = arrival order),
unique, 29 printable characters (RFC 1939 allows 1-70 in 0x21-0x7E).
"""

from __future__ import annotations

import builtins
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".eml"
_UIDL_RE = re.compile(r"^[0-9]{19}\.[0-9a-f]{8}$")
_EOL_RE = re.compile(rb"\r\n|\r|\n")


class MaildropLocked(Exception):
    """Another POP3 session holds the maildrop."""


@dataclass(frozen=True)
class StoredMessage:
    uidl: str
    path: Path
    size: int


def to_crlf(data: bytes) -> bytes:
    """Canonical CRLF line ends, ending with CRLF; untouched when already canonical (the usual case)."""
    if data.count(b"\n") != data.count(b"\r\n") or data.count(b"\r") != data.count(b"\r\n"):
        data = _EOL_RE.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


class MaildropStore:
    """All maildrops under one directory. Thread-safe: the server loop and test threads share it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._uidl_lock = threading.Lock()
        self._last_ns = 0
        # A Condition, so tests can wait for a session to end instead of sleeping.
        self._locks_guard = threading.Condition()
        self._locked: set[str] = set()

    def path_for(self, address: str) -> Path:
        address = address.lower()
        # Addresses are validated before they get here; this keeps a bad one from escaping the root.
        if "/" in address or "\\" in address or address.startswith(".") or not address:
            raise ValueError(f"unusable maildrop name {address!r}")
        return self.root / address

    def new_uidl(self) -> str:
        # Nanoseconds, forced strictly increasing within the process, so sort order = delivery order
        # even when two deliveries share a clock tick; the random tail keeps processes apart.
        with self._uidl_lock:
            now = max(time.time_ns(), self._last_ns + 1)
            self._last_ns = now
        return f"{now:019d}.{secrets.token_hex(4)}"

    def deliver(self, address: str, raw: bytes) -> str:
        directory = self.path_for(address)
        directory.mkdir(parents=True, exist_ok=True)
        uidl = self.new_uidl()
        tmp = directory / f".{uidl}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(to_crlf(raw))
        os.replace(tmp, directory / f"{uidl}{SUFFIX}")
        return uidl

    def list(self, address: str) -> list[StoredMessage]:
        directory = self.path_for(address)
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
        except FileNotFoundError:
            return []
        messages = []
        for name in names:
            uidl = name[: -len(SUFFIX)]
            if not _UIDL_RE.match(uidl):
                continue
            path = directory / name
            try:
                messages.append(StoredMessage(uidl, path, path.stat().st_size))
            except FileNotFoundError:  # removed between listdir and stat
                continue
        return messages

    def uidls(self, address: str) -> builtins.list[str]:  # `list` is a method here
        return [m.uidl for m in self.list(address)]

    def read(self, address: str, uidl: str) -> bytes:
        if not _UIDL_RE.match(uidl):
            raise KeyError(uidl)
        return (self.path_for(address) / f"{uidl}{SUFFIX}").read_bytes()

    def remove(self, message: StoredMessage) -> None:
        try:
            message.path.unlink()
        except FileNotFoundError:
            pass

    def lock(self, address: str) -> None:
        """Exclusive POP3 access (RFC 1939 §8: the server locks the maildrop for one session)."""
        with self._locks_guard:
            if address.lower() in self._locked:
                raise MaildropLocked(address)
            self._locked.add(address.lower())

    def unlock(self, address: str) -> None:
        with self._locks_guard:
            self._locked.discard(address.lower())
            self._locks_guard.notify_all()

    def is_locked(self, address: str) -> bool:
        with self._locks_guard:
            return address.lower() in self._locked

    def wait_unlocked(self, address: str, timeout: float) -> bool:
        with self._locks_guard:
            return self._locks_guard.wait_for(lambda: address.lower() not in self._locked, timeout)
