"""POP3 towards the KIM Clientmodul (I/O only; returns plain data, never touches the ORM)."""

from __future__ import annotations

import poplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mailbox.clients.tls import (
    CmAuthFailed,
    CmError,
    CmProtocolError,
    Endpoint,
    classify_os_error,
    open_connection,
)

# RFC 1939 allows long lines in message content; hostile mail has them. poplib's default of
# 2048 bytes would turn such a mail into a protocol error and block the mailbox forever.
poplib._MAXLINE = 1024 * 1024  # type: ignore[attr-defined]  # private, so typeshed leaves it out


@dataclass(frozen=True)
class ListedMessage:
    number: int
    uidl: str
    size: int


class Pop3Session:
    def __init__(self, conn: poplib.POP3) -> None:
        self._conn = conn

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
        try:
            _, lines, _ = self._conn.retr(number)
        except (poplib.error_proto, OSError) as exc:
            raise _wrap(exc) from exc
        # poplib strips CRLF and undoes dot-stuffing; RFC 5322 messages use CRLF.
        return b"\r\n".join(lines) + b"\r\n"

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


def _wrap(exc: BaseException) -> CmError:
    if isinstance(exc, poplib.error_proto):
        return CmProtocolError(_text(exc))
    return classify_os_error(exc)


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _connect(endpoint: Endpoint) -> poplib.POP3:
    try:
        return open_connection(endpoint, poplib.POP3, poplib.POP3_SSL)
    except (OSError, poplib.error_proto, ssl.SSLError, CmError) as exc:
        raise _wrap(exc) from exc


@contextmanager
def pop3_session(endpoint: Endpoint) -> Iterator[Pop3Session]:
    """Log in; on any error the connection is dropped without QUIT, so no DELE takes effect."""
    conn = _connect(endpoint)
    try:
        try:
            conn.user(endpoint.username)
            conn.pass_(endpoint.password)
        except poplib.error_proto as exc:
            raise CmAuthFailed(_text(exc)) from exc
        except OSError as exc:
            raise classify_os_error(exc) from exc
        yield Pop3Session(conn)
    finally:
        try:
            conn.sock.close()
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


__all__ = ["ListedMessage", "Pop3Session", "pop3_login_check", "pop3_session"]
