"""CMSimulator: the Clientmodul's SMTP and POP3 servers on one asyncio loop in a background thread.

Used by ``python -m tisim run`` and directly by tests. Ports chosen as 0 ("any free port") are kept
after the first start, so ``stop()`` + ``start()`` (or ``restart()``) brings the CM back where
clients expect it — that is how tests simulate "Clientmodul down".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import ssl
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tisim.cm.delivery import Held, release_delayed, release_dsns
from tisim.cm.faults import KINDS, FaultStore
from tisim.cm.headerrules import Violation
from tisim.cm.held import HeldItem, HeldStore
from tisim.cm.maildrop import MaildropStore
from tisim.cm.outside import OutsideDrop, OutsideMessage
from tisim.cm.pop3 import LINE_LIMIT, Pop3Server
from tisim.cm.reports import cm_error_mail
from tisim.cm.sendrules import SendRules
from tisim.cm.smtp import CMContext, KimSMTP, SentRecord, smtp_factory
from tisim.cm.username import is_valid_address
from tisim.config import CONFIG_FILE, RUNTIME_FILE, CMConfig, write_json_atomic
from tisim.tls import (
    Certificate,
    ClientCertificate,
    ensure_certificate,
    ensure_client_ca,
    issue_client_certificate,
    server_context,
)

_START_TIMEOUT = 30.0
VIOLATIONS_FILE = "violations.jsonl"


class CMSimulator:
    def __init__(
        self,
        data_dir: Path,
        accounts: Mapping[str, str] | None = None,
        tls: bool = True,
        host: str = "127.0.0.1",
        smtp_port: int = 0,
        pop3_port: int = 0,
        *,
        starttls: bool = False,
        require_client_cert: bool = False,
        allow_plain_username: bool = False,
        config_path: Path | None = None,
        fachdienst: bool | None = None,
    ) -> None:
        """``tls``: implicit TLS on both ports, or with ``starttls`` plain ports that offer
        STARTTLS/STLS and refuse logins before it. ``require_client_cert``: mTLS with the
        simulator's client CA (see :meth:`issue_client_certificate`). ``fachdienst``: simulate the
        Fachdienst behind the CM (DSNs, outside drop, sender integrity; tisim.cm.sendrules);
        None takes ``<data_dir>/send.json`` (off unless switched on there)."""
        if (starttls or require_client_cert) and not tls:
            raise ValueError("starttls and require_client_cert need tls=True")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.tls = tls
        self.starttls = starttls
        self.require_client_cert = require_client_cert
        self._smtp_port = smtp_port
        self._pop3_port = pop3_port
        # The config file is where `python -m tisim send` finds passwords; cm.json points to it.
        self.config_path = (config_path or self.data_dir / CONFIG_FILE).resolve()
        self._owns_config = config_path is None
        self.faults = FaultStore(self.data_dir)
        self.send_rules = SendRules(self.data_dir)
        self.outside = OutsideDrop(self.data_dir / "outside")
        self.held = Held(
            messages=HeldStore(self.data_dir / "held" / "messages"), dsns=HeldStore(self.data_dir / "held" / "dsns")
        )
        self.context = CMContext(
            store=MaildropStore(self.data_dir / "maildrops"),
            accounts={},
            allow_plain_username=allow_plain_username,
            faults=self.faults,
            rules=self.send_rules,
            outside=self.outside,
            held=self.held,
            fachdienst=fachdienst,
            violations_file=self.data_dir / VIOLATIONS_FILE,
        )
        for address, password in (accounts or {}).items():
            self._check_address(address)
            self.context.accounts[address.lower()] = password
        self._certificate: Certificate | None = None
        self._client_ca: Certificate | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.AbstractServer] = []
        # Weak: a closed connection's protocol should not live until stop().
        self._smtp_protocols: weakref.WeakSet[KimSMTP] = weakref.WeakSet()
        self._pop3: Pop3Server | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        """Bind both servers; returns once they listen (raises if a port is taken)."""
        if self._loop is not None:
            raise RuntimeError("CMSimulator is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls and self._certificate is None:
            self._certificate = ensure_certificate(self.data_dir / "tls")
        if self.require_client_cert and self._client_ca is None:
            self._client_ca = ensure_client_ca(self.data_dir / "tls")
        if self._owns_config:
            self._write_config()
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(target=self._run_loop, args=(loop, ready), name="tisim-cm", daemon=True)
        thread.start()
        ready.wait()
        try:
            asyncio.run_coroutine_threadsafe(self._start_servers(), loop).result(_START_TIMEOUT)
        except BaseException:
            self._shutdown_loop(loop, thread)
            raise
        self._loop, self._thread = loop, thread
        self._write_runtime()

    def stop(self) -> None:
        """Close the listeners and cut every open connection (sessions end without UPDATE)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(self._stop_servers(), loop).result(_START_TIMEOUT)
        finally:
            self._shutdown_loop(loop, thread)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> CMSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @staticmethod
    def _run_loop(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    @staticmethod
    def _shutdown_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_default_executor()

        asyncio.run_coroutine_threadsafe(cancel_rest(), loop).result(_START_TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_START_TIMEOUT)
        loop.close()

    def _ssl(self) -> ssl.SSLContext | None:
        if not (self.tls and self._certificate):
            return None
        return server_context(self._certificate, client_ca=self._client_ca if self.require_client_cert else None)

    async def _start_servers(self) -> None:
        loop = asyncio.get_running_loop()
        make_smtp = smtp_factory(self.context)

        def tracked_smtp() -> KimSMTP:
            protocol = make_smtp()
            self._smtp_protocols.add(protocol)
            return protocol

        self._pop3 = Pop3Server(self.context, self.faults)
        ssl_ctx = self._ssl()
        # STARTTLS: the listeners are plain; the protocols upgrade with the same context on request.
        self.context.starttls_context = ssl_ctx if self.starttls else None
        if self.starttls:
            ssl_ctx = None
        try:
            smtp = await loop.create_server(tracked_smtp, self.host, self._smtp_port, ssl=ssl_ctx)
            self._servers.append(smtp)
            pop3 = await asyncio.start_server(
                self._pop3.handle, self.host, self._pop3_port, ssl=ssl_ctx, limit=LINE_LIMIT
            )
            self._servers.append(pop3)
        except BaseException:
            await self._stop_servers()
            raise
        # Remember the ports the OS picked, so a restart comes back on the same ones.
        self._smtp_port = smtp.sockets[0].getsockname()[1]
        self._pop3_port = pop3.sockets[0].getsockname()[1]

    async def _stop_servers(self) -> None:
        for server in self._servers:
            server.close()
        for protocol in list(self._smtp_protocols):
            if isinstance(protocol.transport, asyncio.Transport):
                protocol.transport.abort()
        self._smtp_protocols.clear()
        if self._pop3 is not None:
            self._pop3.abort_all()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # --- files other processes read ------------------------------------------------------------

    def _write_config(self) -> None:
        # Merge with an existing file: a second simulator on the same data dir (a "restarted
        # process" in tests) must not forget accounts the first one had.
        try:
            config = CMConfig.load(self.config_path)
        except FileNotFoundError:
            config = CMConfig(path=self.config_path, data_dir=self.data_dir)
        config.host, config.tls, config.data_dir = self.host, self.tls, self.data_dir
        config.starttls, config.require_client_cert = self.starttls, self.require_client_cert
        config.allow_plain_username = self.context.allow_plain_username
        config.accounts.update(self.context.accounts)
        self.context.accounts.update({a: p for a, p in config.accounts.items() if a not in self.context.accounts})
        config.save()

    def runtime_info(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "smtp_port": self._smtp_port,
            "pop3_port": self._pop3_port,
            "tls": self.tls,
            "starttls": self.starttls,
            "require_client_cert": self.require_client_cert,
            "fingerprint_sha256": self.fingerprint,
            "data_dir": str(self.data_dir),
            "config": str(self.config_path),
            "pid": os.getpid(),
            "started_at": dt.datetime.now(dt.UTC).isoformat(),
        }

    def _write_runtime(self) -> None:
        write_json_atomic(self.data_dir / RUNTIME_FILE, self.runtime_info())

    def remove_runtime_file(self) -> None:
        (self.data_dir / RUNTIME_FILE).unlink(missing_ok=True)

    # --- properties and test helpers -----------------------------------------------------------

    @property
    def smtp_port(self) -> int:
        return self._smtp_port

    @property
    def pop3_port(self) -> int:
        return self._pop3_port

    @property
    def fingerprint(self) -> str | None:
        """SHA-256 of the TLS certificate (hex, lowercase, no colons); None without TLS."""
        if not self.tls:
            return None
        if self._certificate is None:
            self._certificate = ensure_certificate(self.data_dir / "tls")
        return self._certificate.fingerprint

    @property
    def client_ca_pem(self) -> str:
        """The CA certificate (PEM) whose client certificates the simulator accepts."""
        return self._ensure_client_ca().cert_path.read_text(encoding="ascii")

    def _ensure_client_ca(self) -> Certificate:
        if self._client_ca is None:
            self._client_ca = ensure_client_ca(self.data_dir / "tls")
        return self._client_ca

    def issue_client_certificate(self, common_name: str, **dates: dt.datetime) -> ClientCertificate:
        """A client certificate the simulator accepts (``not_before``/``not_after`` to make bad ones)."""
        return issue_client_certificate(self._ensure_client_ca(), common_name, **dates)

    @property
    def commands_seen(self) -> list[tuple[str, str]]:
        """(protocol, command verb) the servers received, oldest first; arguments are never kept."""
        return list(self.context.commands)

    @property
    def accounts(self) -> dict[str, str]:
        return dict(self.context.accounts)

    @staticmethod
    def _check_address(address: str) -> None:
        if not is_valid_address(address):
            raise ValueError(f"not a valid mail address: {address!r}")

    def add_account(self, address: str, password: str) -> None:
        self._check_address(address)
        self.context.accounts[address.lower()] = password
        if self._owns_config and self.running:
            self._write_config()

    def deliver(self, address: str, raw: bytes) -> str:
        """Put ``raw`` straight into the maildrop (no headers added); returns its UIDL."""
        self._check_address(address)
        return self.context.store.deliver(address, raw)

    def maildrop_uidls(self, address: str) -> list[str]:
        return self.context.store.uidls(address)

    def maildrop_read(self, address: str, uidl: str) -> bytes:
        return self.context.store.read(address, uidl)

    def wait_maildrop_unlocked(self, address: str, timeout: float = 10.0) -> bool:
        """Block until no POP3 session holds ``address`` (e.g. after a client vanished); False on timeout."""
        return self.context.store.wait_unlocked(address, timeout)

    def inject_fault(self, address: str, kind: str, *, after_bytes: int = 1024, times: int | None = 1) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
        self.faults.add(address, kind, after_bytes=after_bytes, times=times)

    def clear_faults(self) -> None:
        self.faults.clear()

    # --- the send side (issue 10) ----------------------------------------------------------------

    @property
    def fachdienst(self) -> bool:
        """Whether the Fachdienst behind the CM is simulated now (DSNs, outside drop, sender integrity)."""
        return self.context.policy().fachdienst

    def set_fachdienst(self, on: bool) -> None:
        """Switch the Fachdienst on or off, also for other processes on this data dir (``send.json``)."""
        self.context.fachdienst = None
        self.send_rules.set_fachdienst(on)

    def outside_messages(self) -> list[OutsideMessage]:
        """Mail for recipients this CM does not host: (envelope_from, recipients, raw) per submission."""
        return self.outside.messages()

    def set_recipient_state(self, address: str, state: str, *, code: str | None = None) -> None:
        """``ok`` | ``unknown`` (failure DSN from the Fachdienst) | ``no-certificate`` (removed by the
        CM, error mail ``code`` — 4004 by default, or 4001/4003/4005; 451 if nobody is left) |
        ``delayed`` (held, "delayed" DSN; see :meth:`release_delayed`)."""
        self.send_rules.set_recipient_state(address, state, code=code)

    def set_sender_without_certificate(self, address: str, *, stage: str = "mail", on: bool = True) -> None:
        """Answer ``553`` to this sender at MAIL FROM (``stage="mail"``), RCPT TO or after DATA."""
        self.send_rules.set_sender_without_certificate(address, stage=stage, on=on)

    def arm_smtp_fault(self, address: str, mode: str, *, times: int | None = 1) -> None:
        """``421`` | ``timeout`` | ``451`` | ``drop-after-data`` | ``timeout-after-data`` for the next
        submission(s) of ``address`` (``*``: any sender); see tisim.cm.faults."""
        self.faults.add_smtp(address, mode, times=times)

    def arm_rcpt_fault(self, address: str, code: str = "450", *, times: int | None = 1) -> None:
        """Refuse the next RCPT TO(s) of the recipient ``address`` with ``code`` (450/451/452 temporary,
        550/554 permanent); the submission's other recipients are accepted. See tisim.cm.faults."""
        self.faults.add_rcpt(address, code, times=times)

    def header_violations(self, message_id: str | None = None) -> list[Violation]:
        """Rule violations in what reached this simulator (kim-protocol §9.1), oldest first;
        only those of one Message-ID if given (as written, with the angle brackets)."""
        with self.context.lock:
            found = list(self.context.violations)
        if message_id is not None:
            found = [v for v in found if (v.message_id or "").strip() == message_id.strip()]
        return found

    def sent_messages(self) -> list[SentRecord]:
        """Submissions this simulator accepted (the last 1,000), oldest first."""
        with self.context.lock:
            return list(self.context.sent)

    def send_error_mail(
        self, message_id: str, code: str, *, recipients: list[str] | None = None, text: str | None = None
    ) -> str:
        """Put a CM error mail (``X-KIM-Fehlermeldung: code``) about a sent message into its sender's
        maildrop; returns its UIDL. ``recipients`` default to all of the message's."""
        if not (code.isdigit() and len(code) == 4) and code[:1] not in ("x", "X"):
            raise ValueError(f"not a CM error code: {code!r}")
        matches = [r for r in self.sent_messages() if (r.message_id or "").strip() == message_id.strip()]
        if not matches:
            raise KeyError(f"no message {message_id} was sent through this simulator")
        record = matches[-1]
        raw = cm_error_mail(
            record.raw,
            sender=record.envelope_from,
            code=code,
            recipients=recipients if recipients is not None else [r.lower() for r in record.recipients],
            text=text,
        )
        return self.context.store.deliver(record.envelope_from, raw)

    def reset_send_state(self) -> None:
        """Forget violations, sent messages, recipient states, senders and the outside drop."""
        with self.context.lock:
            self.context.violations.clear()
            self.context.sent.clear()
            self.context.seen_message_ids.clear()
            (self.data_dir / VIOLATIONS_FILE).unlink(missing_ok=True)
        self.send_rules.reset()
        self.outside.clear()
        self.held.messages.clear()
        self.held.dsns.clear()

    def set_hold_dsns(self, on: bool) -> None:
        """Keep the Fachdienst's DSNs back (``held_dsns()``) until :meth:`release_dsns`; for tests
        that look at a message between "sent" and "delivered"."""
        self.send_rules.set_hold_dsns(on)

    def held_dsns(self) -> list[HeldItem]:
        return self.held.dsns.items()

    def release_dsns(self) -> list[str]:
        """Put every held DSN into its sender's maildrop (oldest first); their UIDLs."""
        return release_dsns(store=self.context.store, held=self.held)

    def delayed_messages(self) -> list[HeldItem]:
        """Mail the Fachdienst holds for recipients in state ``delayed`` (``meta["recipient"]`` …)."""
        return self.held.messages.items()

    def release_delayed(self, address: str | None = None, *, outcome: str = "delivered") -> list[str]:
        """End the delay (for one recipient or all): deliver (``outcome="delivered"``) or give up
        (``"failed"``), each with the DSN its NOTIFY asked for. Returns the recipients released."""
        return release_delayed(
            store=self.context.store,
            accounts=self.context.accounts,
            outside=self.outside,
            held=self.held,
            policy=self.context.policy(),
            recipient=address,
            outcome=outcome,
        )
