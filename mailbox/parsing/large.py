"""Large mails (KIM 1.5 carries up to 700 MiB): parsed from a file without holding the mail twice.

The file is read once, in pieces of at most PIECE bytes. Header blocks and small bodies are copied
into a *skeleton*; a leaf body larger than SPILL_AT is decoded (base64, quoted-printable, or as it
is) while it is read, into a *spill* that the caller provides (a blob on its way to disk), and the
skeleton gets one line naming it instead. The skeleton then goes through the same parser as any
mail, and the walk picks up the spilled parts by that line: the display text, the headers and the
attachment list come out as for a small mail, while the large payloads never enter memory.

The scan follows the stdlib's feedparser where it decides structure (header/body separation,
boundary lines of the enclosing multiparts end a part, the line break before a boundary belongs
to the boundary). A mail it cannot follow within SKELETON_LIMIT or MAX_DEPTH raises TooIrregular;
the caller then keeps the raw mail with its headers only.
"""

from __future__ import annotations

import binascii
import contextlib
import email.parser
import email.policy
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO, Protocol

from kimportal.texts import N_, StoredText
from mailbox.parsing.headers import decode_header_value

PIECE = 64 * 1024
SPILL_AT = 1024 * 1024
SKELETON_LIMIT = 64 * 1024 * 1024
HEADER_LIMIT = 16 * 1024 * 1024
MAX_DEPTH = 60
_FLUSH_AT = 1024 * 1024

# The feedparser's test for "this line belongs to the header block" (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"^(From |[\041-\071\073-\176]*:|[\t ])")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_WHITESPACE = b" \t\r\n\x0b\x0c"


class TooIrregular(Exception):
    """The mail's structure cannot be followed within the limits; keep it raw."""


class SpillSink(Protocol):
    size: int

    def write(self, data: bytes, /) -> object: ...

    def finish(self) -> str: ...

    def discard(self) -> None: ...


@dataclass(frozen=True)
class SpilledPayload:
    """A decoded part payload kept outside memory: ``handle`` is the caller's sink, named ``sha256``."""

    handle: SpillSink
    sha256: str
    size: int
    embedded_subject: str = ""


@dataclass
class Skeleton:
    data: bytes
    spills: dict[str, SpilledPayload] = field(default_factory=dict)
    problems: list[StoredText] = field(default_factory=list)


def skeleton_from_file(fh: BinaryIO, spill: Callable[[], SpillSink]) -> Skeleton:
    scan = _Scan(fh, spill)
    try:
        scan.entity([], 0, "text/plain")
        while scan.next()[0]:  # anything after the top-level entity (cannot happen, but never drop bytes)
            pass
    except BaseException:
        for spilled in scan.spills.values():
            with contextlib.suppress(Exception):
                spilled.handle.discard()
        raise
    return Skeleton(bytes(scan.skeleton), scan.spills, scan.problems)


@dataclass
class _Info:
    ctype: str
    boundary: str | None
    cte: str
    head: bytes


def _info(header: bytes, default_ctype: str) -> _Info:
    msg: Message
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(header + b"\r\n")
        msg.set_default_type(default_ctype)
        ctype = msg.get_content_type()
        boundary = msg.get_boundary()
    except Exception:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(header + b"\r\n")
        msg.set_default_type(default_ctype)
        try:
            ctype = msg.get_content_type()
            boundary = msg.get_boundary()
        except Exception:
            ctype, boundary = "text/plain", None
    try:
        cte = str(msg.get("content-transfer-encoding", "") or "").strip().lower()
    except Exception:
        cte = ""
    return _Info(ctype.lower(), boundary, cte, header)


def _boundary_re(boundary: str) -> re.Pattern[bytes]:
    separator = ("--" + boundary).encode("ascii", "surrogateescape")
    return re.compile(re.escape(separator) + rb"(?P<end>--)?[ \t]*(\r\n|\r|\n)?$")


