"""SMTP towards the KIM Clientmodul (I/O only)."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from mailbox.clients.tls import (
    IMPLICIT_TLS,
    STARTTLS,
    CmAuthFailed,
    CmError,
    CmProtocolError,
    CmStartTlsUnavailable,
    Endpoint,
    classify_after_handshake,
    classify_os_error,
    client_context,
    verify_pin,
)


class _SMTPImplicitTLS(smtplib.SMTP_SSL):
    """SMTP_SSL that notes when its handshake is done, so a failure after it can be told apart."""

    handshake_done = False

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)  # type: ignore[misc]  # private, not in typeshed
        self.handshake_done = True
        return sock


def _connect(endpoint: Endpoint) -> smtplib.SMTP:
    """Connect, secure the connection as configured, check the pin and say EHLO: ready for AUTH.

    No credential is sent in here, and none can follow before the handshake and the pin check.
    STARTTLS never falls back to plain text: a CM that does not offer it or refuses it is an error.
    """
    tls = endpoint.tls
    conn: smtplib.SMTP | None = None
    handshake_done = False
    try:
        context = client_context(tls) if tls.uses_tls else None
        if tls.transport == IMPLICIT_TLS:
            implicit = _SMTPImplicitTLS(context=context, timeout=endpoint.timeout)
            # The TLS server name; the constructor sets it only when it connects itself.
            implicit._host = endpoint.host  # type: ignore[attr-defined]
            conn = implicit
            try:
                implicit.connect(endpoint.host, endpoint.port)
            finally:
                handshake_done = implicit.handshake_done
        else:
            conn = smtplib.SMTP(endpoint.host, endpoint.port, timeout=endpoint.timeout)
            if tls.transport == STARTTLS:
                conn.ehlo()
                if not conn.has_extn("starttls"):
                    raise CmStartTlsUnavailable("STARTTLS")
                try:
                    code, reply = conn.starttls(context=context)
                except smtplib.SMTPResponseException as exc:
                    raise CmStartTlsUnavailable("STARTTLS", _reply(exc)) from exc
                if code != 220:  # older smtplib versions carried on in plain text here
                    raise CmStartTlsUnavailable("STARTTLS", f"{code} {reply.decode('utf-8', 'replace')}")
                handshake_done = True
        if tls.uses_tls:
            verify_pin(conn.sock, tls)
        conn.ehlo()
        return conn
    except (OSError, smtplib.SMTPException, CmError) as exc:
        if conn is not None:
            conn.close()
        if isinstance(exc, CmError):
            raise
        if handshake_done:
            raise classify_after_handshake(exc, tls) from exc
        if isinstance(exc, smtplib.SMTPResponseException):
            raise CmProtocolError(_reply(exc)) from exc
        if isinstance(exc, smtplib.SMTPException) and not isinstance(exc, smtplib.SMTPServerDisconnected):
            raise CmProtocolError(str(exc)) from exc
        raise classify_os_error(exc) from exc


def smtp_login_check(endpoint: Endpoint) -> None:
    conn = _connect(endpoint)
    try:
        conn.login(endpoint.username, endpoint.password)
        conn.quit()
    except smtplib.SMTPServerDisconnected as exc:
        raise classify_os_error(exc) from exc
    except smtplib.SMTPException as exc:
        raise smtp_error(exc) from exc
    except OSError as exc:
        raise classify_os_error(exc) from exc
    finally:
        conn.close()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    msg = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {msg}"


class SmtpRefused(CmError):
    """The CM answered with an SMTP error reply: ``code`` (4xx temporary, 5xx permanent), RFC 3463 ``enhanced``."""

    def __init__(self, code: int, enhanced: str, text: str) -> None:
        super().__init__(f"{code} {text}".strip())
        self.code = code
        self.enhanced = enhanced
        self.temporary = 400 <= code < 500
        # Where in the dialogue: "mail", "rcpt", "data" (the DATA command) or "end_of_data" (the final dot).
        self.stage = ""
        # At "rcpt": every recipient was refused, each with its own reply (address → "code text").
        self.refused: dict[str, str] = {}


_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s*")


def smtp_error(exc: smtplib.SMTPException) -> CmError:
    """Map an smtplib error to the CM error family: 535/5.7.8 is the password, other replies say what they say.

    A 454 4.7.0 ("temporary authentication failure") is not a wrong password: it must be retried,
    not shown as one.
    """
    if not isinstance(exc, smtplib.SMTPResponseException):
        return CmProtocolError(str(exc))
    text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    match = _ENHANCED.match(text)
    enhanced = match.group(1) if match else ""
    if exc.smtp_code == 535 or enhanced == "5.7.8":
        return CmAuthFailed(_reply(exc))
    return SmtpRefused(exc.smtp_code, enhanced, text)


# --- sending ----------------------------------------------------------------------------------------------


class SmtpOutcomeUnknown(CmError):
    """The whole message, with its end-of-data dot, went out, but no answer came back (connection lost,
    timeout): the CM may have taken it. Never to be retried automatically (docs/sending.md)."""


@dataclass(frozen=True)
class SmtpSendResult:
    code: int
    text: str
    # Recipients the CM refused at RCPT (address → "code text"); KIM 1.5 CMs accept every RCPT.
    refused: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MessageSource:
    """A message to submit, read in chunks while DATA goes out: it is never needed whole in memory.

    ``size`` and ``eight_bit`` are announced at MAIL FROM (SIZE=, BODY=8BITMIME); ``chunks()`` gives the bytes
    once. An error it raises before its end stops the DATA before the end-of-data sequence.
    """

    size: int
    eight_bit: bool
    chunks: Callable[[], Iterable[bytes]]

    @classmethod
    def of_bytes(cls, raw: bytes) -> MessageSource:
        return cls(len(raw), not raw.isascii(), lambda: (raw,))


class MessageUnreadable(Exception):
    """The message's bytes could not be read while DATA went out (no CM error): the end of DATA was not sent."""


