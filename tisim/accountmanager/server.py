"""The simulated KIM Account Manager: gematik's three REST interfaces over HTTPS on one port.

- ``/ServiceInformation/v1.0/serviceinfo`` (open): versions, password policy, jwtExpiration.
- ``/AccountLimit/v1.1/limit`` (HTTP Basic, KIM address and password): quota, what is left, sizes.
- ``/AccountMgmt/v2.4/account…`` (bearer JWT of an SMC-B, tisim.accountmanager.token, plus the ``password`` or
  ``iniPassword`` header): register with a registration code, read, change (password, kimVersion,
  dataTimeToLive), deregister, revoke the deregistration, out-of-office.

Effects are real: a registration creates the Clientmodul account and the directory entry (in the simulated VZD
over LDAP when ``<data_dir>/vzd.json`` names one, tisim.accountmanager.vzdlink), a password change
changes the CM's POP3/SMTP login, an out-of-office note makes the simulated Fachdienst answer mail
(tisim.cm.autoreply). For tests: registration codes (:meth:`AccountManagerSimulator.issue_registration_code`),
a directory that is down (502) or an inactive entry (423), and armed faults (any status, a stall, a cut
connection, an oversized answer, an answer trickling in byte by byte). A thread per connection
(ThreadingHTTPServer) like the simulated Konnektor.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import json
import logging
import os
import re
import secrets
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tisim.accountmanager.cmlink import CmAccounts
from tisim.accountmanager.store import (
    DEFAULT_KIM_VERSION,
    DEFAULT_TTL,
    MAX_MAIL_SIZE,
    RegistrationCode,
    StateStore,
)
from tisim.accountmanager.token import TokenRejected, VerifiedToken, verify_token
from tisim.accountmanager.vzdlink import RUNTIME_FILE as VZD_RUNTIME_FILE
from tisim.accountmanager.vzdlink import VzdLink, VzdWriteError
from tisim.cm.autoreply import AbsenceStore
from tisim.cm.username import is_valid_address
from tisim.config import write_json_atomic
from tisim.httpserver import TlsRequestHandler, TrackingHTTPServer
from tisim.konnektor.pki import pki_directory
from tisim.tls import Certificate, fingerprint_sha256, self_signed_ca, server_context

log = logging.getLogger("tisim.accountmanager")

RUNTIME_FILE = "accountmanager.json"
DEFAULT_PORT = 8444
AM = "/AccountMgmt/v2.4"
LIMIT = "/AccountLimit/v1.1"
INFO = "/ServiceInformation/v1.0"
KIM_VERSIONS = ("1.0", "1.5", "1.5+")
# ServiceInformation.yaml's example policy, as a provider would configure it.
PASSWORD_POLICY = r"^(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z])(?=.*[*.!@#$%^&(){}\[\]:;'<>,?/~_+\-=|\\]).{12,256}$"
PASSWORD_POLICY_DISPLAY = (
    "Mindestens 12 und höchstens 256 Zeichen, darunter mindestens eine Ziffer, ein Klein- und ein Großbuchstabe "
    "und ein Sonderzeichen (*.!@#$%^&(){}[]:;'<>,?/~_+-=|\\)."
)
DEFAULT_QUOTA = 10 * 2**30
DEREGISTRATION_GRACE = dt.timedelta(days=30)
OUT_OF_OFFICE_MAX = 2048
_MAX_BODY = 64 * 1024
_DRAIN_LIMIT = 2 * 2**20
_HANDSHAKE_TIMEOUT = 30.0
_IDLE_TIMEOUT = 60.0
FAULT_MODES = ("status", "stall", "drop", "oversize", "trickle")
# An armed "trickle" answer: one byte of its body this often, each well within any read timeout.
TRICKLE_SECONDS = 0.05
# What an armed "oversize" answer offers: far more than any client should read.
OVERSIZE_BYTES = 64 * 2**20


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ArmedFault:
    mode: str
    status: int
    times: int | None
    path: str | None


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: bytes


CA_NAME = "TISIM KIM-Anbieter-CA TEST-ONLY"
SERVER_NAME = "account-manager.tisim.kim.telematik"


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.touch(mode=0o600)
    tmp.write_bytes(data)
    tmp.replace(path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _ensure_tls(directory: Path) -> tuple[Path, Certificate]:
    """The provider's CA and the HTTPS certificate it issued (SAN localhost, 127.0.0.1, ::1), made once and kept in
    ``directory``. A CA of its own, not the Konnektor's: both simulators start at the same moment in the demo and
    must not race to create the same files."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    cert_path, key_path = directory / "server.pem", directory / "server-key.pem"
    now = dt.datetime.now(dt.UTC)
    if not (ca_path.is_file() and ca_key_path.is_file()):
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tisim NOT-VALID"),
                x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME),
            ]
        )
        ca_cert, ca_key = self_signed_ca(name)
        _write_private(ca_key_path, _key_pem(ca_key))
        ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        cert_path.unlink(missing_ok=True)
    if not (cert_path.is_file() and key_path.is_file()):
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        ca_key_loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(ca_key_loaded, ec.EllipticCurvePrivateKey)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAME)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=825))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.DNSName(SERVER_NAME),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        x509.IPAddress(ipaddress.ip_address("::1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key_loaded.public_key()), critical=False
            )
            .sign(ca_key_loaded, hashes.SHA256())
        )
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ca_path, Certificate(cert_path, key_path, fingerprint_sha256(cert_path.read_bytes()))


