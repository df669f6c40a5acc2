"""LDAP I/O with the VZD (through the Konnektor's LDAP proxy, or tisim's slapd). No ORM, no domain logic.

- anonymous bind, base ``dc=data,dc=vzd``, LDAP or LDAPS;
- LDAPS as a Konnektor needs it: its certificate names the card, not the host (CN = ICCSN + date), so it is
  checked against a configured CA file or a pinned SHA-256 fingerprint *without* a host-name check, and the
  Konnektor may demand a client certificate (the client-system certificate from its admin UI, key optionally
  password-protected). Without either, the system trust store and the host name are checked as usual;
- a small pool of synchronous ldap3 connections: a connection is used by one thread at a time (ldap3's SYNC
  strategy is not thread-safe per connection), idle ones are reused, broken ones dropped;
- connect timeout on the socket, search timeout both as socket receive timeout and as server time limit;
- sizeLimitExceeded (the VZD's 100-entry cap) is a normal, truncated result;
- a directory that let a network timeout pass is not asked again for a pause (``retry_pause``): every search
  meanwhile fails at once with the same timeout, instead of holding a request thread (and one of the server's few
  request slots) for seconds per keystroke of a live search.

Filters come in ready-made from ``directory.ldapfilter`` (which escapes every value).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import queue
import re
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import ldap3
from ldap3.core import exceptions as ldap_exc

SIZE_LIMIT_EXCEEDED = 4
TIME_LIMIT_EXCEEDED = 3
_clock = time.monotonic  # tests replace it to end a pause without waiting


class VzdError(Exception):
    """Base class: the directory could not answer."""


class VzdUnavailable(VzdError):
    """Connection refused, TLS failure, connection lost."""


class VzdTimeout(VzdError):
    """The directory accepted but did not answer in time."""


class VzdTlsError(VzdUnavailable):
    """TLS with the directory failed in a way an administrator must fix; ``kind`` says which:

    - ``config``: the TLS settings themselves are unusable (``setting`` names which one);
    - ``pin_mismatch``: the server's certificate is not the pinned one (``actual`` is its fingerprint);
    - ``untrusted``: the server's certificate is not issued by the configured CA;
    - ``client_cert_rejected``: the server demands a client certificate and got none, or refused ours.
    """

    def __init__(self, kind: str, detail: str, *, setting: str = "", actual: str = "") -> None:
        super().__init__(detail)
        self.kind = kind
        self.setting = setting
        self.actual = actual


class _PinMismatch(ssl.SSLError):
    """Raised inside ldap3's socket wrapping; ldap3 re-creates it from its message, hence the parsable text."""

    PREFIX = "VZD certificate fingerprint mismatch, got "

    @classmethod
    def for_fingerprint(cls, actual: str) -> _PinMismatch:
        return cls(f"{cls.PREFIX}{actual}")


_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def normalize_fingerprint(value: str) -> str:
    """``AB:CD:…``, ``ab cd …``, ``SHA256:abcd…`` → ``abcd…``; "" if it is not a SHA-256 fingerprint."""
    text = value.strip().lower()
    for prefix in ("sha256:", "sha-256:", "sha256/", "sha256="):
        text = text.removeprefix(prefix)
    text = re.sub(r"[\s:]", "", text)
    return text if _FINGERPRINT.fullmatch(text) else ""


def display_fingerprint(value: str) -> str:
    """The form Konnektor admin pages show: upper case, colon-separated."""
    return ":".join(value[i : i + 2] for i in range(0, len(value), 2)).upper()


@dataclass(frozen=True)
class VzdConfig:
    url: str = "ldap://127.0.0.1:8389"
    base_dn: str = "dc=data,dc=vzd"
    connect_timeout: float = 5.0
    search_timeout: float = 5.0
    retry_pause: float = 15.0  # seconds without asking after a network timeout
    ca_file: str = ""
    pool_size: int = 4
    tls_pin: str = ""  # SHA-256 fingerprint of the server certificate (any common notation)
    client_cert_file: str = ""  # PEM; may also hold the key
    client_key_file: str = ""
    client_key_password: str = field(default="", repr=False)


@dataclass(frozen=True)
class VzdRecord:
    dn: str
    # attribute name (lower case) → values; text as str, binary attributes (";binary") as bytes
    attributes: dict[str, list] = field(default_factory=dict)

    def values(self, name: str) -> list:
        return self.attributes.get(name.lower(), [])

    def first(self, name: str, default: str = "") -> str:
        vals = self.values(name)
        return vals[0] if vals else default


@dataclass(frozen=True)
class VzdSearchResult:
    records: list[VzdRecord]
    truncated: bool  # the server's size limit cut the result
    elapsed_ms: float


def _attributes(item: dict) -> dict[str, list]:
    """Text attributes as ldap3 decoded them (str: the VZD's DirectoryString syntax guarantees UTF-8, slapd
    enforces it), ";binary" attributes as raw bytes. No per-value work: this runs for up to 100 × 13 values."""
    out: dict[str, list] = {}
    for name, values in item["attributes"].items():
        out[name.lower()] = values if type(values) is list else [values]
    for name, values in item["raw_attributes"].items():
        if ";binary" in name:
            out[name.lower()] = values
    return out


