"""The CM's SMTP side: aiosmtpd's protocol with KIM authentication and DSN parameters.

Never import ``aiosmtpd.handlers``: it does ``import mailbox``, which in this repository is the
portal's app, not the standard library. The handler here is self-contained.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import ssl
import textwrap
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tisim.cm.delivery import DeliveryReport, Held, Submission, SubmissionRejected, deliver_submission
from tisim.cm.faults import SMTP_DATA_MODES, SMTP_MAIL_MODES, FaultStore
from tisim.cm.headerrules import Violation, check_submission
from tisim.cm.maildrop import MaildropStore
from tisim.cm.messages import CM_HOSTNAME, get_header, split_head
from tisim.cm.messages import Envelope as MailEnvelope
from tisim.cm.outside import OutsideDrop
from tisim.cm.sendrules import SendPolicy, SendRules
from tisim.cm.username import KimUsername, UsernameError, parse_username

log = logging.getLogger("tisim.cm.smtp")

# KIM's limit for large mail (gemSpec_CM_KOMLE, "SIZE 734003200" in the ILF's example dialogue).
SIZE_LIMIT = 734003200
IDENT = "KIM-Clientmodul-Simulator"
# RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the CRLF.
REPLY_LINE_LIMIT = 512


class KimSession(Session):
    """aiosmtpd's Session without the deprecation warning it logs on every successful AUTH."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class KimEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.envid: str | None = None
        self.original_recipients: dict[str, str] = {}
        self.notify: dict[str, frozenset[str]] = {}


_DSN_RCPT = ("NOTIFY", "ORCPT")
_DSN_MAIL = ("RET", "ENVID")
_NOTIFY_VALUES = {"SUCCESS", "FAILURE", "DELAY"}


def _split_params(tail: str, names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """Split the parameters after the address into (others, recognised DSN ones by upper-case name)."""
    others: list[str] = []
    dsn: dict[str, str] = {}
    for token in tail.split():
        name, _, value = token.partition("=")
        if name.upper() in names:
            dsn[name.upper()] = value
        else:
            others.append(token)
    return others, dsn


def fold_reply(reply: str) -> str:
    """Split a one-line reply longer than RFC 5321 allows into a multi-line reply (``250-…``/``250 …``).

    Every line repeats the reply code and, if present, the enhanced status code (RFC 2034 §3).
    A line that already fits, or a reply that is already multi-line, is returned unchanged.
    """
    if "\r\n" in reply or len(reply.encode("ascii", "replace")) + 2 <= REPLY_LINE_LIMIT:
        return reply
    code, _, rest = reply.partition(" ")
    enhanced, _, text = rest.partition(" ")
    if not (len(enhanced.split(".")) == 3 and all(p.isdigit() for p in enhanced.split("."))):
        enhanced, text = "", rest
    prefix = f"{code}-{enhanced} " if enhanced else f"{code}-"
    width = REPLY_LINE_LIMIT - 2 - len(prefix)
    chunks = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]
    lines = [f"{code}-{enhanced + ' ' if enhanced else ''}{chunk}" for chunk in chunks]
    lines[-1] = f"{code} {lines[-1][len(code) + 1 :]}"
    return "\r\n".join(lines)


def _recorded(command: str) -> Callable[..., Any]:
    """aiosmtpd's ``smtp_<command>``, noting the command first; keeps the HELP syntax attributes."""
    original = getattr(SMTP, f"smtp_{command}")

    async def method(self: KimSMTP, arg: str) -> None:
        self._record(command)
        await original(self, arg)

    return functools.update_wrapper(method, original)