class AccountManagerSimulator:
    def __init__(
        self,
        data_dir: Path,
        *,
        accounts: CmAccounts,
        pki_data_dir: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        jwt_expiration: int = 300,
        password_policy: str = PASSWORD_POLICY,
        password_policy_display: str = PASSWORD_POLICY_DISPLAY,
        quota: int = DEFAULT_QUOTA,
        kim_service_version: str = "1.5.5",
        kim_versions: tuple[str, ...] = KIM_VERSIONS,
        vzd: VzdLink | None = None,
    ) -> None:
        """``data_dir``: the tisim data directory (state under ``accountmanager/``, ``accountmanager.json``);
        ``accounts``: the CM's account store; ``pki_data_dir``: the tisim data directory whose Konnektor PKI
        issues the SMC-B certificates (default ``data_dir``); ``vzd``: the simulated VZD that registrations and
        deregistrations write to (tisim.accountmanager.vzdlink; default: the one ``<data_dir>/vzd.json`` names
        when that file exists, else none and the directory entries live only in ``accountmanager/state.json``)."""
        self.data_dir = Path(data_dir).resolve()
        self.accounts = accounts
        self.pki_data_dir = Path(pki_data_dir or data_dir).resolve()
        self.host = host
        self._port = port
        self.jwt_expiration = jwt_expiration
        self.password_policy = password_policy
        self.password_policy_display = password_policy_display
        self.quota = quota
        self.kim_service_version = kim_service_version
        self.kim_versions = kim_versions
        # By default the VZD that `vzd-serve --announce` names in the data directory, if one does.
        self.vzd = vzd if vzd is not None else VzdLink(runtime_file=self.data_dir / VZD_RUNTIME_FILE, required=False)
        self.state = StateStore(self.data_dir / "accountmanager")
        # The SMC-B CA is read from the Konnektor's PKI when a token arrives (tisim.konnektor.pki), never at start.
        self._ca_path, self._certificate = _ensure_tls(self.data_dir / "accountmanager" / "tls")
        self._faults: list[ArmedFault] = []
        self._lock = threading.Lock()
        self.released = threading.Event()  # ends armed stalls
        self.seen: deque[SeenRequest] = deque(maxlen=1000)
        self.oversize_sent = 0  # bytes of the last "oversize" answer the socket accepted
        self._server: AccountManagerHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("AccountManagerSimulator is already running")
        self.released.clear()
        server = AccountManagerHTTPServer(self, (self.host, self._port), server_context(self._certificate))
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="tisim-accountmanager"
        )
        thread.start()
        self._server, self._thread = server, thread
        self._port = server.server_address[1]
        write_json_atomic(self.data_dir / RUNTIME_FILE, self.runtime_info())

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.released.set()
        server.shutdown()
        server.close_all()
        if thread is not None:
            thread.join(timeout=10)
        self._server = self._thread = None

    def remove_runtime_file(self) -> None:
        (self.data_dir / RUNTIME_FILE).unlink(missing_ok=True)

    def __enter__(self) -> AccountManagerSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self._port}"

    @property
    def audiences(self) -> set[str]:
        return {self.base_url, f"https://localhost:{self._port}", f"https://127.0.0.1:{self._port}"}

    @property
    def ca_path(self) -> Path:
        """The CA (PEM) of the HTTPS certificate: what the portal's KIMPORTAL_ACCOUNT_MANAGER_CA names."""
        return self._ca_path

    @property
    def ca_pem(self) -> bytes:
        return self._ca_path.read_bytes()

    def runtime_info(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "host": self.host,
            "port": self._port,
            "ca": str(self.ca_path),
            "smcb_ca": str(pki_directory(self.pki_data_dir) / "smcb-ca.pem"),
            "jwt_expiration": self.jwt_expiration,
            "vzd": self.vzd.describe(),
            "pid": os.getpid(),
        }

    # --- test and CLI helpers ------------------------------------------------------------------------------------

    def issue_registration_code(self, address: str, *, telematik_id: str | None = None) -> RegistrationCode:
        return self.state.issue_code(address, telematik_id=telematik_id)

    def add_account(
        self, address: str, *, telematik_id: str | None = None, kim_version: str = DEFAULT_KIM_VERSION
    ) -> None:
        """Know an existing CM account as registered (bound to ``telematik_id``'s card if given)."""

        def add(state: dict[str, Any]) -> None:
            state["accounts"][address.lower()] = _account_record(telematik_id, kim_version)
            if telematik_id:
                _directory_add(state, telematik_id, address.lower(), kim_version)

        self.state.update(add)

    def set_directory_available(self, available: bool) -> None:
        """False: every operation that writes the VZD answers 502."""
        self.state.update(lambda s: s.__setitem__("vzd_available", available))

    def set_directory_entry_active(self, telematik_id: str, active: bool) -> None:
        """False: the institution's VZD entry is inactive; its operations answer 423."""

        def change(state: dict[str, Any]) -> None:
            entry = state["directory"].setdefault(telematik_id, {"active": True, "mail": [], "kimData": []})
            entry["active"] = active

        self.state.update(change)

    def directory_entry(self, telematik_id: str) -> dict[str, Any] | None:
        entry = self.state.read()["directory"].get(telematik_id)
        return dict(entry) if isinstance(entry, dict) else None

    def account_record(self, address: str) -> dict[str, Any] | None:
        record = self.state.read()["accounts"].get(address.lower())
        return dict(record) if isinstance(record, dict) else None

    def arm_fault(self, mode: str, *, status: int = 500, times: int | None = 1, path: str | None = None) -> None:
        """``status``: answer with that HTTP status (and an Error body); ``stall``: answer nothing until
        :meth:`release` or stop (a client timeout); ``drop``: close the connection without an answer;
        ``oversize``: a 200 JSON answer of OVERSIZE_BYTES without Content-Length (how much of it the client took
        is in :attr:`oversize_sent`). ``path``: only requests whose path contains it; ``times`` None = until
        cleared."""
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}")
        with self._lock:
            self._faults.append(ArmedFault(mode, status, times, path))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self.release()

    def release(self) -> None:
        self.released.set()

    def take_fault(self, path: str) -> ArmedFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path in path:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    # --- the operations --------------------------------------------------------------------------------------------

    def service_information(self) -> dict[str, Any]:
        return {
            "kimServiceVersion": self.kim_service_version,
            "passwordPolicyRegEx": self.password_policy,
            "passwordPolicyDisplay": self.password_policy_display,
            "jwtExpiration": self.jwt_expiration,
            "referenceIdRequired": True,
            "initialPasswordRequired": True,
        }

    def limits(self, address: str, password: str) -> dict[str, Any]:
        known = self.accounts.password(address)
        if known is None:
            raise ApiError(404, "Email account not available.")
        if not secrets.compare_digest(known.encode(), password.encode()):
            raise ApiError(401, "Authentication failed.")
        record = self.state.read()["accounts"].get(address.lower()) or _account_record(None, DEFAULT_KIM_VERSION)
        used = self.accounts.mailbox_bytes(address)
        return {
            "dataTimeToLive": int(record.get("dataTimeToLive", DEFAULT_TTL)),
            "maxMailSize": MAX_MAIL_SIZE,
            "quota": self.quota,
            "remainQuota": max(0, self.quota - used) if self.quota >= 0 else -1,
        }

    def password_fits(self, password: str) -> bool:
        return re.fullmatch(self.password_policy, password) is not None

    def verify(self, authorization: str | None) -> VerifiedToken:
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(401, "Bearer token missing.")
        try:
            return verify_token(
                authorization[len("Bearer ") :].strip(),
                pki_data_dir=self.pki_data_dir,
                audiences=self.audiences,
                max_lifetime=self.jwt_expiration,
            )
        except TokenRejected as exc:
            log.info("JWT rejected: %s", exc)
            raise ApiError(401, f"Authentication failed: {exc}") from None

    def register(self, token: VerifiedToken, ini_password: str, body: dict[str, Any]) -> None:
        reference_id = body.get("referenceID")
        username = body.get("username")
        password = _password_field(body)
        kim_version = body.get("kimVersion", DEFAULT_KIM_VERSION)
        if not isinstance(reference_id, str) or not isinstance(username, str) or password is None:
            raise ApiError(400, "referenceID, username and password are required.")
        address = username.lower()
        ttl = _ttl(body)

        def change(state: dict[str, Any]) -> None:
            code = state["codes"].get(reference_id)
            if (
                not isinstance(code, dict)
                or code.get("used")
                or not secrets.compare_digest(str(code.get("ini_password")).encode(), ini_password.encode())
                or code.get("address") != address
                or (code.get("telematik_id") and code["telematik_id"] != token.telematik_id)
            ):
                raise ApiError(401, "referenceID, iniPassword and the card do not match.")
            if address in state["accounts"] or self.accounts.password(address) is not None:
                raise ApiError(409, "E-mail address already taken.")
            if not is_valid_address(address) or not self.password_fits(password):
                raise ApiError(420, "Username or password do not comply with the rules.")
            if kim_version not in self.kim_versions:
                raise ApiError(422, "KimVersion not supported or unknown.")
            entry = state["directory"].get(token.telematik_id)
            if isinstance(entry, dict) and not entry.get("active", True):
                raise ApiError(423, "VZD entry is locked.")
            if not state["vzd_available"]:
                raise ApiError(502, "VZD cannot be reached.")
            code["used"] = True
            record = _account_record(token.telematik_id, kim_version)
            if ttl is not None:
                record["dataTimeToLive"] = ttl
            if body.get("noVzdMailEntry") is True:
                record["noVzdMailEntry"] = True
            else:
                _directory_add(state, token.telematik_id, address, kim_version)
            state["accounts"][address] = record
            # The VZD write can still fail (502, or 409 when another entry holds the address): then nothing is
            # saved and the registration code stays usable.
            published = self._publish(record, address)
            # Last, after every check: the CM account exists only for a registration that succeeded.
            try:
                self.accounts.set_password(address, password)
            except Exception:
                if published:
                    self._withdraw_quietly(record, address)
                raise

        self.state.update(change)

    def _publish(self, record: dict[str, Any], address: str) -> bool:
        """Write the address into the configured VZD when its account is published there (bound to a card, not
        ``noVzdMailEntry``); True if it is. VZD errors become the Account Manager's answer (502, 409)."""
        telematik_id = record.get("telematikID")
        if not telematik_id or record.get("noVzdMailEntry"):
            return False
        try:
            self.vzd.publish(telematik_id, address, str(record.get("kimVersion", DEFAULT_KIM_VERSION)))
        except VzdWriteError as exc:
            raise ApiError(exc.status, exc.message) from None
        return True

    def _withdraw(self, record: dict[str, Any], address: str) -> None:
        """Remove the address from the configured VZD (502 when it cannot be reached)."""
        telematik_id = record.get("telematikID")
        if not telematik_id:
            return
        try:
            self.vzd.withdraw(telematik_id, address)
        except VzdWriteError as exc:
            raise ApiError(exc.status, exc.message) from None

    def _withdraw_quietly(self, record: dict[str, Any], address: str) -> None:
        try:
            self._withdraw(record, address)
        except ApiError:
            log.warning("could not take %s out of the VZD again after a failed registration", address)

    def _authorize(self, state: dict[str, Any], token: VerifiedToken, address: str, password: str) -> dict[str, Any]:
        known = self.accounts.password(address)
        record: dict[str, Any] | None = state["accounts"].get(address)
        if known is None and record is None:
            raise ApiError(404, "Email account not available.")
        if known is None or not secrets.compare_digest(known.encode(), password.encode()):
            raise ApiError(401, "Authentication failed.")
        if record is None:
            # A CM account the Account Manager had not seen yet (the demo's): it belongs to the first card.
            record = state["accounts"][address] = _account_record(token.telematik_id, DEFAULT_KIM_VERSION)
        if record.get("telematikID") and record["telematikID"] != token.telematik_id:
            raise ApiError(401, "The card does not own this account.")
        return record

    def _locked_entry(self, state: dict[str, Any], record: dict[str, Any]) -> None:
        entry = state["directory"].get(record.get("telematikID") or "")
        if isinstance(entry, dict) and not entry.get("active", True):
            raise ApiError(423, "VZD entry is locked.")

    def get_account(self, token: VerifiedToken, address: str, password: str) -> dict[str, Any]:
        def read(state: dict[str, Any]) -> dict[str, Any]:
            record = self._authorize(state, token, address, password)
            answer: dict[str, Any] = {
                "username": address,
                "kimVersion": record.get("kimVersion", DEFAULT_KIM_VERSION),
                "regStat": record.get("regStat", "registered"),
                "dataTimeToLive": int(record.get("dataTimeToLive", DEFAULT_TTL)),
                "maxMailSize": MAX_MAIL_SIZE,
            }
            if record.get("deregDate"):
                answer["deregDate"] = int(record["deregDate"])
            if "noVzdMailEntry" in record:
                answer["noVzdMailEntry"] = bool(record["noVzdMailEntry"])
            return answer

        return self.state.update(read)

    def set_account(self, token: VerifiedToken, address: str, password: str, body: dict[str, Any]) -> None:
        new_password = _password_field(body)
        kim_version = body.get("kimVersion")
        ttl = _ttl(body)
        if "username" in body and str(body["username"]).lower() != address:
            raise ApiError(400, "username cannot be changed.")

        def change(state: dict[str, Any]) -> None:
            record = self._authorize(state, token, address, password)
            if new_password is not None and not self.password_fits(new_password):
                raise ApiError(420, "New password does not comply with the rules.")
            if kim_version is not None and kim_version not in self.kim_versions:
                raise ApiError(422, "KimVersion not supported or unknown.")
            self._locked_entry(state, record)
            touches_vzd = kim_version is not None or "noVzdMailEntry" in body
            if touches_vzd and not state["vzd_available"]:
                raise ApiError(502, "VZD cannot be reached.")
            if kim_version is not None:
                record["kimVersion"] = kim_version
            if ttl is not None:
                record["dataTimeToLive"] = ttl
            if isinstance(body.get("noVzdMailEntry"), bool):
                record["noVzdMailEntry"] = body["noVzdMailEntry"]
            if touches_vzd and record.get("telematikID") and record.get("regStat") != "deregistered":
                # A new version replaces the address's komLeData/kimData; noVzdMailEntry takes it out or back in.
                if record.get("noVzdMailEntry"):
                    self._withdraw(record, address)
                    _directory_remove(state, record["telematikID"], address)
                else:
                    self._publish(record, address)
                    _directory_add(state, record["telematikID"], address, record["kimVersion"])
            if new_password is not None:
                self.accounts.set_password(address, new_password)

        self.state.update(change)

    def deregister(self, token: VerifiedToken, address: str, password: str) -> None:
        def change(state: dict[str, Any]) -> None:
            record = self._authorize(state, token, address, password)
            if not state["vzd_available"]:
                raise ApiError(502, "VZD cannot be reached.")
            if record.get("regStat") != "deregistered":
                # The address leaves the VZD at once, so no sender finds it any more; POP3 stays usable until
                # deregDate for what has arrived. A revocation publishes it again.
                self._withdraw(record, address)
                if record.get("telematikID"):
                    _directory_remove(state, record["telematikID"], address)
                record["regStat"] = "deregistered"
                record["deregDate"] = int((dt.datetime.now(dt.UTC) + DEREGISTRATION_GRACE).timestamp())

        self.state.update(change)

    def revoke_deregistration(self, token: VerifiedToken, address: str, password: str) -> None:
        def change(state: dict[str, Any]) -> None:
            record = self._authorize(state, token, address, password)
            if record.get("regStat") != "deregistered":
                raise ApiError(403, "Email account has not yet been deregistered.")
            self._locked_entry(state, record)
            if not state["vzd_available"]:
                raise ApiError(502, "VZD cannot be reached.")
            if self._publish(record, address):
                _directory_add(state, record["telematikID"], address, record.get("kimVersion", DEFAULT_KIM_VERSION))
            record["regStat"] = "registered"
            record.pop("deregDate", None)

        self.state.update(change)

    def get_out_of_office(self, token: VerifiedToken, address: str, password: str) -> dict[str, Any]:
        self.state.update(lambda state: self._authorize(state, token, address, password))
        note = AbsenceStore(self.accounts.data_dir).get(address)
        if note is None:
            return {"active": False}
        answer: dict[str, Any] = {"active": note.active, "message": note.message}
        if note.start:
            answer["startDate"] = _rfc3339(note.start)
        if note.end:
            answer["endDate"] = _rfc3339(note.end)
        return answer

    def set_out_of_office(self, token: VerifiedToken, address: str, password: str, body: dict[str, Any]) -> None:
        self.state.update(lambda state: self._authorize(state, token, address, password))
        active = body.get("active", False)
        if not isinstance(active, bool):
            raise ApiError(400, "active must be a boolean.")
        message = body.get("message")
        if message is not None and (not isinstance(message, str) or len(message) > OUT_OF_OFFICE_MAX):
            raise ApiError(400, f"message must be a string of at most {OUT_OF_OFFICE_MAX} characters.")
        start, end = _date(body, "startDate"), _date(body, "endDate")
        store = AbsenceStore(self.accounts.data_dir)
        current = store.get(address)
        if active and (start is None or end is None or message is None):
            raise ApiError(400, "startDate, endDate and message are required to activate the note.")
        if not active and current is None and (start is None or end is None or message is None):
            # The first call needs every field (FAQ); switching off later needs only ``active``.
            raise ApiError(400, "The first out-of-office call needs startDate, endDate, message and active.")
        if start is not None and end is not None and end <= start:
            raise ApiError(400, "endDate must be after startDate.")
        store.put(
            address,
            active=active,
            start=start or (current.start if current else None),
            end=end or (current.end if current else None),
            message=message if message is not None else (current.message if current else ""),
        )


