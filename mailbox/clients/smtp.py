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
    open_connection,
)


def _connect(endpoint: Endpoint) -> smtplib.SMTP:
    try:
        # Implicit TLS, as a CM's SMTPS port; the pin is checked before AUTH sends the password.
        return open_connection(endpoint, smtplib.SMTP, smtplib.SMTP_SSL)
    except (OSError, smtplib.SMTPException, ssl.SSLError, CmError) as exc:
        if isinstance(exc, smtplib.SMTPException) and not isinstance(exc, smtplib.SMTPServerDisconnected):
            raise CmProtocolError(str(exc)) from exc
        raise classify_os_error(exc) from exc


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
