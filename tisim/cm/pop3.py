"""The CM's POP3 side (RFC 1939, CAPA and response codes per RFC 2449/3206, AUTH PLAIN per RFC 5034).

A session locks its maildrop, works on a snapshot taken at login, and deletes the messages marked
with DELE only when the client says QUIT (UPDATE state): a dropped connection deletes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from tisim.cm.faults import DropRetr, FaultStore, RetrFault
from tisim.cm.maildrop import MaildropLocked, StoredMessage
from tisim.cm.smtp import CMContext
from tisim.cm.username import KimUsername, UsernameError, parse_username

log = logging.getLogger("tisim.cm.pop3")

CHUNK = 256 * 1024
# RFC 2449 allows 255 octets per command line; be lenient with long KIM usernames and SASL blobs.
LINE_LIMIT = 4096
IDLE_TIMEOUT = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
CAPABILITIES = (
    "USER",
    "SASL PLAIN",
    "UIDL",
    "TOP",
    "RESP-CODES",
    "AUTH-RESP-CODE",
    "PIPELINING",
    "EXPIRE NEVER",
    "IMPLEMENTATION KIM-Clientmodul-Simulator",
)


# What a CM might say with each RFC 2449 response code when a login is refused (fault injection).
LOGIN_FAULT_TEXTS = {
    "AUTH": "Authentication failed",
    "IN-USE": "maildrop is in use by another session",
    "LOGIN-DELAY": "minimum time between logins not yet elapsed",
    "SYS/TEMP": "temporary system problem, try again later",
    "SYS/PERM": "permanent system problem, contact the administrator",
}


class _Dropped(Exception):
    """The session ended on purpose without a clean close (fault injection)."""


def byte_stuff(block: bytes, at_line_start: bool) -> bytes:
    """RFC 1939 §3: a line starting with '.' gets one more. ``block`` may end mid-line."""
    out = block.replace(b"\n.", b"\n..")
    if at_line_start and out.startswith(b"."):
        out = b"." + out
    return out


def _ascii(text: str) -> str:
    return text.encode("ascii", "backslashreplace").decode("ascii")


@dataclass
class Pop3Session:
    context: CMContext
    faults: FaultStore
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_timeout: float = IDLE_TIMEOUT
    username: KimUsername | None = None
    locked: str | None = None  # address whose maildrop this session holds
    messages: list[StoredMessage] = field(default_factory=list)
    deleted: set[int] = field(default_factory=set)  # 0-based indexes into messages
    tls_started: bool = False  # STLS done (only meaningful when the CM offers STLS)

    # --- plumbing ------------------------------------------------------------------------------

    async def send(self, line: str) -> None:
        self.writer.write(line.encode("ascii") + b"\r\n")
        await self.writer.drain()

    async def send_multiline(self, first: str, lines: list[str]) -> None:
        body = "".join(f"{'.' if ln.startswith('.') else ''}{ln}\r\n" for ln in lines)
        self.writer.write(f"{first}\r\n{body}.\r\n".encode("ascii"))
        await self.writer.drain()

    async def run(self) -> None:
        try:
            await self.send("+OK KIM-Clientmodul-Simulator POP3 server ready")
            while True:
                try:
                    line = await asyncio.wait_for(self.reader.readline(), self.idle_timeout)
                except TimeoutError:
                    await self.send("-ERR autologout: idle for too long")
                    return
                except ValueError:  # longer than the reader's limit
                    await self.send("-ERR line too long")
                    return
                if not line:
                    return  # client went away: no UPDATE state, nothing is deleted
                if not line.endswith(b"\n"):
                    return
                if await self.dispatch(line.rstrip(b"\r\n")):
                    return
        except _Dropped:
            pass
        except (OSError, asyncio.IncompleteReadError):  # resets, TLS errors: the client is gone
            pass
        finally:
            if self.locked:
                self.context.store.unlock(self.locked)
                self.locked = None
            if not self.writer.is_closing():
                self.writer.close()

    async def dispatch(self, raw: bytes) -> bool:
        """Handle one command; True ends the session."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            await self.send("-ERR command is not UTF-8")
            return False
        command, _, arg = text.partition(" ")
        command = command.upper()
        self.context.commands.append(("pop3", command[:20]))
        handlers: dict[str, Callable[[str], Awaitable[bool | None]]]
        if self.locked is None and self._awaiting_stls:
            # RFC 2595 §4 with TLS mandatory: no credentials travel before STLS.
            handlers = {
                "CAPA": self.cmd_capa,
                "STLS": self.cmd_stls,
                "USER": self.cmd_needs_tls,
                "PASS": self.cmd_needs_tls,
                "AUTH": self.cmd_needs_tls,
                "APOP": self.cmd_needs_tls,
                "QUIT": self.cmd_quit,
                "NOOP": self.cmd_noop,
            }
        elif self.locked is None:
            handlers = {
                "CAPA": self.cmd_capa,
                "USER": self.cmd_user,
                "PASS": self.cmd_pass,
                "AUTH": self.cmd_auth,
                "QUIT": self.cmd_quit,
                "NOOP": self.cmd_noop,
            }
        else:
            handlers = {
                "CAPA": self.cmd_capa,
                "STAT": self.cmd_stat,
                "LIST": self.cmd_list,
                "UIDL": self.cmd_uidl,
                "RETR": self.cmd_retr,
                "TOP": self.cmd_top,
                "DELE": self.cmd_dele,
                "RSET": self.cmd_rset,
                "NOOP": self.cmd_noop,
                "QUIT": self.cmd_quit,
            }
        handler = handlers.get(command)
        if handler is None:
            state = "AUTHORIZATION" if self.locked is None else "TRANSACTION"
            await self.send(_ascii(f"-ERR command {command[:20]} not valid in {state} state"))
            return False
        return bool(await handler(arg))

    # --- AUTHORIZATION state -------------------------------------------------------------------

    @property
    def _awaiting_stls(self) -> bool:
        return self.context.starttls_context is not None and not self.tls_started

    async def cmd_capa(self, arg: str) -> None:
        if self._awaiting_stls:
            # Before TLS only STLS and what needs no credentials; the login methods follow after it.
            capabilities = ["STLS", *(c for c in CAPABILITIES if c not in ("USER", "SASL PLAIN"))]
        else:
            capabilities = list(CAPABILITIES)
        await self.send_multiline("+OK Capability list follows", capabilities)

    async def cmd_stls(self, arg: str) -> None:
        context = self.context.starttls_context
        assert context is not None
        await self.send("+OK Begin TLS negotiation")
        # Plain text a client pipelined behind STLS must not count as sent under TLS (RFC 2595 §4);
        # StreamReader has no public way to drop its buffer.
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        # A failed handshake (e.g. a refused client certificate) raises an OSError: run() ends the session.
        await self.writer.start_tls(context)
        self.tls_started = True

    async def cmd_needs_tls(self, arg: str) -> None:
        await self.send("-ERR TLS required: send STLS first")

    async def cmd_noop(self, arg: str) -> None:
        await self.send("+OK")

    async def cmd_user(self, arg: str) -> None:
        self.username = None
        try:
            self.username = parse_username(arg, "pop3", allow_plain=self.context.allow_plain_username)
        except UsernameError as exc:
            await self.send(_ascii(f"-ERR [AUTH] Malformed KIM username: {exc}"))
            return
        await self.send("+OK send PASS")

    async def cmd_pass(self, arg: str) -> None:
        if self.username is None:
            await self.send("-ERR USER first")
            return
        username, self.username = self.username, None
        await self.login(username, arg)

    async def cmd_auth(self, arg: str) -> None:
        mechanism, _, initial = arg.strip().partition(" ")
        if not mechanism:
            await self.send_multiline("+OK SASL mechanisms follow", ["PLAIN"])
            return
        if mechanism.upper() != "PLAIN":
            await self.send("-ERR unsupported SASL mechanism")
            return
        if not initial:
            await self.send("+ ")
            initial = (await self.reader.readline()).decode("ascii", "replace").strip()
        if initial == "*":
            await self.send("-ERR authentication cancelled")
            return
        try:
            _authzid, login, password = base64.b64decode(initial, validate=True).decode("utf-8").split("\x00")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            await self.send("-ERR malformed SASL PLAIN response")
            return
        try:
            username = parse_username(login, "pop3", allow_plain=self.context.allow_plain_username)
        except UsernameError as exc:
            await self.send(_ascii(f"-ERR [AUTH] Malformed KIM username: {exc}"))
            return
        await self.login(username, password)

    async def login(self, username: KimUsername, password: str) -> None:
        code = self.faults.take_login(username.address)
        if code is not None:
            # Fault injection: the login fails with an RFC 2449 response code, as a real CM may answer.
            await self.send(_ascii(f"-ERR [{code}] {LOGIN_FAULT_TEXTS.get(code, 'refused')}"))
            return
        if self.context.accounts.get(username.address) != password:
            await self.send("-ERR [AUTH] Authentication failed")
            return
        try:
            self.context.store.lock(username.address)
        except MaildropLocked:
            await self.send(_ascii(f"-ERR [IN-USE] maildrop of {username.address} is in use by another session"))
            return
        self.locked = username.address
        self.messages = self.context.store.list(username.address)
        self.deleted = set()
        count, size = self._totals()
        await self.send(f"+OK maildrop has {count} messages ({size} octets)")

    # --- TRANSACTION state ---------------------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        live = [m for i, m in enumerate(self.messages) if i not in self.deleted]
        return len(live), sum(m.size for m in live)

    async def _message(self, arg: str) -> tuple[int, StoredMessage] | None:
        token = arg.strip().split(" ")[0] if arg.strip() else ""
        if not token.isdigit():
            await self.send("-ERR message number required")
            return None
        index = int(token) - 1
        if not 0 <= index < len(self.messages):
            await self.send(f"-ERR no such message, only {len(self.messages)} messages in maildrop")
            return None
        if index in self.deleted:
            await self.send(f"-ERR message {index + 1} already deleted")
            return None
        return index, self.messages[index]

    async def cmd_stat(self, arg: str) -> None:
        count, size = self._totals()
        await self.send(f"+OK {count} {size}")

    async def cmd_list(self, arg: str) -> None:
        if arg.strip():
            found = await self._message(arg)
            if found:
                await self.send(f"+OK {found[0] + 1} {found[1].size}")
            return
        count, size = self._totals()
        lines = [f"{i + 1} {m.size}" for i, m in enumerate(self.messages) if i not in self.deleted]
        await self.send_multiline(f"+OK {count} messages ({size} octets)", lines)

    async def cmd_uidl(self, arg: str) -> None:
        if arg.strip():
            found = await self._message(arg)
            if found:
                await self.send(f"+OK {found[0] + 1} {found[1].uidl}")
            return
        lines = [f"{i + 1} {m.uidl}" for i, m in enumerate(self.messages) if i not in self.deleted]
        await self.send_multiline("+OK unique-id listing follows", lines)

    async def cmd_dele(self, arg: str) -> None:
        found = await self._message(arg)
        if found:
            self.deleted.add(found[0])
            await self.send(f"+OK message {found[0] + 1} deleted")

    async def cmd_rset(self, arg: str) -> None:
        self.deleted.clear()
        count, size = self._totals()
        await self.send(f"+OK maildrop has {count} messages ({size} octets)")

    async def cmd_quit(self, arg: str) -> bool:
        if self.locked is None:
            await self.send("+OK bye")
            return True
        # UPDATE state (RFC 1939 §6): only now do the DELE marks take effect.
        failed = 0
        for index in sorted(self.deleted):
            try:
                self.context.store.remove(self.messages[index])
            except OSError:
                log.exception("could not remove %s", self.messages[index].path)
                failed += 1
        left = len(self.context.store.list(self.locked))
        # Release before answering: once the client has its +OK, a new login must succeed.
        self.context.store.unlock(self.locked)
        self.locked = None
        if failed:
            await self.send(f"-ERR [SYS/PERM] {failed} messages could not be removed")
        else:
            await self.send(f"+OK KIM-Clientmodul-Simulator signing off ({left} messages left)")
        return True

    async def cmd_retr(self, arg: str) -> None:
        found = await self._message(arg)
        if not found:
            return
        message = found[1]
        assert self.locked is not None
        per_message = self.faults.take_retr(self.locked, message.uidl)
        if per_message is not None and per_message.mode == "err":
            code = f"[{per_message.code}] " if per_message.code else ""
            await self.send(_ascii(f"-ERR {code}message {found[0] + 1} cannot be retrieved (simulated fault)"))
            return
        try:
            fh = open(message.path, "rb")  # closed in the finally below, which spans awaits
        except FileNotFoundError:
            await self.send("-ERR [SYS/TEMP] message vanished from the maildrop")
            return
        if per_message is not None and per_message.mode in ("stall", "short"):
            try:
                await self._retr_cut(fh, per_message)
            finally:
                fh.close()
            return
        fault = self.faults.take_drop_retr(self.locked)
        if per_message is not None and per_message.mode == "drop":
            fault = DropRetr(after_bytes=per_message.after_bytes, times=1)
        try:
            self.writer.write(f"+OK {message.size} octets\r\n".encode("ascii"))
            sent = 0
            at_line_start = True
            # Plain file reads on the loop: page-cache reads of 256 KiB are far cheaper than the
            # TLS writes they feed, and a thread hop per chunk would cost more than it saves.
            while chunk := fh.read(CHUNK):
                out = byte_stuff(chunk, at_line_start)
                at_line_start = chunk.endswith(b"\n")
                if fault is not None and sent + len(out) >= fault.after_bytes:
                    await self._drop(out[: fault.after_bytes - sent], fault)
                self.writer.write(out)
                sent += len(out)
                await self.writer.drain()
            if fault is not None:
                await self._drop(b"", fault)
            self.writer.write(b".\r\n" if at_line_start else b"\r\n.\r\n")
            await self.writer.drain()
        finally:
            fh.close()

    async def _retr_cut(self, fh: BinaryIO, fault: RetrFault) -> None:
        """Send ``after_bytes`` of the message, then stall (nothing more, ever) or end it early with the dot."""
        head = byte_stuff(fh.read(fault.after_bytes), True)
        self.writer.write(f"+OK {fault.after_bytes} octets follow\r\n".encode("ascii") + head)
        await self.writer.drain()
        if fault.mode == "short":
            self.writer.write(b".\r\n" if head.endswith(b"\n") or not head else b"\r\n.\r\n")
            await self.writer.drain()
            return
        log.info("fault stall of RETR for %s", self.locked)
        # Nothing more is sent; the session ends when the client gives up and closes (or after the idle timer).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.reader.read(), self.idle_timeout)
        raise _Dropped

    async def _drop(self, last: bytes, fault: DropRetr) -> None:
        """Send what the fault allows, make sure it left the process, then cut the connection."""
        assert self.locked is not None
        log.info("fault drop_retr for %s after %d bytes", self.locked, fault.after_bytes)
        self.writer.transport.set_write_buffer_limits(high=0)
        self.writer.write(last)
        await self.writer.drain()
        # Release first: a client reconnecting right after the break must not meet [IN-USE].
        self.context.store.unlock(self.locked)
        self.locked = None
        # abort(): no terminating ".", no TLS close_notify, no QUIT handling: a broken connection.
        self.writer.transport.abort()
        raise _Dropped

    async def cmd_top(self, arg: str) -> None:
        parts = arg.split()
        if len(parts) != 2 or not parts[1].isdigit():
            await self.send("-ERR usage: TOP msg n")
            return
        found = await self._message(parts[0])
        if not found:
            return
        try:
            head = _read_top(found[1], int(parts[1]))
        except FileNotFoundError:
            await self.send("-ERR [SYS/TEMP] message vanished from the maildrop")
            return
        self.writer.write(b"+OK top of message follows\r\n")
        self.writer.write(byte_stuff(head, True))
        self.writer.write(b".\r\n" if head.endswith(b"\n") or not head else b"\r\n.\r\n")
        await self.writer.drain()


def _read_top(message: StoredMessage, lines: int) -> bytes:
    """Header block, the blank line and the first ``lines`` body lines, read only as far as needed."""
    buf = bytearray()
    with open(message.path, "rb") as fh:
        body_start = -1
        while body_start < 0:
            if buf.startswith(b"\r\n"):
                body_start = 2
                break
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                body_start = end + 4
                break
            chunk = fh.read(64 * 1024)
            if not chunk:
                return bytes(buf)  # no body at all
            buf += chunk
        cut = body_start
        for _ in range(lines):
            nl = buf.find(b"\n", cut)
            while nl < 0:
                chunk = fh.read(64 * 1024)
                if not chunk:
                    return bytes(buf)
                buf += chunk
                nl = buf.find(b"\n", cut)
            cut = nl + 1
        return bytes(buf[:cut])


class Pop3Server:
    """Accepts connections and keeps track of them, so stopping the simulator can cut them all."""

    def __init__(self, context: CMContext, faults: FaultStore) -> None:
        self.context = context
        self.faults = faults
        self.writers: set[asyncio.StreamWriter] = set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            await Pop3Session(self.context, self.faults, reader, writer).run()
        finally:
            self.writers.discard(writer)

    def abort_all(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()