def _account_record(telematik_id: str | None, kim_version: str) -> dict[str, Any]:
    return {
        "telematikID": telematik_id,
        "kimVersion": kim_version,
        "regStat": "registered",
        "dataTimeToLive": DEFAULT_TTL,
    }


def _directory_add(state: dict[str, Any], telematik_id: str, address: str, kim_version: str) -> None:
    """The VZD entry of the institution: ``mail`` and ``kimData`` (``<mail>,<version>``) for the address."""
    entry = state["directory"].setdefault(telematik_id, {"active": True, "mail": [], "kimData": []})
    if address not in entry["mail"]:
        entry["mail"].append(address)
    entry["kimData"] = [k for k in entry["kimData"] if not k.startswith(f"{address},")] + [f"{address},{kim_version}"]


def _directory_remove(state: dict[str, Any], telematik_id: str, address: str) -> None:
    entry = state["directory"].get(telematik_id)
    if isinstance(entry, dict):
        entry["mail"] = [m for m in entry.get("mail", []) if m != address]
        entry["kimData"] = [k for k in entry.get("kimData", []) if not k.startswith(f"{address},")]


def _b64_text(value: str, what: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ApiError(400, f"{what} is not base64-encoded UTF-8.") from None


def _password_field(body: dict[str, Any]) -> str | None:
    value = body.get("password")
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 256:
        raise ApiError(400, "password must be a base64 string of at most 256 characters.")
    return _b64_text(value, "password")


def _ttl(body: dict[str, Any]) -> int | None:
    value = body.get("dataTimeToLive")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 10 <= value <= 365:
        raise ApiError(400, "dataTimeToLive must be an integer between 10 and 365.")
    return value


def _date(body: dict[str, Any], key: str) -> dt.datetime | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key} must be an RFC 3339 date-time.")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"{key} must be an RFC 3339 date-time.") from None
    if parsed.tzinfo is None:
        raise ApiError(400, f"{key} needs a time zone offset.")
    return parsed


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class AccountManagerHTTPServer(TrackingHTTPServer):
    def __init__(self, sim: AccountManagerSimulator, address: tuple[str, int], tls: ssl.SSLContext) -> None:
        self.sim = sim
        super().__init__(address, AccountManagerHandler, tls)


