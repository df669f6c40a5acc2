"""POP3 towards the KIM Clientmodul (I/O only; returns plain data, never touches the ORM)."""

from __future__ import annotations

import io
import poplib
import re
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from mailbox.clients.tls import (
    IMPLICIT_TLS,
    STARTTLS,
    CmAuthFailed,
    CmError,
    CmProtocolError,
    CmStartTlsUnavailable,
    CmUnreachable,
    Endpoint,
    TlsSettings,
    classify_after_handshake,
    classify_os_error,
    client_context,
    verify_pin,
)

# RFC 1939 allows long lines in message content; hostile mail has them. poplib's default of
# 2048 bytes would turn such a mail into a protocol error and block the mailbox forever.
poplib._MAXLINE = 1024 * 1024  # type: ignore[attr-defined]  # private, so typeshed leaves it out


# One read of a RETR answer: at most this much of one line (a hostile line without CRLF is read in pieces).
READ_PIECE = 64 * 1024
# What is handed to the sink at once: few large writes, not one per line.
WRITE_CHUNK = 1024 * 1024

_RESP_CODE_RE = re.compile(rb"^-ERR\s*\[([A-Za-z0-9/_-]{1,40})\]")


class Pop3Refused(CmError):
    """The CM answered ``-ERR``; ``code`` is its RFC 2449 response code ("IN-USE", "SYS/TEMP" …) or ""."""

    def __init__(self, response: str, code: str = "", command: str = "") -> None:
        super().__init__(response)
        self.response = response
        self.code = code.upper()
        self.command = command


class RetrTooLarge(CmProtocolError):
    """A RETR answer went on far beyond the size LIST announced; the rest was not read."""


class RetrIncomplete(CmProtocolError):
    """A RETR answer ended (with its terminating dot) shorter than the size LIST announced."""

    def __init__(self, arrived: int, announced: int) -> None:
        super().__init__(f"{arrived} of {announced} octets arrived")
        self.arrived = arrived
        self.announced = announced


class Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


@dataclass(frozen=True)
class ListedMessage:
    number: int
    uidl: str
    size: int


class Pop3Session:
    def __init__(self, conn: poplib.POP3) -> None:
        self._conn = conn
        # Set once an error left the connection in an unknown state (a RETR cut off, a timeout): no
        # command may follow on it, and no QUIT, so no DELE of this session takes effect.
        self.broken = False

    def listing(self) -> list[ListedMessage]:
        try:
            _, uid_lines, _ = self._conn.uidl()
            _, size_lines, _ = self._conn.list()
        except (poplib.error_proto, OSError) as exc:
            raise _wrap(exc) from exc
        sizes = {}
        for line in size_lines:
            num, size = line.split()[:2]
            sizes[int(num)] = int(size)
        result = []
        for line in uid_lines:
            num_text, uid = line.decode("ascii", "replace").split(maxsplit=1)
            result.append(ListedMessage(number=int(num_text), uidl=uid.strip(), size=sizes.get(int(num_text), 0)))
        return result

    def retrieve(self, number: int) -> bytes:
        """The whole message in memory (small mails and tests; the fetch streams with retrieve_into)."""
        chunks: list[bytes] = []

        class _Collect:
            def write(self, data: bytes) -> None:
                chunks.append(bytes(data))

        self.retrieve_into(number, _Collect())
        return b"".join(chunks)

    def retrieve_into(self, number: int, sink: Sink, *, announced: int | None = None, limit: int | None = None) -> int:
        """Stream message *number* into *sink* (dot-stuffing undone, lines in CRLF); returns the octets written.

        Nothing holds the whole message: lines are read in pieces of at most READ_PIECE bytes, so a
        hostile line without CRLF costs no memory either. The socket's timeout applies to each read,
        not to the whole transfer: a 700 MiB mail may take minutes, a stalled one ends after one
        timeout. *limit* stops an answer that runs on beyond what LIST announced; *announced* (the
        LIST size) must have arrived, or the message counts as cut off.
        """
        if self.broken:
            raise CmProtocolError("connection unusable after an earlier error")
        conn = self._conn
        try:
            # poplib's retr() would collect the whole message in a list; its line I/O is used directly.
            conn._putcmd(f"RETR {number}")  # type: ignore[attr-defined]
            first, _ = conn._getline()  # type: ignore[attr-defined]
        except (poplib.error_proto, OSError) as exc:
            self.broken = True
            raise _wrap(exc) from exc
        if not first.startswith(b"+"):
            # A clean -ERR: the session goes on with the next message.
            raise _refused(first, "RETR")
        reader = conn.file
        assert isinstance(reader, io.BufferedReader)  # socket.makefile("rb"): peek() is what the reader needs
        try:
            total = _read_multiline(reader, sink, limit)
        except (poplib.error_proto, OSError, CmError) as exc:
            self.broken = True
            raise _wrap(exc) from exc
        if announced is not None and total < announced:
            # The terminating dot came early: a server that cut the mail short. The session is fine.
            raise RetrIncomplete(total, announced)
        return total

    def delete(self, number: int) -> None:
        try:
            self._conn.dele(number)
        except (poplib.error_proto, OSError) as exc:
            raise _wrap(exc) from exc

    def quit(self) -> None:
        """QUIT commits the DELE marks (RFC 1939 UPDATE state)."""
        try:
            self._conn.quit()
        except (poplib.error_proto, OSError) as exc:
            raise _wrap(exc) from exc


