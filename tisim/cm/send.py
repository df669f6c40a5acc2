"""Sending as another simulated participant, through the simulator's own SMTP port.

This is what the "other side" of a KIM exchange does: authenticate with a KIM username, pin the
CM's certificate, submit. Used by ``python -m tisim send``.
"""

from __future__ import annotations

import mimetypes
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart
from email.parser import BytesHeaderParser
from email.policy import SMTP, default
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path

from tisim import __version__
from tisim.cm.delivery import FAULT_HEADER
from tisim.cm.maildrop import to_crlf
from tisim.cm.username import build_username
from tisim.config import read_runtime
from tisim.tls import check_pinned, ensure_client_ca, issue_client_certificate, pinning_client_context


class SendError(Exception):
    """Sending failed; the message is meant for a human."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    tls: bool
    fingerprint: str | None
    starttls: bool = False
    client_cert_file: Path | None = None  # cert and key (PEM) when the CM demands mTLS


def smtp_endpoint(data_dir: Path) -> Endpoint:
    runtime = read_runtime(data_dir)
    if runtime is None:
        raise SendError(f"no running simulator: {data_dir / 'cm.json'} does not exist (start `python -m tisim run`)")
    client_cert_file = None
    if runtime.get("require_client_cert"):
        client_cert_file = data_dir / "tls" / "tisim-send-client.pem"
        if not client_cert_file.exists():
            issued = issue_client_certificate(ensure_client_ca(data_dir / "tls"), "tisim-send")
            client_cert_file.touch(mode=0o600)
            client_cert_file.write_text(issued.cert_pem + issued.key_pem, encoding="ascii")
    return Endpoint(
        host=runtime["host"],
        port=int(runtime["smtp_port"]),
        tls=bool(runtime["tls"]),
        fingerprint=runtime.get("fingerprint_sha256"),
        starttls=bool(runtime.get("starttls")),
        client_cert_file=client_cert_file,
    )


def build_message(
    *,
    sender: str,
    to: list[str],
    cc: list[str] | None = None,
    subject: str,
    body: str = "",
    dienstkennung: str | None = None,
    attachments: list[Path] | None = None,
    fault: str | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    if cc:
        msg["Cc"] = ", ".join(cc)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if dienstkennung:
        msg["X-KIM-Dienstkennung"] = dienstkennung
    # The other mandatory client-system headers (kim-protocol §9.1), so the simulated other side
    # follows the rules it checks on the portal.
    msg["X-KIM-Sendersystem"] = f"tisim;{__version__}"
    msg["X-KIM-Support"] = "support@tisim.invalid"
    msg["X-TI-User-Agent"] = f"tisim-Simulator/{__version__}"
    if fault:
        msg[FAULT_HEADER] = fault
    msg.set_content(body)
    for path in attachments or []:
        ctype, encoding = mimetypes.guess_type(path.name)
        if ctype is None or encoding is not None:
            ctype = "application/octet-stream"
        maintype, subtype = ctype.split("/", 1)
        part = MIMEPart(policy=SMTP)
        # The policy writes non-ASCII file names as RFC 2231 parameters (filename*=utf-8''...).
        part.set_content(path.read_bytes(), maintype=maintype, subtype=subtype, filename=path.name)
        if msg.get_content_maintype() != "multipart":
            msg.make_mixed()
        msg.attach(part)  # type: ignore[arg-type]  # typeshed wants an EmailMessage; any MIMEPart works
    return msg


def envelope_of(raw: bytes) -> tuple[str, list[str], str | None]:
    """(sender, recipients, Message-ID) of a prepared message: From picks the account, To/Cc the recipients."""
    headers = BytesHeaderParser(policy=default).parsebytes(raw)
    senders = [addr for _, addr in getaddresses(headers.get_all("From", [])) if addr]
    if len(senders) != 1:
        raise SendError("the message needs exactly one From address")
    recipients = [addr for _, addr in getaddresses(headers.get_all("To", []) + headers.get_all("Cc", [])) if addr]
    if not recipients:
        raise SendError("the message has no To/Cc recipients")
    message_id = headers.get("Message-ID")
    return senders[0], recipients, str(message_id).strip() if message_id else None


def send_raw(
    endpoint: Endpoint,
    *,
    sender: str,
    password: str,
    recipients: list[str],
    raw: bytes,
    timeout: float = 60.0,
) -> None:
    username = build_username(sender)
    try:
        conn: smtplib.SMTP
        context = pinning_client_context()
        if endpoint.client_cert_file is not None:
            context.load_cert_chain(endpoint.client_cert_file)
        if endpoint.tls and not endpoint.starttls:
            conn = smtplib.SMTP_SSL(endpoint.host, endpoint.port, timeout=timeout, context=context)
        else:
            conn = smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)
        with conn:
            if endpoint.starttls:
                conn.ehlo("tisim-send")
                code, reply = conn.starttls(context=context)
                if code != 220:  # smtplib goes on in plain text otherwise
                    raise SendError(f"STARTTLS refused: {code} {reply.decode('utf-8', 'replace')}")
            if endpoint.tls and endpoint.fingerprint:
                assert isinstance(conn.sock, ssl.SSLSocket)
                check_pinned(conn.sock, endpoint.fingerprint)  # before any credential leaves
            conn.ehlo("tisim-send")
            conn.login(username, password)
            # Line ends must be CRLF on the wire; the content itself is sent as it is.
            conn.sendmail(sender, recipients, to_crlf(raw))
    except smtplib.SMTPResponseException as exc:
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        raise SendError(f"SMTP {exc.smtp_code}: {text}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendError(f"recipients refused: {exc.recipients}") from exc
    except (OSError, smtplib.SMTPException) as exc:
        raise SendError(f"{type(exc).__name__}: {exc}") from exc
