"""SMTP towards the KIM Clientmodul (I/O only)."""

from __future__ import annotations

import re
import smtplib
import socket

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