_ACCOUNT_RE = re.compile(r"^" + re.escape(AM) + r"/account/([^/]+)(/revokeDeregistration|/outofoffice)?$")


class AccountManagerHandler(TlsRequestHandler):
    handshake_timeout = _HANDSHAKE_TIMEOUT
    logger_name = "tisim.accountmanager"
    server_version = "tisim-AccountManager/1.0"
    timeout = _IDLE_TIMEOUT
    server: AccountManagerHTTPServer

    @property
    def sim(self) -> AccountManagerSimulator:
        return self.server.sim

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        body = b""
        try:
            body = self._read_body()
            fault = self.sim.take_fault(path)
            if fault is not None and self._fault(fault):
                return
            status, payload = self._route(method, path, body)
        except ApiError as exc:
            status, payload = exc.status, {"message": exc.message, "traceId": secrets.token_hex(8)}
        except Exception:  # a simulator bug must still answer, as a provider's server would
            log.exception("Account Manager simulator failed on %s %s", method, path)
            status, payload = 500, {"message": "Internal Server Error", "traceId": secrets.token_hex(8)}
        self.sim.seen.append(SeenRequest(method, path, status, {k: v for k, v in self.headers.items()}, body))
        self._send(status, payload)

    def _fault(self, fault: ArmedFault) -> bool:
        if fault.mode == "status":
            raise ApiError(fault.status, "Armed fault.")
        if fault.mode == "oversize":
            self._send_oversize()
            return True
        if fault.mode == "trickle":
            self._send_trickle()
            return True
        if fault.mode == "stall":
            # Simulates a provider that does not answer; ends with release() or stop().
            self.sim.released.wait(timeout=120)
        self.close_connection = True
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return True

    def _send_trickle(self) -> None:
        """A small JSON answer whose body comes one byte every TRICKLE_SECONDS: no read ever times out, the whole
        never arrives (until release() or stop())."""
        body = b'{"message": "' + b" " * 100_000 + b'"}'
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.flush()
            for i in range(len(body)):
                if self.sim.released.wait(timeout=TRICKLE_SECONDS):
                    break
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up and closed

    def _send_oversize(self) -> None:
        """A valid JSON object padded to OVERSIZE_BYTES, its end marked only by closing the connection."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Connection", "close")
        self.end_headers()
        piece = b" " * (256 * 1024)
        self.sim.oversize_sent = 0
        try:
            self.wfile.write(b'{"message": "')
            while self.sim.oversize_sent < OVERSIZE_BYTES:
                self.wfile.write(piece)
                self.sim.oversize_sent += len(piece)
            self.wfile.write(b'"}')
            self.wfile.flush()
        except OSError:
            pass  # the client stopped reading and closed

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, "Bad Content-Length.") from None
        if size < 0 or size > _MAX_BODY:
            # Read a moderately large body away so the client sees the answer, not a reset; beyond that, hang up.
            if 0 < size <= _DRAIN_LIMIT:
                while size > 0:
                    chunk = self.rfile.read(min(size, 65536))
                    if not chunk:
                        break
                    size -= len(chunk)
            self.close_connection = True
            raise ApiError(400, "Request body too large.")
        return self.rfile.read(size)

    def _json_body(self, body: bytes, *, required: bool) -> dict[str, Any]:
        if not body:
            if required:
                raise ApiError(400, "Request body required.")
            return {}
        content_type = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            raise ApiError(400, "Content-Type must be application/json.")
        try:
            value = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "Body is not JSON.") from None
        if not isinstance(value, dict):
            raise ApiError(400, "Body must be a JSON object.")
        return value

    def _header_password(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise ApiError(401, f"Header {name} missing.")
        if len(value) > 344:  # base64 of 256 bytes
            raise ApiError(400, f"Header {name} too long.")
        return _b64_text(value, f"Header {name}")

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        sim = self.sim
        if path == INFO + "/serviceinfo" and method == "GET":
            return 200, sim.service_information()
        if path == LIMIT + "/limit" and method == "GET":
            user, password = self._basic()
            return 200, sim.limits(user, password)
        if path == AM + "/account" and method == "POST":
            token = sim.verify(self.headers.get("Authorization"))
            ini_password = self._header_password("iniPassword")
            sim.register(token, ini_password, self._json_body(body, required=True))
            return 204, None
        match = _ACCOUNT_RE.match(path)
        if match is None:
            raise ApiError(404, "No such resource.")
        address, sub = unquote(match.group(1)).lower(), match.group(2) or ""
        if not is_valid_address(address):
            raise ApiError(400, "username is not an e-mail address.")
        token = sim.verify(self.headers.get("Authorization"))
        password = self._header_password("password")
        if sub == "" and method == "GET":
            return 200, sim.get_account(token, address, password)
        if sub == "" and method == "PUT":
            sim.set_account(token, address, password, self._json_body(body, required=False))
            return 204, None
        if sub == "" and method == "DELETE":
            sim.deregister(token, address, password)
            return 204, None
        if sub == "/revokeDeregistration" and method == "PUT":
            sim.revoke_deregistration(token, address, password)
            return 204, None
        if sub == "/outofoffice" and method == "GET":
            return 200, sim.get_out_of_office(token, address, password)
        if sub == "/outofoffice" and method == "PUT":
            sim.set_out_of_office(token, address, password, self._json_body(body, required=True))
            return 204, None
        raise ApiError(404, "No such operation.")

    def _basic(self) -> tuple[str, str]:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            raise ApiError(401, "Basic authentication required.")
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ApiError(401, "Basic authentication malformed.") from None
        return user.lower(), password

    def _send(self, status: int, payload: dict[str, Any] | None) -> None:
        data = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data:
            self.wfile.write(data)