_TERMINATORS = (b"\n.\r\n", b"\n.\n")
_BARE_LF_RE = re.compile(rb"(?<!\r)\n")


def _read_multiline(reader: io.BufferedReader, sink: Sink, limit: int | None) -> int:
    """Read a multi-line answer up to its terminating dot into *sink*; returns the octets written.

    Whole lines are taken from the reader's buffer a buffer at a time (peek, then read exactly what
    was used, so nothing after the terminating dot is consumed); only a line that runs past the
    buffer is read by itself, in pieces of at most READ_PIECE bytes. Either way: a leading dot is
    removed (RFC 1939 byte-stuffing), a bare LF becomes CRLF, and the answer ends at a line that is
    only a dot.
    """
    at_line_start = True
    after_cr = False  # the last piece ended in CR without its LF (a line cut at READ_PIECE)
    pending = bytearray()
    total = 0
    while True:
        buffered = reader.peek(1)
        if not buffered:
            raise CmUnreachable("connection closed during RETR")
        cut = buffered.rfind(b"\n") + 1
        end_line = b""
        if cut:
            # Complete lines: one block, with the terminating line (if it is among them) cut off.
            block = buffered[:cut]
            if at_line_start and (block.startswith(b".\r\n") or block.startswith(b".\n")):
                stop = 0
            else:
                stop = min((i + 1 for i in (block.find(t) for t in _TERMINATORS) if i >= 0), default=-1)
            if stop >= 0:
                end_line = b".\r\n" if block.startswith(b".\r\n", stop) else b".\n"
                block = block[:stop]
            reader.read(len(block) + len(end_line))
            piece = block
            if piece:
                if at_line_start and piece.startswith(b"."):
                    piece = piece[1:]
                piece = piece.replace(b"\n.", b"\n")
                # The LF of a CRLF whose CR ended the previous piece (a line cut at READ_PIECE) stays.
                keep = 1 if after_cr and piece.startswith(b"\n") else 0
                if piece.count(b"\n") - keep != piece.count(b"\r\n"):
                    piece = piece[:keep] + _BARE_LF_RE.sub(b"\r\n", piece[keep:])
                at_line_start, after_cr = True, False
        else:
            # A line longer than the buffer: read by itself, in pieces.
            piece = reader.readline(READ_PIECE)
            if not piece:
                raise CmUnreachable("connection closed during RETR")
            if at_line_start:
                if piece in (b".\r\n", b".\n"):
                    break
                if piece.startswith(b"."):
                    piece = piece[1:]
            if piece.endswith(b"\n"):
                if not piece.endswith(b"\r\n") and not (piece == b"\n" and after_cr):
                    piece = piece[:-1] + b"\r\n"
                at_line_start = True
            else:
                at_line_start = False
            after_cr = piece.endswith(b"\r")
        total += len(piece)
        if limit is not None and total > limit:
            raise RetrTooLarge(f"more than {limit} octets in the RETR answer")
        pending += piece
        if len(pending) >= WRITE_CHUNK:
            sink.write(bytes(pending))
            pending = bytearray()
        if end_line:
            break
    if not total:
        # An empty answer is an empty message: one line end, as poplib's line join gave it.
        sink.write(b"\r\n")
        return 2
    if pending:
        sink.write(bytes(pending))
    return total


def _wrap(exc: BaseException) -> CmError:
    if isinstance(exc, CmError):
        return exc
    if isinstance(exc, poplib.error_proto):
        arg = exc.args[0] if exc.args else b""
        if isinstance(arg, bytes) and arg.startswith(b"-ERR"):
            return _refused(arg, "")
        return CmProtocolError(_text(exc))
    return classify_os_error(exc)


def _refused(response: bytes, command: str) -> Pop3Refused:
    match = _RESP_CODE_RE.match(response)
    text = response.decode("utf-8", "replace")[:500]
    return Pop3Refused(text, match.group(1).decode("ascii") if match else "", command)


def _login_error(exc: poplib.error_proto) -> CmError:
    """USER/PASS refused: [AUTH] or no code is a credentials problem; other codes are not (RFC 2449/3206)."""
    arg = exc.args[0] if exc.args else b""
    if isinstance(arg, bytes):
        refused = _refused(arg, "PASS")
        if refused.code and refused.code != "AUTH":
            # [IN-USE] (the KIS holds the maildrop), [LOGIN-DELAY], [SYS/TEMP], [SYS/PERM]: the password is fine.
            return refused
    return CmAuthFailed(_text(exc))


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