class _Scan:
    def __init__(self, fh: BinaryIO, spill: Callable[[], SpillSink]) -> None:
        self.fh = fh
        self.spill_factory = spill
        self.skeleton = bytearray()
        self.spills: dict[str, SpilledPayload] = {}
        self.problems: list[StoredText] = []
        self.token = f"kimportal-spill-{secrets.token_hex(12)}"
        self._back: list[tuple[bytes, bool]] = []
        self._at_start = True

    # --- reading -------------------------------------------------------------------------------

    def next(self) -> tuple[bytes, bool]:
        """The next piece and whether it starts a line; (b"", True) at the end of the file."""
        if self._back:
            return self._back.pop()
        piece = self.fh.readline(PIECE)
        starts = self._at_start
        self._at_start = piece.endswith(b"\n") or not piece
        return piece, starts

    def push(self, piece: bytes, starts: bool) -> None:
        self._back.append((piece, starts))

    def keep(self, piece: bytes) -> None:
        self.skeleton += piece
        if len(self.skeleton) > SKELETON_LIMIT:
            raise TooIrregular("skeleton too large")

    @staticmethod
    def ends(piece: bytes, starts: bool, active: list[re.Pattern[bytes]]) -> bool:
        return starts and piece.startswith(b"--") and any(rx.match(piece) for rx in active)

    # --- structure -----------------------------------------------------------------------------

    def entity(self, active: list[re.Pattern[bytes]], depth: int, default_ctype: str) -> None:
        if depth > MAX_DEPTH:
            raise TooIrregular("nested too deeply")
        info = _info(self.headers(active), default_ctype)
        maintype = info.ctype.split("/", 1)[0]
        if maintype == "multipart" and info.boundary:
            self.multipart(active, _boundary_re(info.boundary), depth, info.ctype)
        elif info.ctype in ("message/rfc822", "message/global"):
            self.leaf(active, info, embedded=True)
        elif maintype == "message":
            self.copy(active)  # delivery-status and friends: header blocks, small, parsed as usual
        else:
            self.leaf(active, info, embedded=False)

    def headers(self, active: list[re.Pattern[bytes]]) -> bytes:
        header = bytearray()
        while True:
            piece, starts = self.next()
            if not piece:
                break
            if starts and self.ends(piece, starts, active):
                self.push(piece, starts)
                break
            if starts and piece in (b"\r\n", b"\n", b"\r"):
                self.keep(piece)
                break
            if starts and not _HEADER_LINE.match(piece):
                # No blank line between headers and body: the feedparser reads this line as body.
                self.push(piece, starts)
                break
            self.keep(piece)
            header += piece
            if len(header) > HEADER_LIMIT:
                raise TooIrregular("header block too large")
        return bytes(header)

    def copy(self, active: list[re.Pattern[bytes]]) -> None:
        while True:
            piece, starts = self.next()
            if not piece:
                return
            if self.ends(piece, starts, active):
                self.push(piece, starts)
                return
            self.keep(piece)

    def multipart(self, active: list[re.Pattern[bytes]], own: re.Pattern[bytes], depth: int, ctype: str) -> None:
        inner = [*active, own]
        child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
        while True:
            piece, starts = self.next()
            if not piece:
                return
            if self.ends(piece, starts, active):
                self.push(piece, starts)  # an enclosing boundary ends this multipart too
                return
            match = own.match(piece) if starts else None
            if match is None:
                self.keep(piece)  # preamble
                continue
            self.keep(piece)
            if match.group("end"):
                self.copy(active)  # epilogue
                return
            # Consecutive boundary lines are skipped, as the feedparser does.
            while True:
                piece, starts = self.next()
                if piece and starts and own.match(piece):
                    self.keep(piece)
                    continue
                self.push(piece, starts)
                break
            if not piece:
                return
            self.entity(inner, depth + 1, child_default)

    def leaf(self, active: list[re.Pattern[bytes]], info: _Info, *, embedded: bool) -> None:
        kept: list[bytes] = []
        size = 0
        decoder: _Decoder | None = None
        subject = ""
        at_boundary = False
        while True:
            piece, starts = self.next()
            if not piece:
                break
            if self.ends(piece, starts, active):
                self.push(piece, starts)
                at_boundary = True
                break
            if decoder is not None:
                decoder.feed(piece)
                continue
            kept.append(piece)
            size += len(piece)
            if size > SPILL_AT:
                cte = "" if embedded else info.cte
                decoder = _Decoder(self.spill_factory(), cte)
                subject = _embedded_subject(b"".join(kept)) if embedded else ""
                for earlier in kept:
                    decoder.feed(earlier)
                kept = []
        if decoder is None:
            for piece in kept:
                self.keep(piece)
            return
        sink = decoder.finish(strip_last_newline=at_boundary)
        if decoder.bad_base64:
            self.problems.append(N_("Base64-kodierter Inhalt mit ungültigen Zeichen (großer Anhang)"))
        token = f"{self.token}-{len(self.spills) + 1}"
        self.spills[token] = SpilledPayload(sink, sink.finish(), sink.size, subject)
        # The line break before the next boundary belongs to the boundary: keep one.
        self.keep(token.encode("ascii") + b"\r\n")