# Any line end (CRLF, LF, a CR alone) becomes CRLF; a CR ending a chunk waits for the next chunk's first byte.
# mailbox.services.compose.crlf_lines keeps a lone CR (the stored message stays as it was built); here it must
# become CRLF, since SMTP sends CR and LF only as CRLF (RFC 5321 §2.3.8). Hence two writers, not one: fed
# through crlf_lines first, a CR at the very end would go out as two line ends instead of one.
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_DOT_AFTER_LF = re.compile(rb"\n\.")


def dot_stuffed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The DATA content: CRLF line ends and RFC 5321 §4.5.2 dot-stuffing, ending with CRLF (the final dot follows
    separately), chunk by chunk: the same bytes however the message is cut (a line's leading dot, or a CR and its
    LF, on either side of a chunk's edge).

    A chunk that needs no change (the portal's own messages: CRLF only, no line starting with a dot) is passed on
    as it is; others are rewritten a slice at a time, so memory stays a few times a slice, not a chunk.
    """
    pending_cr = False
    at_line_start = True
    ends_crlf = False
    for chunk in chunks:
        if not pending_cr and _clean(chunk, at_line_start):
            if chunk:
                at_line_start = ends_crlf = chunk.endswith(b"\n")
                yield chunk
            continue
        for start in range(0, len(chunk), _SLICE_BYTES):
            piece = chunk[start : start + _SLICE_BYTES]
            if pending_cr:
                piece = b"\r" + piece
            pending_cr = piece.endswith(b"\r")
            if pending_cr:
                piece = piece[:-1]
            if not piece:
                continue
            data = _DOT_AFTER_LF.sub(b"\n..", _LINE_END.sub(b"\r\n", piece))
            if at_line_start and data.startswith(b"."):
                data = b"." + data
            at_line_start = ends_crlf = data.endswith(b"\n")
            yield data
    if pending_cr:
        yield b"\r\n"
    elif not ends_crlf:
        yield b"\r\n"


_SLICE_BYTES = 64 * 1024


def _clean(chunk: bytes, at_line_start: bool) -> bool:
    """Whether *chunk* goes on the wire unchanged: every line end CRLF, no CR alone, no line starting with a dot."""
    lf = chunk.count(b"\n")
    return (
        chunk.count(b"\r") == lf
        and chunk.count(b"\r\n") == lf
        and b"\n." not in chunk
        and not (at_line_start and chunk.startswith(b"."))
    )


def _read(chunks: Iterable[bytes]) -> Iterator[bytes]:
    # A failing disk must not look like a failing connection (OSError is what the socket raises).
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except OSError as exc:
            raise MessageUnreadable(str(exc) or exc.__class__.__name__) from exc
        yield chunk


def smtp_send(
    endpoint: Endpoint,
    *,
    mail_from: str,
    recipients: list[str],
    raw: bytes | MessageSource,
    notify: str | None = "SUCCESS,FAILURE,DELAY",
    before_final_dot: Callable[[], None] | None = None,
) -> SmtpSendResult:
    """Submit one message: AUTH, MAIL FROM, RCPT TO (with NOTIFY and ORCPT), DATA, QUIT.

    To a CM that offers DSN, every RCPT carries ``ORCPT=rfc822;<the address>`` (RFC 3461 §4.2): a report then
    names the address we sent to as its Original-Recipient even when the Fachdienst rewrote the recipient
    (case, alias, forwarding) on the way, and ``mailbox.services.dsn`` matches it by that. *recipients* are the
    addresses as the user entered them (lower-cased when entered, never rewritten after).

    *raw* is the message, or a MessageSource that gives it in chunks: DATA sends it a chunk at a time, so a
    large message is never held whole (nor its dot-stuffed copy).

    ``before_final_dot`` runs after the content is written and before the end-of-data sequence: until
    that sequence reaches the CM the message cannot be delivered; after it, it may be. Errors before it
    are SmtpRefused / the CmError family (nothing was delivered); a lost answer after it is
    SmtpOutcomeUnknown. A refusal of the final dot (451, 553 …) is SmtpRefused with ``stage="end_of_data"``.
    An error of the source while DATA goes out (MessageUnreadable, or what it raises) ends the connection
    without the end-of-data sequence: the CM drops the unfinished message.
    """
    source = raw if isinstance(raw, MessageSource) else MessageSource.of_bytes(raw)
    conn = _connect(endpoint)
    final_dot_sent = False
    try:
        try:
            conn.login(endpoint.username, endpoint.password)
            esmtp = conn.does_esmtp
            mail_options: list[str] = []
            if esmtp and conn.has_extn("8bitmime") and source.eight_bit:
                mail_options.append("BODY=8BITMIME")
            if esmtp and conn.has_extn("size"):
                mail_options.append(f"SIZE={source.size}")
            code, reply = conn.mail(mail_from, mail_options)
            if code != 250:
                raise _refused(code, reply, "mail")
            dsn = esmtp and conn.has_extn("dsn")
            notify_options = [f"NOTIFY={notify}"] if notify and dsn else []
            refused: dict[str, str] = {}
            accepted = 0
            last_refusal: tuple[int, bytes] | None = None
            for address in recipients:
                code, reply = conn.rcpt(address, notify_options + (_orcpt(address) if dsn else []))
                if code in (250, 251):
                    accepted += 1
                else:
                    refused[address] = f"{code} {reply.decode('utf-8', 'replace')}"
                    last_refusal = (code, reply)
            if not accepted:
                assert last_refusal is not None
                conn.rset()
                refusal = _refused(*last_refusal, "rcpt")
                refusal.refused = refused
                raise refusal
            code, reply = conn.docmd("DATA")
            if code != 354:
                raise _refused(code, reply, "data")
            for data in dot_stuffed(_read(source.chunks())):
                conn.send(data)
            if before_final_dot is not None:
                before_final_dot()
            final_dot_sent = True
            conn.send(b".\r\n")
            code, reply = conn.getreply()
            if code != 250:
                raise _refused(code, reply, "end_of_data")
            result = SmtpSendResult(code, reply.decode("utf-8", "replace"), refused)
        except smtplib.SMTPServerDisconnected as exc:
            if final_dot_sent:
                raise SmtpOutcomeUnknown(str(exc) or "connection closed after DATA") from exc
            raise classify_os_error(exc) from exc
        except SmtpRefused:
            raise
        except smtplib.SMTPException as exc:
            raise smtp_error(exc) from exc
        except OSError as exc:
            if final_dot_sent:
                raise SmtpOutcomeUnknown(str(exc) or exc.__class__.__name__) from exc
            raise classify_os_error(exc) from exc
        # QUIT is required (ILF); a failure after the 250 changes nothing.
        with contextlib.suppress(smtplib.SMTPException, OSError):
            conn.quit()
        return result
    finally:
        conn.close()


def xtext(value: str) -> str:
    """RFC 3461 §4: "+", "=" and every octet outside "!".."~" (of the UTF-8 bytes) as "+" and two upper-case hex
    digits."""
    return "".join(chr(b) if 0x21 <= b <= 0x7E and b not in b"+=" else f"+{b:02X}" for b in value.encode())


def _orcpt(address: str) -> list[str]:
    # The rfc822 address type holds US-ASCII only (RFC 3461 §4.2); a non-ASCII address goes without ORCPT and
    # its reports are matched by Final-Recipient, as without one.
    return [f"ORCPT=rfc822;{xtext(address)}"] if address.isascii() else []


def _refused(code: int, reply: bytes, stage: str) -> SmtpRefused:
    text = reply.decode("utf-8", "replace")
    match = _ENHANCED.match(text)
    if code == 535:
        raise CmAuthFailed(f"{code} {text}")
    refused = SmtpRefused(code, match.group(1) if match else "", text)
    refused.stage = stage
    return refused