class _POP3ImplicitTLS(poplib.POP3):
    """POP3 over implicit TLS (like POP3_SSL) that notes when its handshake is done: the greeting read
    right after it is where a CM's refusal of the client certificate shows up (TLS 1.3)."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, timeout: float, tls: TlsSettings) -> None:
        self.context = context
        self.handshake_done = False
        try:
            super().__init__(host, port, timeout)
        except (OSError, poplib.error_proto) as exc:
            _close(self)
            if self.handshake_done:
                raise classify_after_handshake(exc, tls) from exc
            raise

    def _create_socket(self, timeout: float) -> socket.socket:
        plain = super()._create_socket(timeout)  # type: ignore[misc]  # private, not in typeshed
        sock = self.context.wrap_socket(plain, server_hostname=self.host)
        self.handshake_done = True
        return sock


def _stls(conn: poplib.POP3, context: ssl.SSLContext) -> None:
    """RFC 2595 STLS; never goes on in plain text when the CM does not offer it or refuses it."""
    try:
        capabilities: dict[str, list[str]] | None = conn.capa()
    except poplib.error_proto:
        capabilities = None  # a CM without CAPA may still know STLS: ask it
    if capabilities is not None and "STLS" not in capabilities:
        raise CmStartTlsUnavailable("STLS")
    try:
        conn._shortcmd("STLS")  # type: ignore[attr-defined]  # poplib's stls() would need CAPA
    except poplib.error_proto as exc:
        raise CmStartTlsUnavailable("STLS", _text(exc)) from exc
    conn.sock = context.wrap_socket(conn.sock, server_hostname=conn.host)
    conn.file = conn.sock.makefile("rb")
    conn._tls_established = True  # type: ignore[attr-defined]


def _connect(endpoint: Endpoint) -> poplib.POP3:
    """Connect, secure the connection as configured and check the pin: no credential goes out before."""
    tls = endpoint.tls
    conn: poplib.POP3 | None = None
    handshake_done = False
    try:
        context = client_context(tls) if tls.uses_tls else None
        if tls.transport == IMPLICIT_TLS:
            assert context is not None
            conn = _POP3ImplicitTLS(endpoint.host, endpoint.port, context=context, timeout=endpoint.timeout, tls=tls)
            handshake_done = True
        else:
            conn = poplib.POP3(endpoint.host, endpoint.port, timeout=endpoint.timeout)
            if tls.transport == STARTTLS:
                assert context is not None
                _stls(conn, context)
                handshake_done = True
        if tls.uses_tls:
            verify_pin(conn.sock, tls)
        if tls.transport == STARTTLS:
            # RFC 2595 §4: capabilities may change under TLS; and the first read after the handshake
            # is where a refused client certificate shows up, still before any credential.
            try:
                # Not capa(): it turns every error, a closed connection too, into "CAPA not supported".
                conn._longcmd("CAPA")  # type: ignore[attr-defined]
            except poplib.error_proto as exc:
                if _text(exc) == "-ERR EOF":  # poplib's word for a connection closed by the server
                    raise
        return conn
    except (OSError, poplib.error_proto, CmError) as exc:
        if conn is not None:
            _close(conn)
        if isinstance(exc, CmError):
            raise
        if handshake_done:
            raise classify_after_handshake(exc, tls) from exc
        raise _wrap(exc) from exc


def _close(conn: poplib.POP3) -> None:
    try:
        conn.sock.close()
    except (OSError, AttributeError):
        pass


@contextmanager
def pop3_session(endpoint: Endpoint) -> Iterator[Pop3Session]:
    """Log in; on any error the connection is dropped without QUIT, so no DELE takes effect."""
    conn = _connect(endpoint)
    try:
        try:
            conn.user(endpoint.username)
            conn.pass_(endpoint.password)
        except poplib.error_proto as exc:
            raise _login_error(exc) from exc
        except OSError as exc:
            raise classify_os_error(exc) from exc
        yield Pop3Session(conn)
    finally:
        # The reader made by makefile() keeps the socket open until it is closed too: without this the
        # connection would outlive the session, and the CM keep the maildrop locked ([IN-USE]).
        for close in (lambda: conn.file.close(), lambda: conn.sock.close()):
            try:
                close()
            except (OSError, AttributeError):
                pass


def pop3_login_check(endpoint: Endpoint) -> int:
    """Log in and return the number of messages waiting (STAT)."""
    with pop3_session(endpoint) as session:
        try:
            count, _ = session._conn.stat()
        except (poplib.error_proto, OSError) as exc:
            raise _wrap(exc) from exc
        session.quit()
        return count


__all__ = [
    "ListedMessage",
    "Pop3Refused",
    "Pop3Session",
    "RetrIncomplete",
    "RetrTooLarge",
    "pop3_login_check",
    "pop3_session",
]
