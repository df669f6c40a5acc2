"""Injectable faults, kept in ``<data_dir>/faults.json`` so another process (CLI, test) can set them.

Format::

    {"drop_retr": {"<address>": {"after_bytes": 1024, "times": 1}}}

``drop_retr``: the next RETR answer(s) for the address stop after ``after_bytes`` octets of message
data (counted on the wire, after the ``+OK`` line) and the connection is cut. ``times`` counts the
RETRs still to break; ``null`` means "every RETR until cleared".

``retr``: one message (by UIDL) fails every time it is RETRieved, ``times`` times (``null``: until
cleared)::

    {"retr": {"<address>": {"<uidl>": {"mode": "err", "code": "SYS/TEMP", "after_bytes": 0, "times": null}}}}

``mode`` ``err`` answers ``-ERR [code] …`` (the session goes on), ``drop`` cuts the connection after
``after_bytes`` octets of the message, ``stall`` sends ``after_bytes`` octets and then nothing more
until the client gives up (a per-read timeout must end it), ``short`` ends the answer (with its
terminating dot) after ``after_bytes`` octets, so less arrives than LIST said.

``login``: the next login(s) of the address are answered ``-ERR [code] …`` (RFC 2449: AUTH, IN-USE,
LOGIN-DELAY, SYS/TEMP, SYS/PERM)::

    {"login": {"<address>": {"code": "IN-USE", "times": 1}}}

``smtp``: the next submission(s) of the sender ``<address>`` (the authenticated one; ``*`` = any
sender) meet a broken CM (``times`` as above)::

    {"smtp": {"<address>": {"mode": "421", "times": 1}}}

``421`` answers MAIL FROM with ``421 4.3.2`` and closes the connection; ``timeout`` answers MAIL FROM
with nothing at all (the connection stays open until the client gives up); nothing is delivered in
either case. ``451`` answers the end of DATA with the CM's "internal error" 451 and delivers nothing.
``drop-after-data`` takes the message in full, delivers it (DSNs included), then closes the
connection without a reply — the client cannot know it went out. ``timeout-after-data`` delivers it
and never answers.

``rcpt``: the next RCPT TO(s) naming the recipient ``<address>`` are refused with ``code`` (``450``,
``451``, ``452`` temporary; ``550``, ``554`` permanent), whoever sends; the other recipients of the same
submission are accepted as usual (``times`` as above)::

    {"rcpt": {"<address>": {"code": "450", "times": 1}}}
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tisim.config import write_json_atomic

FAULTS_FILE = "faults.json"
KINDS = ("drop_retr",)
RETR_MODES = ("err", "drop", "stall", "short")
RESP_CODES = ("AUTH", "IN-USE", "LOGIN-DELAY", "SYS/TEMP", "SYS/PERM")
SMTP_MODES = ("421", "timeout", "451", "drop-after-data", "timeout-after-data")
# Which SMTP fault fires where: at MAIL FROM, or at the end of DATA.
SMTP_MAIL_MODES = ("421", "timeout")
SMTP_DATA_MODES = ("451", "drop-after-data", "timeout-after-data")
ANY_SENDER = "*"
# RCPT TO refusals a CM (or the MTA behind it) gives for one recipient: the reply line for each code.
RCPT_REPLIES = {
    "450": "450 4.2.1 Mailbox temporarily unavailable, try again later",
    "451": "451 4.3.0 Temporary local problem, try again later",
    "452": "452 4.2.2 Mailbox full, try again later",
    "550": "550 5.1.1 Recipient address rejected",
    "554": "554 5.7.1 Recipient address rejected: access denied",
}


@dataclass(frozen=True)
class DropRetr:
    after_bytes: int
    times: int | None


@dataclass(frozen=True)
class RetrFault:
    mode: str
    code: str
    after_bytes: int


class FaultStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FAULTS_FILE
        self._lock_path = data_dir / ".faults.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # Read-modify-write from several processes (server consuming, CLI adding): flock serialises them.
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        with self._locked():
            data = self.load()
            change(data)
            write_json_atomic(self.path, data)

    def add(self, address: str, kind: str, *, after_bytes: int = 1024, times: int | None = 1) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")
        entry = {"after_bytes": after_bytes, "times": times}
        self._update(lambda data: data.setdefault(kind, {}).__setitem__(address.lower(), entry))

    def add_retr(
        self,
        address: str,
        uidl: str,
        *,
        mode: str = "err",
        code: str = "SYS/TEMP",
        after_bytes: int = 0,
        times: int | None = None,
    ) -> None:
        """Make RETR of one message fail (see the module doc); by UIDL, so the fault stays with the message."""
        if mode not in RETR_MODES:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(RETR_MODES)}")
        if code and code not in RESP_CODES:
            raise ValueError(f"unknown response code {code!r}; known: {', '.join(RESP_CODES)}")
        if after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")
        entry = {"mode": mode, "code": code, "after_bytes": after_bytes, "times": times}
        self._update(lambda data: data.setdefault("retr", {}).setdefault(address.lower(), {}).__setitem__(uidl, entry))

    def add_login(self, address: str, *, code: str, times: int | None = 1) -> None:
        """Answer the next login(s) of *address* with ``-ERR [code]``."""
        if code not in RESP_CODES:
            raise ValueError(f"unknown response code {code!r}; known: {', '.join(RESP_CODES)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")
        entry = {"code": code, "times": times}
        self._update(lambda data: data.setdefault("login", {}).__setitem__(address.lower(), entry))

    def add_smtp(self, address: str, mode: str, *, times: int | None = 1) -> None:
        """Break the next submission(s) of *address* (``*``: any sender); see the module doc."""
        if mode not in SMTP_MODES:
            raise ValueError(f"unknown SMTP fault mode {mode!r}; known: {', '.join(SMTP_MODES)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")
        entry = {"mode": mode, "times": times}
        self._update(lambda data: data.setdefault("smtp", {}).__setitem__(address.lower(), entry))

    def take_smtp(self, address: str, modes: tuple[str, ...]) -> str | None:
        """Consume the armed SMTP fault of *address* (or ``*``) if its mode is one of *modes*."""
        if not self.path.exists():
            return None
        taken: list[str] = []

        def consume(data: dict[str, Any]) -> None:
            entries = data.get("smtp", {})
            for key in (address.lower(), ANY_SENDER):
                entry = entries.get(key)
                if entry and entry.get("mode") in modes:
                    taken.append(str(entry["mode"]))
                    _count_down(entries, key, entry)
                    return

        self._update(consume)
        return taken[0] if taken else None

    def add_rcpt(self, address: str, code: str = "450", *, times: int | None = 1) -> None:
        """Refuse the next RCPT TO(s) naming the recipient *address* with *code*; see the module doc."""
        if code not in RCPT_REPLIES:
            raise ValueError(f"unknown RCPT code {code!r}; known: {', '.join(RCPT_REPLIES)}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 (or None for 'until cleared')")
        entry = {"code": code, "times": times}
        self._update(lambda data: data.setdefault("rcpt", {}).__setitem__(address.lower(), entry))

    def take_rcpt(self, address: str) -> str | None:
        """The reply line for an armed RCPT refusal of the recipient *address*, consumed; None if none is armed."""
        if not self.path.exists():
            return None
        taken: list[str] = []

        def consume(data: dict[str, Any]) -> None:
            entries = data.get("rcpt", {})
            entry = entries.get(address.lower())
            if not entry:
                return
            taken.append(RCPT_REPLIES.get(str(entry.get("code")), RCPT_REPLIES["450"]))
            _count_down(entries, address.lower(), entry)

        self._update(consume)
        return taken[0] if taken else None

    def take_retr(self, address: str, uidl: str) -> RetrFault | None:
        """Consume one armed ``retr`` fault of this message, if any."""
        if not self.path.exists():
            return None
        taken: list[RetrFault] = []

        def consume(data: dict[str, Any]) -> None:
            per_address = data.get("retr", {}).get(address.lower(), {})
            entry = per_address.get(uidl)
            if not entry:
                return
            taken.append(
                RetrFault(str(entry.get("mode", "err")), str(entry.get("code", "")), int(entry.get("after_bytes", 0)))
            )
            _count_down(per_address, uidl, entry)

        self._update(consume)
        return taken[0] if taken else None

    def take_login(self, address: str) -> str | None:
        """The response code the next login of *address* is to fail with, if one is armed."""
        if not self.path.exists():
            return None
        taken: list[str] = []

        def consume(data: dict[str, Any]) -> None:
            entries = data.get("login", {})
            entry = entries.get(address.lower())
            if not entry:
                return
            taken.append(str(entry.get("code", "AUTH")))
            _count_down(entries, address.lower(), entry)

        self._update(consume)
        return taken[0] if taken else None

    def clear(self) -> None:
        self._update(lambda data: data.clear())

    def take_drop_retr(self, address: str) -> DropRetr | None:
        """Consume one armed ``drop_retr`` for ``address``, if any."""
        if not self.path.exists():  # the common case: no faults, no lock
            return None
        taken: list[DropRetr] = []

        def consume(data: dict[str, Any]) -> None:
            entries = data.get("drop_retr", {})
            entry = entries.get(address.lower())
            if not entry:
                return
            times = entry.get("times")
            taken.append(DropRetr(after_bytes=int(entry.get("after_bytes", 0)), times=times))
            if times is None:
                return
            if times <= 1:
                del entries[address.lower()]
            else:
                entry["times"] = times - 1

        self._update(consume)
        return taken[0] if taken else None


def _count_down(entries: dict[str, Any], key: str, entry: dict[str, Any]) -> None:
    times = entry.get("times")
    if times is None:
        return
    if times <= 1:
        del entries[key]
    else:
        entry["times"] = times - 1
