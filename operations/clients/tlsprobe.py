"""The certificate a TLS server presents, read from a handshake (I/O only; nothing is logged in or sent).

Used for the Clientmodul's POP3 port: implicit TLS (POP3S) or STLS (RFC 2595) after the greeting. The
certificate is read, not trusted: whether the portal trusts it is the business of the login itself (pinning or
CA, mailbox.clients.tls); this only tells how long it stays valid.
"""

from __future__ import annotations

import socket
import ssl


class ProbeError(Exception):
    """The server could not be reached, did not speak TLS, or refused STLS."""


def _context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # read only: the date is what matters here
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < 1024:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def pop3_server_certificate(host: str, port: int, *, starttls: bool, timeout: float) -> bytes:
    """The DER of the server's certificate. ``starttls``: plain greeting, then STLS, then the handshake."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(timeout)
            if starttls:
                if not _line(raw).startswith(b"+OK"):
                    raise ProbeError("no POP3 greeting")
                raw.sendall(b"STLS\r\n")
                if not _line(raw).startswith(b"+OK"):
                    raise ProbeError("STLS refused")
            with _context().wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
    except ProbeError:
        raise
    except (OSError, ssl.SSLError) as exc:
        raise ProbeError(str(exc) or exc.__class__.__name__) from exc
    if not der:
        raise ProbeError("no certificate")
    return der
