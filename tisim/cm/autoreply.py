"""Out-of-office replies: the Fachdienst answers mail to an absent participant (KOM-LE-A_2277, A_2278).

The note is set through the simulated Account Manager (tisim.accountmanager: ``updateOutOfOffice``) and kept in
``<data_dir>/outofoffice.json``, which both simulators read, also from different processes. While a note is active
and the time is between its start and end, every mail delivered to that address gets one automatic reply per
sender and period (a new note starts a new period), with ``X-KIM-Dienstkennung: KIM-Mail;Abwesend;V1.0`` and
``Auto-Submitted: auto-replied``, unsigned and unencrypted as the Fachdienst sends it.

RFC 3834 decides which mail is answered: never automatic mail (``Auto-Submitted`` other than "no", an absence
note's Dienstkennung, ``Precedence: bulk/list/junk``, ``List-*``), never delivery or read reports (null reverse
path, ``multipart/report``), never MAILER-DAEMON/postmaster/owner-/-request senders, never mail that does not name
the absent address in To or Cc (it reached them by Bcc or a list), and never the absent address itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Container, Iterator
from dataclasses import dataclass
from email.utils import format_datetime, getaddresses, make_msgid
from pathlib import Path
from typing import Any

from tisim.cm.maildrop import MaildropStore
from tisim.cm.messages import Envelope, decoded, delivered_copy, encode_header_value, get_header
from tisim.cm.outside import OutsideDrop

ABSENCE_FILE = "outofoffice.json"
REPLIED_FILE = "outofoffice-replied.json"
LOCK_FILE = ".outofoffice.lock"
DIENSTKENNUNG = "KIM-Mail;Abwesend;V1.0"
FACHDIENST_HOST = "fachdienst.tisim.kim.telematik"
_NEVER_ANSWER_LOCAL = ("mailer-daemon", "postmaster", "noreply", "no-reply")

_thread_lock = threading.Lock()


@dataclass(frozen=True)
class Absence:
    """One address's note. ``period`` changes whenever the note is set, so senders are answered again."""

    active: bool
    start: dt.datetime | None
    end: dt.datetime | None
    message: str
    period: str

    def applies(self, at: dt.datetime) -> bool:
        if not self.active or self.start is None or self.end is None:
            return False
        return self.start <= at <= self.end

    def to_json(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "message": self.message,
            "period": self.period,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Absence:
        def when(value: Any) -> dt.datetime | None:
            return dt.datetime.fromisoformat(value) if isinstance(value, str) and value else None

        return cls(
            active=bool(raw.get("active")),
            start=when(raw.get("start")),
            end=when(raw.get("end")),
            message=str(raw.get("message") or ""),
            period=str(raw.get("period") or ""),
        )


class AbsenceStore:
    """The notes and who was answered, in the data directory; safe across threads and processes (flock)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _thread_lock, open(self.data_dir / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.data_dir / name).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, name: str, data: dict[str, Any]) -> None:
        path = self.data_dir / name
        tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def get(self, address: str) -> Absence | None:
        with self._locked():
            raw = self._read(ABSENCE_FILE).get(address.lower())
        return Absence.from_json(raw) if isinstance(raw, dict) else None

    def put(
        self,
        address: str,
        *,
        active: bool,
        start: dt.datetime | None,
        end: dt.datetime | None,
        message: str,
    ) -> Absence:
        """Set the note; a new period begins (everyone is answered once more)."""
        note = Absence(active, start, end, message, period=secrets.token_hex(8))
        with self._locked():
            notes = self._read(ABSENCE_FILE)
            notes[address.lower()] = note.to_json()
            self._write(ABSENCE_FILE, notes)
        return note

    def first_reply(self, address: str, period: str, sender: str) -> bool:
        """Record that ``sender`` is answered in this period; False if they were already."""
        key = f"{address.lower()} {period}"
        with self._locked():
            replied = self._read(REPLIED_FILE)
            senders = replied.setdefault(key, [])
            if sender.lower() in senders:
                return False
            senders.append(sender.lower())
            self._write(REPLIED_FILE, replied)
        return True


def is_automatic(content: bytes, envelope_sender: str) -> bool:
    """RFC 3834 §2: mail that must never get an automatic answer."""
    if not envelope_sender or envelope_sender == "<>":
        return True
    local = envelope_sender.split("@", 1)[0].lower()
    if local in _NEVER_ANSWER_LOCAL or local.startswith("owner-") or local.endswith("-request"):
        return True
    auto = (get_header(content, "Auto-Submitted") or "no").split(";", 1)[0].strip().lower()
    if auto != "no":
        return True
    if (get_header(content, "Precedence") or "").strip().lower() in ("bulk", "list", "junk"):
        return True
    if any(get_header(content, name) is not None for name in ("List-Id", "List-Unsubscribe", "List-Post")):
        return True
    content_type = (get_header(content, "Content-Type") or "").lower()
    if content_type.startswith("multipart/report"):
        return True
    dienstkennung = (get_header(content, "X-KIM-Dienstkennung") or "").replace(" ", "").lower()
    return dienstkennung == DIENSTKENNUNG.lower()


def _names(content: bytes, address: str) -> bool:
    named = getaddresses([get_header(content, "To") or "", get_header(content, "Cc") or ""])
    return any(addr.lower() == address for _, addr in named)


def absence_reply(content: bytes, *, absent: str, sender: str, note: Absence, now: dt.datetime) -> bytes:
    """The reply (RFC 5322, CRLF): from the absent address to the sender, the note's text as the body."""
    # Line breaks decoded from an encoded word ("=?utf-8?q?x=0D=0ABcc:...?=") must not become headers of the reply.
    subject = " ".join((decoded(get_header(content, "Subject")) or "").split())
    original_id = " ".join((get_header(content, "Message-ID") or "").split())
    references = " ".join([*(get_header(content, "References") or "").split(), *original_id.split()])
    lines = [
        f"From: <{absent}>",
        f"To: <{sender}>",
        f"Subject: {encode_header_value('Abwesenheitsnotiz: ' + subject if subject else 'Abwesenheitsnotiz')}",
        f"Date: {format_datetime(now)}",
        f"Message-ID: {make_msgid(domain=FACHDIENST_HOST)}",
        "Auto-Submitted: auto-replied",
        f"X-KIM-Dienstkennung: {DIENSTKENNUNG}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    if original_id:
        lines += [f"In-Reply-To: {original_id}", f"References: {references}"]
    body = note.message.replace("\r\n", "\n").replace("\n", "\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode("utf-8")


def answer_absences(
    content: bytes,
    *,
    envelope_sender: str,
    delivered: list[str],
    store: MaildropStore,
    accounts: Container[str],
    outside: OutsideDrop | None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Send the absence replies a delivery calls for; returns the absent addresses that answered."""
    absences = AbsenceStore(store.root.parent)
    if not delivered or is_automatic(content, envelope_sender):
        return []
    moment = now or dt.datetime.now(dt.UTC)
    sender = envelope_sender.lower()
    answered = []
    for absent in delivered:
        note = absences.get(absent)
        if note is None or not note.applies(moment) or absent == sender or not _names(content, absent):
            continue
        if not absences.first_reply(absent, note.period, sender):
            continue
        reply = absence_reply(content, absent=absent, sender=sender, note=note, now=moment)
        if sender in accounts:
            envelope = Envelope(sender=absent, helo=FACHDIENST_HOST, peer="127.0.0.1", arrived=moment)
            store.deliver(sender, delivered_copy(reply, envelope, sender, with_results=False))
        elif outside is not None:
            outside.store(absent, [sender], reply)
        answered.append(absent)
    return answered
