"""LDAP I/O with the VZD (through the Konnektor's LDAP proxy, or tisim's slapd). No ORM, no domain logic.

- anonymous bind, base ``dc=data,dc=vzd``, LDAP or LDAPS with a pinned CA file;
- a small pool of synchronous ldap3 connections: a connection is used by one thread at a time (ldap3's SYNC
  strategy is not thread-safe per connection), idle ones are reused, broken ones dropped;
- connect timeout on the socket, search timeout both as socket receive timeout and as server time limit;
- sizeLimitExceeded (the VZD's 100-entry cap) is a normal, truncated result.

Filters come in ready-made from ``directory.ldapfilter`` (which escapes every value).
"""

from __future__ import annotations

import math
import queue
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


class VzdError(Exception):
    """Base class: the directory could not answer."""


class VzdUnavailable(VzdError):
    """Connection refused, TLS failure, connection lost."""


class VzdTimeout(VzdError):
    """The directory accepted but did not answer in time."""


@dataclass(frozen=True)
class VzdConfig:
    url: str = "ldap://127.0.0.1:8389"
    base_dn: str = "dc=data,dc=vzd"
    connect_timeout: float = 5.0
    search_timeout: float = 5.0
    ca_file: str = ""
    pool_size: int = 4


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


class VzdClient:
    def __init__(self, config: VzdConfig) -> None:
        self.config = config
        parts = urlsplit(config.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise ValueError(f"KIMPORTAL_VZD_URL must be ldap:// or ldaps://host[:port], got {config.url!r}")
        use_ssl = parts.scheme == "ldaps"
        tls = None
        # A broken TLS setup (e.g. a missing CA file) must not become an error page: searches report it.
        self._config_error = ""
        if use_ssl:
            try:
                tls = ldap3.Tls(
                    validate=ssl.CERT_REQUIRED,
                    ca_certs_file=config.ca_file or None,
                    version=ssl.PROTOCOL_TLS_CLIENT,
                )
            except ldap_exc.LDAPException as exc:
                self._config_error = f"TLS configuration (CA file {config.ca_file!r}): {exc}"
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
            conn.bind()
        except ldap_exc.LDAPException as exc:
            raise self._translate(exc) from exc
        return conn

    @staticmethod
    def _translate(exc: BaseException) -> VzdError:
        text = str(exc).lower()
        if "timed out" in text or "timeout" in text:
            return VzdTimeout(str(exc))
        return VzdUnavailable(str(exc))

    @staticmethod
    def _discard(conn: ldap3.Connection) -> None:
        try:
            conn.unbind()
        except Exception:  # closing a broken socket may fail in many ways; it is gone either way
            conn.closed = True

    def search(self, ldap_filter: str, attributes: Sequence[str]) -> VzdSearchResult:
        """Subtree search under the base DN; returns at most the server's size limit, flagged as truncated."""
        started = time.perf_counter()
        if self._config_error:
            raise VzdUnavailable(self._config_error)
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
                    raise error from exc
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
        ca_file=settings.KIMPORTAL_VZD_CA_FILE,
        pool_size=settings.KIMPORTAL_VZD_POOL_SIZE,
    )


def get_client() -> VzdClient:
    """The shared client for the current settings (one pool per configuration, so tests can override)."""
    config = config_from_settings()
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = VzdClient(config)
        return client
