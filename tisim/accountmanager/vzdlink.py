"""The Account Manager's writes into the simulated VZD (tisim.vzd's slapd), over LDAP with ldap3.

A real KIM provider maintains the KIM data of its participants in the VZD (I_Directory_Application_Maintenance):
on registration it adds the address to the directory entry of the institution whose SMC-B signed the request,
identified by that card's Telematik-ID, as ``mail``, ``komLeData`` (``<version>,<mail>``) and ``kimData``
(``<mail>,<version>``), and it removes them again on deregistration. The VZD base entry itself belongs to the card
issuer: the provider never creates one. The simulation writes the same attributes straight into slapd as its root
DN (the test directory has no other writer); ``changeDateTime`` is set as the VZD does on every change.

Where the directory is comes from ``vzd.json``, which ``python -m tisim vzd-serve`` writes (``url``, ``base``,
``bind_dn``, ``bind_password``; ``--announce <tisim data dir>/vzd.json`` puts a copy where the Account Manager
looks), read on every write: the Account Manager and the directory start at the same moment in the demo, and a
directory restarted on another port is found again. Without that file (``required=False``, the default of
``tisim run``) there is no VZD to write to and the entries live in ``accountmanager/state.json`` only; once the
file is there, a directory that does not answer makes the write fail. A fixed ``ldap://`` URL works too.

Errors are :class:`VzdWriteError` with the HTTP status the Account Manager answers: 502 when the directory cannot
be reached or refuses (no entry for the Telematik-ID, a failed bind or change), 409 when the address is already
published in another institution's entry (an address belongs to at most one entry, A_21835).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
from ldap3.core import exceptions as ldap_exc
from ldap3.utils.conv import escape_filter_chars

from tisim.vzd.generate import BASE_DN
from tisim.vzd.slapd import ROOT_DN, ROOT_PW

log = logging.getLogger("tisim.accountmanager.vzd")

RUNTIME_FILE = "vzd.json"
DEFAULT_TIMEOUT = 5.0
_ATTRIBUTES = ["telematikID", "mail", "komLeData", "kimData"]


class VzdWriteError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class VzdTarget:
    url: str
    base_dn: str
    bind_dn: str
    bind_password: str


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="microseconds")


def _text(values: Any) -> list[str]:
    if values is None:
        return []
    return [str(v) for v in (values if isinstance(values, list) else [values])]


def _komle_value(address: str, kim_version: str) -> str:
    return f"{kim_version},{address}"


def _kim_value(address: str, kim_version: str) -> str:
    return f"{address},{kim_version}"


def _is_komle_of(value: str, address: str) -> bool:
    return value.partition(",")[2].strip().lower() == address


def _is_kim_of(value: str, address: str) -> bool:
    return value.partition(",")[0].strip().lower() == address


class VzdLink:
    """The simulated VZD as the Account Manager reaches it: a fixed URL or the ``vzd.json`` of ``vzd-serve``."""

    def __init__(
        self,
        *,
        url: str | None = None,
        runtime_file: Path | None = None,
        base_dn: str = BASE_DN,
        bind_dn: str = ROOT_DN,
        bind_password: str = ROOT_PW,
        timeout: float = DEFAULT_TIMEOUT,
        required: bool = True,
    ) -> None:
        """``required=False``: a missing ``runtime_file`` means "no VZD here", every write is skipped."""
        if (url is None) == (runtime_file is None):
            raise ValueError("give either url or runtime_file")
        self.url = url
        self.runtime_file = Path(runtime_file).resolve() if runtime_file is not None else None
        self.base_dn = base_dn
        self.bind_dn = bind_dn
        self.bind_password = bind_password
        self.timeout = timeout
        self.required = required

    @classmethod
    def from_spec(cls, spec: str, *, timeout: float = DEFAULT_TIMEOUT) -> VzdLink:
        """``ldap://host:port`` (or ``ldaps://``), a ``vzd.json`` file, or the directory holding it."""
        if spec.startswith(("ldap://", "ldaps://")):
            return cls(url=spec, timeout=timeout)
        path = Path(spec)
        if path.is_dir() or not path.suffix:
            path = path / RUNTIME_FILE
        return cls(runtime_file=path, timeout=timeout)

    def describe(self) -> str:
        return self.url if self.url is not None else str(self.runtime_file)

    def target(self) -> VzdTarget | None:
        """Where to write now; None when there is no VZD (an optional runtime file that does not exist)."""
        if self.url is not None:
            return VzdTarget(self.url, self.base_dn, self.bind_dn, self.bind_password)
        assert self.runtime_file is not None
        try:
            info = json.loads(self.runtime_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            if not self.required:
                return None
            raise VzdWriteError(502, "VZD cannot be reached (not running).") from None
        except (OSError, ValueError):
            raise VzdWriteError(502, "VZD cannot be reached (unreadable runtime file).") from None
        if not isinstance(info, dict) or not isinstance(info.get("url"), str):
            raise VzdWriteError(502, "VZD cannot be reached (no URL in its runtime file).")
        return VzdTarget(
            info["url"],
            str(info.get("base") or self.base_dn),
            str(info.get("bind_dn") or self.bind_dn),
            str(info.get("bind_password") or self.bind_password),
        )

    @contextmanager
    def _connection(self, target: VzdTarget) -> Iterator[tuple[ldap3.Connection, str]]:
        server = ldap3.Server(target.url, connect_timeout=self.timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server,
            user=target.bind_dn,
            password=target.bind_password,
            receive_timeout=max(1, math.ceil(self.timeout)),  # ldap3 packs it into a struct: whole seconds
            raise_exceptions=False,
        )
        try:
            try:
                bound = conn.bind()
            except ldap_exc.LDAPException as exc:
                log.warning("VZD %s cannot be reached: %s", target.url, exc)
                raise VzdWriteError(502, "VZD cannot be reached.") from None
            if not bound:
                log.warning("VZD %s refused the bind: %s", target.url, conn.result)
                raise VzdWriteError(502, "VZD refused the provider's login.")
            yield conn, target.base_dn
        except ldap_exc.LDAPException as exc:
            log.warning("VZD %s failed: %s", target.url, exc)
            raise VzdWriteError(502, "VZD cannot be reached.") from None
        finally:
            try:
                conn.unbind()
            except ldap_exc.LDAPException:
                pass

    @staticmethod
    def _search(conn: ldap3.Connection, base_dn: str, ldap_filter: str) -> list[tuple[str, dict[str, list[str]]]]:
        if not conn.search(base_dn, ldap_filter, ldap3.SUBTREE, attributes=_ATTRIBUTES, time_limit=10):
            if conn.result.get("result") not in (0, None):
                raise VzdWriteError(502, f"VZD search failed: {conn.result.get('description')}.")
        return [
            (str(item["dn"]), {name: _text(values) for name, values in item["attributes"].items()})
            for item in conn.response or []
            if item.get("type") == "searchResEntry"
        ]

    def _entry(self, conn: ldap3.Connection, base_dn: str, telematik_id: str) -> tuple[str, dict[str, list[str]]]:
        found = self._search(conn, base_dn, f"(telematikID={escape_filter_chars(telematik_id)})")
        if not found:
            raise VzdWriteError(502, f"VZD has no entry for Telematik-ID {telematik_id}.")
        if len(found) > 1:
            raise VzdWriteError(502, f"VZD has {len(found)} entries for Telematik-ID {telematik_id}.")
        return found[0]

    def _modify(self, conn: ldap3.Connection, dn: str, changes: dict[str, list[tuple[str, list[str]]]]) -> None:
        if not changes:
            return
        changes["changeDateTime"] = [(ldap3.MODIFY_REPLACE, [_now_rfc3339()])]
        if not conn.modify(dn, changes):
            log.warning("VZD refused to change %s: %s", dn, conn.result)
            raise VzdWriteError(502, f"VZD refused the change: {conn.result.get('description')}.")

    def publish(self, telematik_id: str, address: str, kim_version: str) -> None:
        """Add ``address`` (or change its version) in the entry of ``telematik_id``: mail, komLeData, kimData."""
        address = address.lower()
        target = self.target()
        if target is None:
            return
        with self._connection(target) as (conn, base_dn):
            for _dn, attrs in self._search(conn, base_dn, f"(mail={escape_filter_chars(address)})"):
                holder = (attrs.get("telematikID") or [""])[0]
                if holder.lower() != telematik_id.lower():
                    raise VzdWriteError(409, "E-mail address already taken (published in another VZD entry).")
            dn, attrs = self._entry(conn, base_dn, telematik_id)
            changes: dict[str, list[tuple[str, list[str]]]] = {}
            if not any(m.lower() == address for m in attrs.get("mail", [])):
                changes["mail"] = [(ldap3.MODIFY_ADD, [address])]
            for name, wanted, belongs in (
                ("komLeData", _komle_value(address, kim_version), _is_komle_of),
                ("kimData", _kim_value(address, kim_version), _is_kim_of),
            ):
                mine = [v for v in attrs.get(name, []) if belongs(v, address)]
                stale = [v for v in mine if v != wanted]
                ops: list[tuple[str, list[str]]] = []
                if stale:
                    ops.append((ldap3.MODIFY_DELETE, stale))
                if wanted not in mine:
                    ops.append((ldap3.MODIFY_ADD, [wanted]))
                if ops:
                    changes[name] = ops
            self._modify(conn, dn, changes)

    def withdraw(self, telematik_id: str, address: str) -> None:
        """Remove ``address`` from the entry of ``telematik_id`` (nothing to do when it is not there)."""
        address = address.lower()
        target = self.target()
        if target is None:
            return
        with self._connection(target) as (conn, base_dn):
            found = self._search(conn, base_dn, f"(telematikID={escape_filter_chars(telematik_id)})")
            for dn, attrs in found:
                changes: dict[str, list[tuple[str, list[str]]]] = {}
                for name, belongs in (
                    ("mail", lambda v, a: v.strip().lower() == a),
                    ("komLeData", _is_komle_of),
                    ("kimData", _is_kim_of),
                ):
                    mine = [v for v in attrs.get(name, []) if belongs(v, address)]
                    if mine:
                        changes[name] = [(ldap3.MODIFY_DELETE, mine)]
                self._modify(conn, dn, changes)

    def addresses(self, telematik_id: str) -> dict[str, list[str]]:
        """The KIM attributes of the entry of ``telematik_id`` (``{}`` without one): for ``show`` and tests."""
        target = self.target()
        if target is None:
            return {}
        with self._connection(target) as (conn, base_dn):
            found = self._search(conn, base_dn, f"(telematikID={escape_filter_chars(telematik_id)})")
        if not found:
            return {}
        attrs = found[0][1]
        return {name: attrs.get(name, []) for name in ("mail", "komLeData", "kimData")}