class KimSMTP(SMTP):
    """aiosmtpd 1.4.6 rejects every RCPT parameter with 555 and MAIL parameters other than SIZE/BODY.
    KIM clients send ``RCPT TO:<x> NOTIFY=SUCCESS,FAILURE`` (RFC 3461), so the DSN parameters are
    validated and taken off here before aiosmtpd parses the rest."""

    def __init__(
        self,
        handler: Any,
        *,
        starttls_context: ssl.SSLContext | None = None,
        commands: deque[tuple[str, str]] | None = None,
        **kwargs: Any,
    ) -> None:
        if starttls_context is None:
            # TLS (when on) is implicit, below the protocol, where aiosmtpd cannot see it: it would
            # refuse AUTH without STARTTLS, and warn on every connection that AUTH runs without TLS.
            # So: AUTH allowed without (visible) TLS, and "AUTH required" switched on after the constructor.
            super().__init__(handler, auth_required=False, auth_require_tls=False, **kwargs)
        else:
            # STARTTLS: nothing but EHLO/NOOP/QUIT/STARTTLS before TLS (RFC 3207 §4), AUTH only after it.
            # The context is set after the constructor: aiosmtpd would log a warning per connection
            # for a context that asks for client certificates.
            super().__init__(handler, auth_required=False, auth_require_tls=True, **kwargs)
            self.tls_context = starttls_context
            self.require_starttls = True
        self._auth_required = True
        self._commands = commands

    async def push(self, status: Any) -> None:
        await super().push(fold_reply(status) if isinstance(status, str) else status)

    def _record(self, command: str) -> None:
        if self._commands is not None:
            self._commands.append(("smtp", command))

    smtp_EHLO = _recorded("EHLO")
    smtp_STARTTLS = _recorded("STARTTLS")
    smtp_AUTH = _recorded("AUTH")

    def _create_session(self) -> Session:
        return KimSession(self.loop)

    def _create_envelope(self) -> Envelope:
        return KimEnvelope()

    def _dsn_split(self, arg: str | None, keyword: str, names: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
        if arg is None or self.session is None or not self.session.extended_smtp:
            return arg, {}
        stripped = self._strip_command_keyword(keyword, arg)
        if stripped is None:
            return arg, {}
        address, tail = self._getaddr(stripped)
        if not address or tail is None:
            return arg, {}
        head = stripped[: len(stripped) - len(tail)].rstrip()
        others, dsn = _split_params(tail, names)
        return " ".join([f"{keyword}{head}", *others]), dsn

    async def smtp_MAIL(self, arg: str | None) -> None:
        arg, dsn = self._dsn_split(arg, "FROM:", _DSN_MAIL)
        if "RET" in dsn and dsn["RET"].upper() not in ("FULL", "HDRS"):
            await self.push("501 5.5.4 RET must be FULL or HDRS")
            return
        await super().smtp_MAIL(arg)
        if isinstance(self.envelope, KimEnvelope) and self.envelope.mail_from and "ENVID" in dsn:
            self.envelope.envid = dsn["ENVID"]

    async def smtp_RCPT(self, arg: str | None) -> None:
        arg, dsn = self._dsn_split(arg, "TO:", _DSN_RCPT)
        if "NOTIFY" in dsn:
            values = {v.upper() for v in dsn["NOTIFY"].split(",")}
            if not (values == {"NEVER"} or (values and values <= _NOTIFY_VALUES)):
                await self.push("501 5.5.4 NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
                return
        if "ORCPT" in dsn and ";" not in dsn["ORCPT"]:
            await self.push("501 5.5.4 ORCPT must be addr-type;address")
            return
        assert self.envelope is not None
        before = len(self.envelope.rcpt_tos)
        await super().smtp_RCPT(arg)
        if len(self.envelope.rcpt_tos) > before:
            self.envelope.rcpt_options.extend(f"{k}={v}" for k, v in dsn.items())
            if "ORCPT" in dsn and isinstance(self.envelope, KimEnvelope):
                self.envelope.original_recipients[self.envelope.rcpt_tos[-1].lower()] = dsn["ORCPT"]
            if "NOTIFY" in dsn and isinstance(self.envelope, KimEnvelope):
                notify = frozenset(v.upper() for v in dsn["NOTIFY"].split(","))
                self.envelope.notify[self.envelope.rcpt_tos[-1].lower()] = notify


@dataclass
class CMContext:
    """What the protocol handlers share: the maildrops and the live account table."""

    store: MaildropStore
    accounts: dict[str, str]  # lower-cased address -> password
    allow_plain_username: bool = False
    # Set when the ports start plain and offer STARTTLS (SMTP) / STLS (POP3).
    starttls_context: ssl.SSLContext | None = None
    # (protocol, command verb) of recent sessions, never arguments: lets tests prove which
    # commands (e.g. no USER/AUTH) a client sent.
    commands: deque[tuple[str, str]] = field(default_factory=lambda: deque(maxlen=10_000))
    # The send side (issue 10): faults, rules, outside drop; None in contexts built without them.
    faults: FaultStore | None = None
    rules: SendRules | None = None
    outside: OutsideDrop | None = None
    held: Held | None = None
    fachdienst: bool | None = None  # None: as send.json says (default off)
    # Violations are also appended here (JSON lines), for other processes and the demo.
    violations_file: Path | None = None
    # What reached the CM: rule violations and the submissions (newest last), for tests and error mails.
    violations: list[Violation] = field(default_factory=list)
    sent: deque[SentRecord] = field(default_factory=lambda: deque(maxlen=1_000))
    seen_message_ids: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def policy(self) -> SendPolicy:
        if self.rules is None:
            return SendPolicy(fachdienst=bool(self.fachdienst))
        return self.rules.policy(fachdienst=self.fachdienst)


# A submission's full bytes are kept for error mails on demand only up to this size (else its header).
_KEEP_RAW = 1024 * 1024


@dataclass(frozen=True)
class SentRecord:
    envelope_from: str
    recipients: list[str]
    message_id: str | None
    raw: bytes  # the submitted bytes, or only the header block for a large mail
    arrived: dt.datetime
    report: DeliveryReport


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


class KimSMTPHandler:
    def __init__(self, context: CMContext) -> None:
        self.context = context

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        try:
            login = auth_data.login.decode("utf-8")
            password = auth_data.password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False, message="535 5.7.8 Username or password is not UTF-8")
        try:
            username = parse_username(login, "smtp", allow_plain=self.context.allow_plain_username)
        except UsernameError as exc:
            return AuthResult(success=False, handled=False, message=_ascii(f"535 5.7.8 Malformed KIM username: {exc}"))
        if self.context.accounts.get(username.address) != password:
            return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")
        return AuthResult(success=True, handled=False, auth_data=username)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        # Before the final "250 HELP": the ILF's example dialogue advertises these too.
        return [*responses[:-1], "250-ENHANCEDSTATUSCODES", "250-DSN", responses[-1]]

    async def _smtp_fault(self, server: SMTP, address: str, modes: tuple[str, ...]) -> str | None:
        if self.context.faults is None:
            return None
        return self.context.faults.take_smtp(address, modes)

    @staticmethod
    async def _hang(server: SMTP, *, close: bool) -> str:
        """No answer: cut the connection (``close``) or leave it open; either way this coroutine
        waits until aiosmtpd cancels it (connection lost, its idle timeout, or the server stopping)."""
        if close and isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def _no_certificate(self, address: str, stage: str) -> str | None:
        if self.context.rules is None or self.context.policy().sender_stage(address) != stage:
            return None
        # kim-protocol §4.1 (gematik FAQ): the sender's own ENC certificate is missing in the VZD.
        return _ascii(f"553 5.7.1 Sender <{address}> has no valid encryption certificate; message not sent")

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        username = session.auth_data
        assert isinstance(username, KimUsername)
        fault = await self._smtp_fault(server, username.address, SMTP_MAIL_MODES)
        if fault == "421":
            await server.push("421 4.3.2 Service not available, closing transmission channel")
            return await self._hang(server, close=True)
        if fault == "timeout":
            return await self._hang(server, close=False)
        if address.lower() != username.address:
            # The Fachdienst enforces this (A_23421); the simulated CM answers in its place.
            return _ascii(f"550 5.7.1 Sender <{address}> does not match authenticated user <{username.address}>")
        refusal = self._no_certificate(address, "mail")
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        # KIM 1.5: every recipient is accepted here; problems are reported after DATA.
        refusal = self._no_certificate(envelope.mail_from or "", "rcpt")
        if refusal:
            return refusal
        if self.context.faults is not None:
            # An armed refusal of this one recipient (a 4xx the client is to retry, or a 5xx).
            refused = self.context.faults.take_rcpt(address)
            if refused:
                return refused
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None
        content = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        submission = Submission(
            envelope=MailEnvelope(
                sender=envelope.mail_from.lower(),
                helo=session.host_name or "unknown",
                peer=peer,
                arrived=dt.datetime.now().astimezone(),
            ),
            recipients=list(envelope.rcpt_tos),
            content=content,
            original_recipients=getattr(envelope, "original_recipients", {}),
            envid=getattr(envelope, "envid", None),
            notify=getattr(envelope, "notify", {}),
        )
        refusal = self._no_certificate(submission.envelope.sender, "data")
        if refusal:
            return refusal
        fault = await self._smtp_fault(server, submission.envelope.sender, SMTP_DATA_MODES)
        if fault == "451":
            return "451 4.3.0 Local error in processing"
        loop = asyncio.get_running_loop()
        try:
            # Disk writes off the loop: a 20 MB mail must not stall concurrent POP3 sessions.
            report = await loop.run_in_executor(None, lambda: self._process(submission))
        except SubmissionRejected as exc:
            log.info("rejected mail from %s: %s", submission.envelope.sender, exc.reply)
            return _ascii(exc.reply)
        except Exception:
            log.exception("delivery failed")
            return "451 4.3.0 Local error in processing"
        if fault in ("drop-after-data", "timeout-after-data"):
            # Delivered, DSNs written: the client just never learns it (the "worker died after DATA" case).
            return await self._hang(server, close=fault == "drop-after-data")
        if report.removed:
            return _ascii(
                f"250 2.0.0 OK, delivered to {len(report.delivered)} of "
                f"{len(report.delivered) + len(report.removed)} recipients; "
                f"removed (no valid encryption certificate): {', '.join(report.removed)}"
            )
        return "250 2.0.0 OK"

    def _process(self, submission: Submission) -> DeliveryReport:
        """Check the rules, deliver, remember; runs in an executor thread."""
        context = self.context
        policy = context.policy()
        sender = submission.envelope.sender
        with context.lock:
            seen = set(context.seen_message_ids)
        violations = check_submission(
            submission.content,
            sender=sender,
            recipients=[r.lower() for r in submission.recipients],
            enforce_integrity=policy.fachdienst,
            seen_message_ids=seen,
        )
        message_id = get_header(submission.content, "Message-ID")
        with context.lock:
            context.violations.extend(violations)
            if violations and context.violations_file is not None:
                with open(context.violations_file, "a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(asdict(v), ensure_ascii=False) + "\n" for v in violations)
        refused = [v for v in violations if v.refused]
        if refused:
            # A_23421/A_23422: the Fachdienst refuses the mail; the CM passes its answer on.
            raise SubmissionRejected("550 5.7.1 Sender integrity: " + "; ".join(v.detail for v in refused))
        report = deliver_submission(
            submission,
            store=context.store,
            accounts=context.accounts,
            policy=policy,
            outside=context.outside,
            held=context.held,
        )
        content = submission.content
        raw = content if len(content) <= _KEEP_RAW else split_head(content)[0]
        record = SentRecord(sender, list(submission.recipients), message_id, raw, submission.envelope.arrived, report)
        with context.lock:
            if message_id:
                context.seen_message_ids.add(message_id.strip())
            context.sent.append(record)
        return report


def smtp_factory(context: CMContext, *, hostname: str = CM_HOSTNAME) -> Callable[[], KimSMTP]:
    handler = KimSMTPHandler(context)

    def factory() -> KimSMTP:
        return KimSMTP(
            handler,
            starttls_context=context.starttls_context,
            commands=context.commands,
            hostname=hostname,
            ident=IDENT,
            data_size_limit=SIZE_LIMIT,
            authenticator=handler.authenticate,
        )

    return factory
