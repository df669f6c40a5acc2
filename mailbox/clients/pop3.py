"""POP3 towards the KIM Clientmodul (I/O only; returns plain data, never touches the ORM)."""

from __future__ import annotations

import poplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from mailbox.clients.tls import (
    IMPLICIT_TLS,
    STARTTLS,
    CmAuthFailed,
    CmError,
    CmProtocolError,
    CmStartTlsUnavailable,
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
