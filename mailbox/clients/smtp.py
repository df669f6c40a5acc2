"""SMTP towards the KIM Clientmodul (I/O only)."""

from __future__ import annotations

import smtplib
import ssl

from mailbox.clients.tls import (
    CmAuthFailed,
    CmError,
    CmProtocolError,
    Endpoint,
    classify_os_error,
    client_context,
    verify_pin,
)


def _connect(endpoint: Endpoint) -> smtplib.SMTP:
    ctx = client_context(endpoint.tls_mode)
    try:
        if ctx is None:
            conn = smtplib.SMTP(endpoint.host, endpoint.port, timeout=endpoint.timeout)
        else:
            # Implicit TLS, as a CM's SMTPS port; the pin is checked before AUTH sends the password.
            conn = smtplib.SMTP_SSL(endpoint.host, endpoint.port, context=ctx, timeout=endpoint.timeout)
            verify_pin(conn.sock, endpoint)
    except (OSError, smtplib.SMTPException, ssl.SSLError, CmError) as exc:
        if isinstance(exc, smtplib.SMTPException) and not isinstance(exc, smtplib.SMTPServerDisconnected):
            raise CmProtocolError(str(exc)) from exc
        raise classify_os_error(exc) from exc
    return conn


def smtp_login_check(endpoint: Endpoint) -> None:
    conn = _connect(endpoint)
    try:
        conn.ehlo()
        conn.login(endpoint.username, endpoint.password)
        conn.quit()
    except smtplib.SMTPAuthenticationError as exc:
        raise CmAuthFailed(_reply(exc)) from exc
    except smtplib.SMTPServerDisconnected as exc:
        raise classify_os_error(exc) from exc
    except smtplib.SMTPException as exc:
        raise CmProtocolError(str(exc)) from exc
    except OSError as exc:
        raise classify_os_error(exc) from exc
    finally:
        conn.close()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    msg = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
    return f"{exc.smtp_code} {msg}"