class _KonnektorTls(ldap3.Tls):
    """One SSLContext, built (and so checked) once: TLS 1.2+, the CA file or the pin instead of a host-name check,
    the client certificate if configured. ldap3's own wrapping would check the host name against the CN."""

    def __init__(self, config: VzdConfig, host: str) -> None:
        super().__init__(validate=ssl.CERT_NONE)
        self.host = host
        self.pin = normalize_fingerprint(config.tls_pin) if config.tls_pin else ""
        if config.tls_pin and not self.pin:
            raise VzdTlsError(
                "config", f"TLS configuration: {config.tls_pin!r} is no SHA-256 fingerprint", setting="pin"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # TIP1-A_4962
        if config.ca_file:
            try:
                context.load_verify_locations(cafile=config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise VzdTlsError(
                    "config", f"TLS configuration (CA file {config.ca_file!r}): {exc}", setting="ca_file"
                ) from exc
            context.check_hostname = False
            context.verify_mode = ssl.CERT_REQUIRED
        elif self.pin:
            # Trust comes from the pin, checked right after the handshake.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)  # a public certificate: host name checked too
        if config.client_cert_file:
            try:
                context.load_cert_chain(
                    config.client_cert_file,
                    keyfile=config.client_key_file or None,
                    password=config.client_key_password or None,
                )
            except (OSError, ssl.SSLError) as exc:
                raise VzdTlsError(
                    "config",
                    f"TLS configuration (client certificate {config.client_cert_file!r}"
                    f"{f', key {config.client_key_file!r}' if config.client_key_file else ''}): {exc}",
                    setting="client_cert",
                ) from exc
        self.context = context

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        wrapped = self.context.wrap_socket(
            connection.socket,
            server_side=False,
            do_handshake_on_connect=do_handshake,
            server_hostname=self.host if self.context.check_hostname else None,
        )
        if self.pin:
            if not do_handshake:
                wrapped.do_handshake()
            der = wrapped.getpeercert(binary_form=True) or b""
            actual = hashlib.sha256(der).hexdigest()
            if not hmac.compare_digest(actual, self.pin):
                wrapped.close()
                raise _PinMismatch.for_fingerprint(actual)
        connection.socket = wrapped


class VzdClient:
    def __init__(self, config: VzdConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError(f"KIMPORTAL_VZD_URL must be ldap:// or ldaps://host[:port], got {config.url!r}")
        use_ssl = parts.scheme == "ldaps"
        tls = None
        # A broken TLS setup (a missing CA file, a malformed pin …) must not become an error page: searches
        # report it.
        self._config_error: VzdTlsError | None = None
        try:
            if use_ssl:
                tls = _KonnektorTls(config, parts.hostname)
            elif config.tls_pin or config.ca_file or config.client_cert_file:
                # Certificates configured for plain LDAP would protect nothing: say so instead of ignoring them.
                raise VzdTlsError(
                    "config",
                    "TLS configuration: CA file, pin or client certificate need an ldaps:// URL",
                    setting="url",
                )
        except VzdTlsError as exc:
            self._config_error = exc
        self._server = ldap3.Server(
            parts.hostname,
            port=parts.port or (636 if use_ssl else 389),
            use_ssl=use_ssl,
            tls=tls,
            get_info=ldap3.NONE,  # the Konnektor proxy may publish no schema; we normalise values ourselves
            connect_timeout=config.connect_timeout,
        )
        self._idle: queue.LifoQueue[ldap3.Connection] = queue.LifoQueue()
        # Bounds the number of open connections; each is used by one thread at a time.
        self._slots = threading.BoundedSemaphore(max(1, config.pool_size))
        self._quiet_until = 0.0  # _clock() value before which the directory is not asked (after a timeout)

    def _noted(self, error: VzdError) -> VzdError:
        """The error, and a pause when it is a network timeout (a plain float: the GIL makes its writes atomic)."""
        if isinstance(error, VzdTimeout):
            self._quiet_until = _clock() + self.config.retry_pause
        return error

    def _connect(self) -> ldap3.Connection:
        conn = ldap3.Connection(
            self._server,
            authentication=ldap3.ANONYMOUS,
            client_strategy=ldap3.SYNC,
            read_only=True,
            # ldap3 packs this into SO_RCVTIMEO as an integer (struct 'LL'): whole seconds only.
            receive_timeout=max(1, math.ceil(self.config.search_timeout)),
            raise_exceptions=False,
            check_names=False,
        )
        try:
            conn.open()
        except ldap_exc.LDAPException as exc:
            raise self._noted(self._translate(exc)) from exc
        try:
            conn.bind()
        except ldap_exc.LDAPException as exc:
            error = self._translate(exc)
            if self._server.ssl and type(error) is VzdUnavailable:
                # The handshake succeeded and the connection died before the anonymous bind was answered: what a
                # server does under TLS 1.3 when it demands a client certificate and got none (or one it does not
                # accept) — often without an alert the client could read.
                error = VzdTlsError("client_cert_rejected", str(exc))
            self._discard(conn)
            raise self._noted(error) from exc
        return conn

    @staticmethod
    def _translate(exc: BaseException) -> VzdError:
        message = str(exc)
        text = message.lower()
        if _PinMismatch.PREFIX.lower() in text:
            actual = text.split(_PinMismatch.PREFIX.lower(), 1)[1][:64]
            return VzdTlsError("pin_mismatch", message, actual=actual)
        # Alerts the server sends about *our* certificate (missing with TLSVerifyClient demand, or not from its CA);
        # with TLS 1.3 they arrive on the first read, i.e. at bind, not during the handshake.
        if any(
            alert in text
            for alert in (
                "certificate required",
                "alert handshake failure",
                "alert bad certificate",
                "alert unknown ca",
            )
        ):
            return VzdTlsError("client_cert_rejected", message)
        if "certificate_verify_failed" in text or "certificate verify failed" in text:
            return VzdTlsError("untrusted", message)
        if "timed out" in text or "timeout" in text:
            return VzdTimeout(message)
        return VzdUnavailable(message)

    @staticmethod
    def _discard(conn: ldap3.Connection) -> None:
        try:
            conn.unbind()
        except Exception:  # closing a broken socket may fail in many ways; it is gone either way
            conn.closed = True

    def search(self, ldap_filter: str, attributes: Sequence[str]) -> VzdSearchResult:
        """Subtree search under the base DN; returns at most the server's size limit, flagged as truncated."""
        started = time.perf_counter()
        if (broken := self._config_error) is not None:
            raise VzdTlsError(broken.kind, str(broken), setting=broken.setting)
        if _clock() < self._quiet_until:
            raise VzdTimeout("the directory timed out a moment ago; not asked again before the pause ends")
        if not self._slots.acquire(timeout=self.config.search_timeout):
            raise VzdTimeout("all directory connections are busy")
        try:
            for attempt in range(2):
                try:
                    conn, reused = self._idle.get_nowait(), True
                except queue.Empty:
                    conn, reused = self._connect(), False
                try:
                    conn.search(
                        self.config.base_dn,
                        ldap_filter,
                        search_scope=ldap3.SUBTREE,
                        attributes=list(attributes),
                        time_limit=max(1, math.ceil(self.config.search_timeout)),
                    )
                except ldap_exc.LDAPException as exc:
                    self._discard(conn)
                    error = self._translate(exc)
                    # A pooled connection may have been closed by the server meanwhile: retry once, fresh.
                    if reused and attempt == 0 and not isinstance(error, VzdTimeout):
                        continue
                    raise self._noted(error) from exc
                result = conn.result or {}
                code = result.get("result", 0)
                if code not in (0, SIZE_LIMIT_EXCEEDED):
                    self._discard(conn)
                    if code == TIME_LIMIT_EXCEEDED:
                        raise VzdTimeout(result.get("description", "timeLimitExceeded"))
                    if reused and attempt == 0 and code < 0:
                        continue
                    raise VzdUnavailable(f"{result.get('description')}: {result.get('message')}")
                records = [
                    VzdRecord(dn=item["dn"], attributes=_attributes(item))
                    for item in conn.response or ()
                    if item.get("type") == "searchResEntry"
                ]
                self._idle.put(conn)
                return VzdSearchResult(
                    records=records,
                    truncated=code == SIZE_LIMIT_EXCEEDED,
                    elapsed_ms=(time.perf_counter() - started) * 1000,
                )
            raise VzdUnavailable("directory connection failed")  # pragma: no cover - loop always returns/raises
        finally:
            self._slots.release()

    def close(self) -> None:
        while True:
            try:
                self._discard(self._idle.get_nowait())
            except queue.Empty:
                return


_clients: dict[VzdConfig, VzdClient] = {}
_clients_lock = threading.Lock()


def config_from_settings() -> VzdConfig:
    from django.conf import settings

    return VzdConfig(
        url=settings.KIMPORTAL_VZD_URL,
        base_dn=settings.KIMPORTAL_VZD_BASE_DN,
        connect_timeout=settings.KIMPORTAL_VZD_CONNECT_TIMEOUT,
        search_timeout=settings.KIMPORTAL_VZD_SEARCH_TIMEOUT,
        retry_pause=settings.KIMPORTAL_VZD_RETRY_PAUSE,
        ca_file=settings.KIMPORTAL_VZD_CA_FILE,
        pool_size=settings.KIMPORTAL_VZD_POOL_SIZE,
        tls_pin=settings.KIMPORTAL_VZD_TLS_PIN,
        client_cert_file=settings.KIMPORTAL_VZD_CLIENT_CERT_FILE,
        client_key_file=settings.KIMPORTAL_VZD_CLIENT_KEY_FILE,
        client_key_password=settings.KIMPORTAL_VZD_CLIENT_KEY_PASSWORD,
    )


def get_client() -> VzdClient:
    """The shared client for the current settings (one pool per configuration, so tests can override)."""
    config = config_from_settings()
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = VzdClient(config)
        return client