def _embedded_subject(head: bytes) -> str:
    end = head.find(b"\r\n\r\n")
    block = head[: end if end >= 0 else 64 * 1024]
    try:
        msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block + b"\r\n\r\n")
        raw = msg.get("subject")
        return " ".join(decode_header_value(str(raw)).split()) if raw else ""
    except Exception:
        return ""


class _Decoder:
    """Decodes a part's body as it streams into the sink, per Content-Transfer-Encoding."""

    def __init__(self, sink: SpillSink, cte: str) -> None:
        self.sink = sink
        self.mode = "base64" if cte == "base64" else "qp" if cte == "quoted-printable" else "raw"
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.held = b""
        self.bad_base64 = False

    def feed(self, piece: bytes) -> None:
        self.pending.append(piece)
        self.pending_size += len(piece)
        if self.pending_size >= _FLUSH_AT:
            self._flush(final=False, strip=False)

    def finish(self, *, strip_last_newline: bool) -> SpillSink:
        self._flush(final=True, strip=strip_last_newline)
        return self.sink

    def _flush(self, *, final: bool, strip: bool) -> None:
        data = self.held + b"".join(self.pending)
        self.pending, self.pending_size, self.held = [], 0, b""
        if self.mode == "done":
            return
        if self.mode == "base64":
            self._base64(data, final)
            return
        if not final:
            # Hold back the last line (qp decodes whole lines; the last line break may belong to a boundary).
            cut = data.rfind(b"\n", 0, len(data) - 1) + 1 if self.mode == "qp" else len(data) - _eol_len(data)
            if self.mode == "qp" and cut == 0 and len(data) < 4 * _FLUSH_AT:
                self.held = data
                return
            data, self.held = data[:cut], data[cut:]
        elif strip:
            data = data[: len(data) - _eol_len(data)]
        self.sink.write(binascii.a2b_qp(data) if self.mode == "qp" else data)

    def _base64(self, data: bytes, final: bool) -> None:
        clean = data.translate(None, _WHITESPACE)
        if clean.translate(None, _B64_ALPHABET + b"="):
            self.bad_base64 = True
            clean = bytes(c for c in clean if c in _B64_ALPHABET or c == 0x3D)
        # Padding ends a base64 stream; what follows it is dropped, as the stdlib's decoder does.
        pad = clean.find(b"=")
        if pad >= 0:
            tail = clean[pad:].lstrip(b"=")
            if tail:
                self.bad_base64 = True
            clean = clean[:pad]
            final = True
        usable = len(clean) if final else len(clean) // 4 * 4
        chunk, self.held = clean[:usable], clean[usable:]
        if final and len(chunk) % 4:
            if len(chunk) % 4 == 1:
                self.bad_base64 = True
                chunk = chunk[:-1]
            chunk += b"=" * (-len(chunk) % 4)
        if chunk:
            self.sink.write(binascii.a2b_base64(chunk))
        if pad >= 0:
            self.mode = "done"  # padding ends a base64 stream: nothing after it is decoded


def _eol_len(data: bytes) -> int:
    if data.endswith(b"\r\n"):
        return 2
    if data.endswith((b"\n", b"\r")):
        return 1
    return 0
