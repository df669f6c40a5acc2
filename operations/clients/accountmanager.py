"""The KIM provider's Account Manager over REST (I/O only: dataclasses in and out, never the ORM).

Three OpenAPI interfaces of gematik (shared/spec/kim, research/kim-protocol.md §7) behind one host:
- I_AccountManager_Service v2.4 (``/AccountMgmt/v2.4``): ``Authorization: Bearer <JWT>`` (signed with the SMC-B's
  AUT key through the Konnektor; ``token_provider`` returns it) plus the account password as header ``password``
  (base64), or ``iniPassword`` on the registration;
- I_AccountLimit_Service v1.1 (``/AccountLimit/v1.1/limit``): HTTP Basic with the KIM address and password;
- I_ServiceInformation v1.0 (``/ServiceInformation/v1.0/serviceinfo``): no authentication.

Every failure is an :class:`AccountManagerError` with a German text for the person in front of the portal. The client
is bound to one KIM account (address and password); after a successful password change it uses the new password.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import regex
import requests
import urllib3
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from kimportal.texts import N_, Stored, StoredText, join, lazy_stored

ACCOUNT_MANAGER_PATH = "/AccountMgmt/v2.4"
ACCOUNT_LIMIT_PATH = "/AccountLimit/v1.1"
SERVICE_INFORMATION_PATH = "/ServiceInformation/v1.0"

KIM_VERSION_LARGE = "1.5+"
KIM_VERSIONS = ("1.0", "1.5", KIM_VERSION_LARGE)
OUT_OF_OFFICE_MAX_CHARS = 2048
DATA_TIME_TO_LIVE_MIN = 10
DATA_TIME_TO_LIVE_MAX = 365
PASSWORD_MAX_CHARS = 256
# The provider's password policy is a regular expression the portal evaluates: from a broken or hostile server it
# could backtrack for minutes (ReDoS). It is evaluated with the ``regex`` package, whose matching stops after
# POLICY_TIMEOUT seconds; a pattern longer than POLICY_MAX_CHARS is not compiled at all (gematik's example is
# 80 characters).
POLICY_MAX_CHARS = 1000
POLICY_TIMEOUT = 0.25
# regex's timeout covers matching, not compiling, and compiling nested counted repeats takes minutes even for a short
# pattern (``(?:(?:(?:a{256}){256}){256}){256}``, 37 characters). So a pattern is first compiled in a child process
# with this limit (startup included; a real policy compiles in milliseconds).
POLICY_COMPILE_TIMEOUT = 3.0
# The API's answers are small JSON objects (the largest, an out-of-office note, about 3 KiB); a larger answer is
# refused, not read into memory.
MAX_RESPONSE_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024

# A_23505: before "1.5+" is switched on, the user must be told what it means. gematik's wording was not available
# (research/kim-protocol.md §7); this says what the switch does according to the FAQ and the VZD documentation.
KIM_VERSION_LARGE_WARNING = gettext_lazy(
    "Mit „1.5+“ wird im Verzeichnisdienst veröffentlicht, dass dieses Postfach große KIM-Nachrichten "
    "(über 15 MiB, bis 700 MiB) empfangen kann. Absender schicken solche Nachrichten dann über den "
    "KIM-Attachment-Service (KAS) an dieses Postfach, statt es als Empfänger zu entfernen. Schalten Sie „1.5+“ "
    "nur ein, wenn das Portal, das Clientmodul und der Speicher beim Anbieter Nachrichten dieser Größe "
    "verarbeiten können (Quota, Abrufzeiten, Speicherplatz) und die Nachrichten vor Ablauf der Speicherdauer "
    "im KAS abgerufen werden. Bis die Änderung im Verzeichnisdienst angekommen ist, kann es dauern; "
    "für Nachrichten, die schon abgelehnt wurden (Fehler 4018), muss der Absender neu senden."
)

TIMEOUT_TEXT = gettext_lazy("Der Account Manager hat nicht rechtzeitig geantwortet. Bitte später erneut versuchen.")
UNREACHABLE_TEXT = gettext_lazy(
    "Der Account Manager des KIM-Anbieters ist nicht erreichbar. Bitte später erneut versuchen."
)
TLS_TEXT = gettext_lazy(
    "Die TLS-Verbindung zum Account Manager ist fehlgeschlagen: sein Zertifikat ist nicht vertrauenswürdig "
    "(CA-Zertifikat in der Konfiguration prüfen)."
)
BAD_RESPONSE_TEXT = gettext_lazy("Der Account Manager hat eine unerwartete Antwort geschickt.")
TOO_LARGE_TEXT = gettext_lazy("Die Antwort des Account Managers ist unerwartet groß; sie wurde nicht verarbeitet.")
BAD_POLICY_TEXT = gettext_lazy(
    "Die Passwortregel des KIM-Anbieters lässt sich nicht prüfen (zu lang oder zu aufwendig). Bitte den Anbieter "
    "informieren; das Passwort wurde nicht übermittelt."
)

# German texts per HTTP status; some operations say more precisely what the status means there (see _OP_TEXTS).
STATUS_TEXTS: dict[int, Promise] = {
    400: gettext_lazy("Der Account Manager hat die Anfrage als fehlerhaft abgelehnt."),
    401: gettext_lazy(
        "Die Anmeldung am Account Manager ist fehlgeschlagen (Passwort oder Kartenauthentisierung der SMC-B "
        "nicht akzeptiert)."
    ),
    403: gettext_lazy("Der Account Manager hat die Aktion abgelehnt."),
    404: gettext_lazy("Das KIM-Konto ist beim Anbieter nicht vorhanden."),
    409: gettext_lazy("Diese KIM-Adresse ist bereits vergeben."),
    420: gettext_lazy("Adresse oder Passwort entsprechen nicht den Regeln des Anbieters."),
    422: gettext_lazy("Die KIM-Version wird vom Anbieter nicht unterstützt."),
    423: gettext_lazy(
        "Der Eintrag im Verzeichnisdienst ist gesperrt (inaktiv). Die Entsperrung ist ein Vorgang beim Anbieter."
    ),
    500: gettext_lazy("Interner Fehler beim Account Manager des Anbieters."),
    502: gettext_lazy(
        "Der Verzeichnisdienst (VZD) ist für den Account Manager nicht erreichbar oder meldet einen Fehler; "
        "bitte später erneut versuchen."
    ),
}
_OP_TEXTS: dict[tuple[str, int], Promise] = {
    ("register", 401): gettext_lazy(
        "Registrierung abgelehnt: Registrierungscode, Initialpasswort oder SMC-B passen nicht zusammen."
    ),
    ("register", 420): gettext_lazy(
        "Die gewünschte Adresse oder das neue Passwort entsprechen nicht den Regeln des Anbieters."
    ),
    ("set_account", 420): gettext_lazy("Das neue Passwort entspricht nicht den Passwortregeln des Anbieters."),
    ("revoke_deregistration", 403): gettext_lazy("Das KIM-Konto ist nicht abgemeldet; es gibt nichts zu widerrufen."),
    ("limits", 401): gettext_lazy("Die Anmeldung mit KIM-Adresse und Passwort am Account Manager ist fehlgeschlagen."),
}


class AccountManagerError(Exception):
    """A failed Account Manager call. ``status``: the HTTP status (None when no answer came); ``code``: a short
    machine word ("http_404", "timeout", "unreachable", "tls", "bad_response", "too_large", "password_policy",
    "bad_policy", "invalid"); ``text``: for the user, German (gettext: in the language active when the error was
    raised); ``stored``: the same kept untranslated (kimportal.texts), for a row read later in another language;
    ``detail``: the provider's own message and traceId, for the log."""

    def __init__(self, status: int | None, code: str, text: str | Promise | StoredText, *, detail: str = "") -> None:
        if isinstance(text, StoredText):
            stored = text
        elif isinstance(text, Promise):
            stored = lazy_stored(text)
        else:
            stored = StoredText.of(text)  # a sentence written out already: kept as it is
        # Translated now (a lazy text becomes the active language's): the error is pickled and logged as text.
        text = str(text)
        super().__init__(text)
        self.status = status
        self.code = code
        self.text = text
        self.stored: Stored = stored.stored
        self.detail = detail

    @property
    def retryable(self) -> bool:
        """Worth trying again later (the provider or the network, not the input)."""
        return self.code in ("timeout", "unreachable") or self.status in (500, 502, 503, 504)

    def __reduce__(self) -> tuple[Any, ...]:
        # Survives pickling (Celery results): Exception would rebuild it from the text alone.
        return (_rebuild_error, (self.status, self.code, self.text, self.detail, self.stored))


class PasswordPolicyError(AccountManagerError):
    """The new password does not match the provider's policy (checked before anything is sent)."""

    def __init__(self, display: str) -> None:
        # The provider's own description of its rules follows as it came.
        text = join(N_("Das neue Passwort entspricht nicht den Passwortregeln des Anbieters."), StoredText.of(display))
        super().__init__(None, "password_policy", text)
        self.display = display

    def __reduce__(self) -> tuple[Any, ...]:
        return (PasswordPolicyError, (self.display,))


def policy_matches(pattern: str, password: str, *, anywhere: bool = False) -> bool | None:
    """Whether the provider's policy (a Java-style regular expression) accepts the whole password (``anywhere``:
    a match anywhere in it); None when the expression cannot be read (then the Account Manager decides alone).

    Raises :class:`AccountManagerError` (code "bad_policy") when the expression is longer than POLICY_MAX_CHARS,
    does not compile within POLICY_COMPILE_TIMEOUT or its evaluation takes longer than POLICY_TIMEOUT: a
    catastrophic pattern ends here instead of blocking the worker."""
    if len(pattern) > POLICY_MAX_CHARS:
        raise AccountManagerError(
            None, "bad_policy", BAD_POLICY_TEXT, detail=f"policy regex of {len(pattern)} characters"
        )
    readable = _policy_compiles(pattern)
    if readable is None:
        return None
    if not readable:
        raise AccountManagerError(
            None,
            "bad_policy",
            BAD_POLICY_TEXT,
            detail=f"policy regex does not compile within {POLICY_COMPILE_TIMEOUT} s",
        )
    try:
        compiled = regex.compile(pattern)
    except (regex.error, ValueError, OverflowError, RecursionError):
        return None
    try:
        found = (compiled.search if anywhere else compiled.fullmatch)(password, timeout=POLICY_TIMEOUT)
    except TimeoutError as exc:
        raise AccountManagerError(
            None, "bad_policy", BAD_POLICY_TEXT, detail=f"policy regex took over {POLICY_TIMEOUT} s"
        ) from exc
    return found is not None


# Exit status 3: regex cannot read the pattern. Anything else but 0 (a crash, memory) counts as not compiling.
_COMPILE_PROBE = (
    "import sys, regex\n"
    "try:\n"
    "    regex.compile(sys.stdin.buffer.read().decode('utf-8', 'surrogatepass'))\n"
    "except (regex.error, ValueError, OverflowError, RecursionError):\n"
    "    sys.exit(3)\n"
)
_compiles: dict[str, bool | None] = {}
_compiles_lock = threading.Lock()


def _policy_compiles(pattern: str) -> bool | None:
    """Whether ``regex`` compiles the pattern within POLICY_COMPILE_TIMEOUT (True), cannot read it (None) or not
    in time (False), tried in a child process that is killed at the limit. The verdicts True and None are kept
    for the process's life (a provider's policy rarely changes; at most 64 are kept); False is asked again."""
    with _compiles_lock:
        if pattern in _compiles:
            return _compiles[pattern]
    try:
        # Our own interpreter and code; the pattern goes in on stdin, never on a command line.
        done = subprocess.run(
            [sys.executable, "-I", "-c", _COMPILE_PROBE],
            input=pattern.encode("utf-8", "surrogatepass"),
            capture_output=True,
            timeout=POLICY_COMPILE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False
    verdict = {0: True, 3: None}.get(done.returncode, False)
    if verdict is not False:
        with _compiles_lock:
            if len(_compiles) >= 64:
                _compiles.clear()
            _compiles[pattern] = verdict
    return verdict


def _rebuild_error(
    status: int | None, code: str, text: str, detail: str, stored: Stored | None = None
) -> AccountManagerError:
    error = AccountManagerError(status, code, text, detail=detail)
    if stored is not None:
        error.stored = stored
    return error


@dataclass(frozen=True)
class AccountManagerConfig:
    """``base_url``: ``https://<host>:<port>`` of the provider's Account Manager (DNS-SD SRV of
    ``<accmgr_service_name>`` in the TI; configured here). The three base paths are the TXT records' defaults.
    ``ca_pem``: the CA certificate(s) (PEM) its TLS certificate is checked against; None = the system CAs.
    ``timeout``: seconds for connecting, for each read and for the whole answer's body; ``max_response_bytes``: the
    largest answer read."""

    base_url: str
    ca_pem: bytes | None = field(default=None, repr=False)
    timeout: float = 30.0
    max_response_bytes: int = MAX_RESPONSE_BYTES
    account_manager_path: str = ACCOUNT_MANAGER_PATH
    account_limit_path: str = ACCOUNT_LIMIT_PATH
    service_information_path: str = SERVICE_INFORMATION_PATH
    user_agent: str = "KIMPortal"

    @property
    def audience(self) -> str:
        """What the JWT's ``aud`` names: the Account Manager's origin (scheme, host, port)."""
        return self.base_url.rstrip("/")


@dataclass(frozen=True)
class ServiceInformation:
    """GET /serviceinfo. ``password_policy_regex`` is Java-style (checked with :func:`policy_matches`; a pattern
    Python cannot compile is left to the provider to check); ``jwt_expiration`` the JWT lifetime the provider
    accepts."""

    kim_service_versions: tuple[str, ...] = ()
    password_policy_regex: str = ""
    password_policy_display: str = ""
    jwt_expiration: int | None = None
    reference_id_required: bool | None = None
    initial_password_required: bool | None = None

    def password_matches(self, password: str) -> bool:
        """Raises :class:`AccountManagerError` "bad_policy" for a policy that cannot be evaluated safely."""
        if not self.password_policy_regex:
            return True
        return policy_matches(self.password_policy_regex, password) is not False

    def check_password(self, password: str) -> None:
        """Raise :class:`PasswordPolicyError` (with the provider's display text) unless the password fits."""
        if len(password) > PASSWORD_MAX_CHARS or not self.password_matches(password):
            raise PasswordPolicyError(self.password_policy_display)


@dataclass(frozen=True)
class AccountLimits:
    """GET /limit. Bytes; ``quota``/``remaining_quota`` None = unlimited (the API's -1)."""

    quota: int | None
    remaining_quota: int | None
    max_mail_size: int | None
    data_time_to_live: int | None

    @property
    def used_fraction(self) -> float | None:
        if not self.quota or self.remaining_quota is None:
            return None
        return max(0.0, min(1.0, 1 - self.remaining_quota / self.quota))


@dataclass(frozen=True)
class AccountInfo:
    """GET /account/{username}. ``registered`` False once deregistered; ``deregistration_date`` then says until
    when POP3 still works (aware, UTC)."""

    username: str
    kim_version: str
    registration_status: str
    deregistration_date: dt.datetime | None = None
    data_time_to_live: int | None = None
    max_mail_size: int | None = None
    no_vzd_mail_entry: bool | None = None

    @property
    def registered(self) -> bool:
        return self.registration_status != "deregistered"

    @property
    def large_messages(self) -> bool:
        return self.kim_version.endswith("+")


@dataclass(frozen=True)
class OutOfOffice:
    """The out-of-office note (``OutOfOfficeNotification``); datetimes aware. With ``active`` the provider's
    Fachdienst answers mail between ``start`` and ``end`` with ``message`` (unsigned, unencrypted)."""

    active: bool
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    message: str = ""

    def validate(self) -> None:
        """Raise :class:`AccountManagerError` (code "invalid") for what the provider would refuse."""
        if len(self.message) > OUT_OF_OFFICE_MAX_CHARS:
            raise AccountManagerError(
                None,
                "invalid",
                N_("Der Text der Abwesenheitsnotiz ist zu lang (höchstens %(max)s Zeichen).")
                % {"max": OUT_OF_OFFICE_MAX_CHARS},
            )
        for value in (self.start, self.end):
            if value is not None and value.tzinfo is None:
                raise ValueError("out-of-office dates must be aware datetimes")
        if self.active:
            if self.start is None or self.end is None or not self.message.strip():
                raise AccountManagerError(
                    None, "invalid", N_("Für eine aktive Abwesenheitsnotiz sind Beginn, Ende und Text nötig.")
                )
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise AccountManagerError(None, "invalid", N_("Das Ende der Abwesenheit muss nach ihrem Beginn liegen."))


TokenProvider = Callable[[], str]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


# Within a day of the calendar's ends a time has no local time in some zone: shown in the portal's, it would raise.
_SHOWABLE = (
    dt.datetime.min.replace(tzinfo=dt.UTC) + dt.timedelta(days=1),
    dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(days=1),
)


def _showable(value: dt.datetime) -> dt.datetime:
    if not _SHOWABLE[0] <= value <= _SHOWABLE[1]:
        raise ValueError(f"{value.isoformat()} is out of range")
    return value


def _parse_datetime(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return _showable(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC))


def _optional_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} is not an integer")
    return value


def _optional_bool(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is None:
        return None
    # The provider documentation's own example writes "true" as a string once (research/kim-protocol.md §7).
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValueError(f"{key} is not a boolean")
    return value


def _unlimited(value: int | None) -> int | None:
    return None if value is None or value < 0 else value


class AccountManagerClient:
    """One KIM account's calls to the provider's Account Manager.

    ``username``: the KIM address; ``password``: its current password (the one the Clientmodul's POP3/SMTP
    login uses); ``token_provider``: returns a valid JWT for the SMC-B the account belongs to (called per request
    of the AccountManager interface; operations.services.amauth caches it).
    """

    def __init__(
        self,
        config: AccountManagerConfig,
        *,
        username: str,
        password: str,
        token_provider: TokenProvider,
        session: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.username = username
        self.password = password
        self._token_provider = token_provider
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = config.user_agent
        self._ca_file: tempfile._TemporaryFileWrapper[bytes] | None = None
        self._verify: bool | str = True
        if config.ca_pem:
            # requests wants a path; the file lives as long as the client.
            self._ca_file = tempfile.NamedTemporaryFile(prefix="am-ca-", suffix=".pem")
            self._ca_file.write(config.ca_pem)
            self._ca_file.flush()
            self._verify = self._ca_file.name

    def close(self) -> None:
        self._session.close()
        if self._ca_file is not None:
            self._ca_file.close()
            self._ca_file = None

    def __enter__(self) -> AccountManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- I_ServiceInformation and I_AccountLimit_Service -------------------------------------------------------

    def service_information(self) -> ServiceInformation:
        data = self._json(
            "service_information",
            self._request("service_information", "GET", self.config.service_information_path + "/serviceinfo"),
        )
        try:
            versions = data.get("kimServiceVersion")
            return ServiceInformation(
                kim_service_versions=tuple(v.strip() for v in versions.split(";") if v.strip())
                if isinstance(versions, str)
                else (),
                password_policy_regex=str(data.get("passwordPolicyRegEx") or ""),
                password_policy_display=str(data.get("passwordPolicyDisplay") or ""),
                jwt_expiration=_optional_int(data, "jwtExpiration"),
                reference_id_required=_optional_bool(data, "referenceIdRequired"),
                initial_password_required=_optional_bool(data, "initialPasswordRequired"),
            )
        except ValueError as exc:
            raise AccountManagerError(200, "bad_response", BAD_RESPONSE_TEXT, detail=str(exc)) from exc

    def limits(self) -> AccountLimits:
        response = self._request(
            "limits",
            "GET",
            self.config.account_limit_path + "/limit",
            auth=(self.username, self.password),
        )
        data = self._json("limits", response)
        try:
            return AccountLimits(
                quota=_unlimited(_optional_int(data, "quota")),
                remaining_quota=_unlimited(_optional_int(data, "remainQuota")),
                max_mail_size=_optional_int(data, "maxMailSize"),
                data_time_to_live=_optional_int(data, "dataTimeToLive"),
            )
        except ValueError as exc:
            raise AccountManagerError(200, "bad_response", BAD_RESPONSE_TEXT, detail=str(exc)) from exc

    # --- I_AccountManager_Service ------------------------------------------------------------------------------

    def register(
        self,
        *,
        reference_id: str,
        initial_password: str,
        kim_version: str = "1.5",
        data_time_to_live: int | None = None,
        no_vzd_mail_entry: bool | None = None,
        policy: ServiceInformation | None = None,
    ) -> None:
        """registerAccount: the provider creates the account ``username`` with the client's ``password`` and
        enters the address in the directory (VZD). ``reference_id``: the registration code the provider issued;
        ``initial_password``: the provider's initial password. The password is checked against ``policy`` (read
        from the provider when None) first."""
        (policy or self.service_information()).check_password(self.password)
        self._check_kim_version(kim_version)
        body: dict[str, Any] = {
            "referenceID": reference_id,
            "username": self.username,
            "password": _b64(self.password),
            "kimVersion": kim_version,
        }
        if data_time_to_live is not None:
            self._check_ttl(data_time_to_live)
            body["dataTimeToLive"] = data_time_to_live
        if no_vzd_mail_entry is not None:
            body["noVzdMailEntry"] = no_vzd_mail_entry
        self._request(
            "register",
            "POST",
            self.config.account_manager_path + "/account",
            bearer=True,
            headers={"iniPassword": _b64(initial_password)},
            json_body=body,
        )

    def account(self) -> AccountInfo:
        """getAccount: address, KIM version, registration status (and deregistration date), storage period."""
        data = self._json("account", self._account_request("account", "GET"))
        try:
            dereg = _optional_int(data, "deregDate")
            return AccountInfo(
                username=str(data.get("username") or self.username),
                kim_version=str(data.get("kimVersion") or ""),
                registration_status=str(data.get("regStat") or "registered"),
                deregistration_date=_showable(dt.datetime.fromtimestamp(dereg, dt.UTC)) if dereg else None,
                data_time_to_live=_optional_int(data, "dataTimeToLive"),
                max_mail_size=_optional_int(data, "maxMailSize"),
                no_vzd_mail_entry=_optional_bool(data, "noVzdMailEntry"),
            )
        except (ValueError, OverflowError, OSError) as exc:
            raise AccountManagerError(200, "bad_response", BAD_RESPONSE_TEXT, detail=str(exc)) from exc

    def change_password(self, new_password: str, *, policy: ServiceInformation | None = None) -> None:
        """setAccount with a new password, checked against the provider's policy first (``policy`` read from the
        provider when None). On success the client uses the new password; the caller must store it for the
        Clientmodul login, which now only accepts the new one."""
        (policy or self.service_information()).check_password(new_password)
        self._account_request("set_account", "PUT", json_body={"password": _b64(new_password)})
        self.password = new_password

    def set_kim_version(self, kim_version: str) -> None:
        """setAccount kimVersion; for "1.5+" show :data:`KIM_VERSION_LARGE_WARNING` and get a confirmation first."""
        self._check_kim_version(kim_version)
        self._account_request("set_account", "PUT", json_body={"kimVersion": kim_version})

    def set_data_time_to_live(self, days: int) -> None:
        """setAccount dataTimeToLive: days mail and attachments stay on the KAS (10–365)."""
        self._check_ttl(days)
        self._account_request("set_account", "PUT", json_body={"dataTimeToLive": days})

    def deregister(self) -> None:
        """deregisterAccount: POP3 stays usable until the deregistration date, then the provider deletes all."""
        self._account_request("deregister", "DELETE")

    def revoke_deregistration(self) -> None:
        self._account_request("revoke_deregistration", "PUT", suffix="/revokeDeregistration")

    def out_of_office(self) -> OutOfOffice:
        data = self._json("out_of_office", self._account_request("out_of_office", "GET", suffix="/outofoffice"))
        try:
            active = _optional_bool(data, "active")
            message = data.get("message")
            if message is not None and not isinstance(message, str):
                raise ValueError("message is not a string")
            return OutOfOffice(
                active=bool(active),
                start=_parse_datetime(data.get("startDate")),
                end=_parse_datetime(data.get("endDate")),
                message=message or "",
            )
        except ValueError as exc:
            raise AccountManagerError(200, "bad_response", BAD_RESPONSE_TEXT, detail=str(exc)) from exc

    def set_out_of_office(self, note: OutOfOffice) -> None:
        """updateOutOfOffice. Switching off sends only ``active: false`` (the provider keeps dates and text)."""
        note.validate()
        body: dict[str, Any] = {"active": note.active}
        if note.active or note.start is not None or note.end is not None or note.message:
            if note.start is not None:
                body["startDate"] = _rfc3339(note.start)
            if note.end is not None:
                body["endDate"] = _rfc3339(note.end)
            if note.message:
                body["message"] = note.message
        self._account_request("set_out_of_office", "PUT", suffix="/outofoffice", json_body=body)

    # --- plumbing ----------------------------------------------------------------------------------------------

    @staticmethod
    def _check_kim_version(kim_version: str) -> None:
        if kim_version not in KIM_VERSIONS:
            raise AccountManagerError(
                None, "invalid", N_("Unbekannte KIM-Version „%(version)s“.") % {"version": kim_version}
            )

    @staticmethod
    def _check_ttl(days: int) -> None:
        if isinstance(days, bool) or not DATA_TIME_TO_LIVE_MIN <= days <= DATA_TIME_TO_LIVE_MAX:
            raise AccountManagerError(
                None,
                "invalid",
                N_("Die Speicherdauer muss zwischen %(min)s und %(max)s Tagen liegen.")
                % {"min": DATA_TIME_TO_LIVE_MIN, "max": DATA_TIME_TO_LIVE_MAX},
            )

    def _account_request(
        self, operation: str, method: str, *, suffix: str = "", json_body: dict[str, Any] | None = None
    ) -> requests.Response:
        path = f"{self.config.account_manager_path}/account/{requests.utils.quote(self.username, safe='@')}{suffix}"
        return self._request(
            operation, method, path, bearer=True, headers={"password": _b64(self.password)}, json_body=json_body
        )

    def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        bearer: bool = False,
        headers: Mapping[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> requests.Response:
        sent: dict[str, str] = {"Accept": "application/json"}
        sent.update(headers or {})
        if bearer:
            # The token provider talks to the Konnektor; its own errors (KonnektorError) pass through unchanged.
            sent["Authorization"] = f"Bearer {self._token_provider()}"
        data: bytes | None = None
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
            sent["Content-Type"] = "application/json; charset=utf-8"
        url = self.config.base_url.rstrip("/") + path
        try:
            # Streamed, so that the body is read here with a limit (_read_limited), not by requests without one.
            response = self._session.request(
                method,
                url,
                headers=sent,
                data=data,
                auth=auth,
                timeout=self.config.timeout,
                verify=self._verify,
                allow_redirects=False,
                stream=True,
            )
            try:
                self._read_limited(operation, response)
            finally:
                response.close()
        # The body is read from urllib3 directly (_read_limited): its errors come unwrapped.
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError) as exc:
            raise AccountManagerError(None, "timeout", TIMEOUT_TEXT, detail=str(exc)) from exc
        except requests.exceptions.SSLError as exc:
            raise AccountManagerError(None, "tls", TLS_TEXT, detail=str(exc)) from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, ssl.SSLError, OSError) as exc:
            # ConnectionError, and a body cut short or badly encoded (ChunkedEncodingError, ContentDecodingError).
            raise AccountManagerError(None, "unreachable", UNREACHABLE_TEXT, detail=str(exc)) from exc
        if response.status_code >= 300:
            raise self._error(operation, response)
        return response

    def _read_limited(self, operation: str, response: requests.Response) -> None:
        """Read the body (decoded, so a compressed bomb counts by what it unpacks to) into ``response.content``;
        AccountManagerError "too_large" beyond ``config.max_response_bytes``, without reading further."""
        limit = self.config.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        too_large = AccountManagerError(
            response.status_code, "too_large", TOO_LARGE_TEXT, detail=f"{operation}: answer over {limit} bytes"
        )
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        if response._content is not False or response._content_consumed:  # read or set by a response hook
            if len(response.content) > limit:
                raise too_large
            return
        # The timeout bounds each read, not the whole: an answer dripping in a byte at a time would hold the page
        # (and its worker) for hours. The whole body must arrive within the timeout too.
        deadline = time.monotonic() + self.config.timeout
        chunks: list[bytes] = []
        size = 0
        while chunk := response.raw.read1(_READ_CHUNK, decode_content=True):  # as soon as anything arrived
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise AccountManagerError(
                    None,
                    "timeout",
                    TIMEOUT_TEXT,
                    detail=f"{operation}: answer not complete after {self.config.timeout} s",
                )
        response._content = b"".join(chunks)

    @staticmethod
    def _error(operation: str, response: requests.Response) -> AccountManagerError:
        status = response.status_code
        text: Promise | StoredText | None = _OP_TEXTS.get((operation, status)) or STATUS_TEXTS.get(status)
        if text is None:
            text = N_("Der Account Manager hat die Anfrage abgelehnt (HTTP %(status)s).") % {"status": status}
        detail = ""
        try:
            body = response.json()
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            body = None
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("message", "traceId") if body.get(k)]
            detail = " / ".join(parts)
        return AccountManagerError(status, f"http_{status}", text, detail=detail[:1000])

    @staticmethod
    def _json(operation: str, response: requests.Response) -> dict[str, Any]:
        try:
            data = response.json()
        # A body nested deeper than Python's decoder goes ("[[[[…", well under the size limit) is no answer either.
        except (ValueError, RecursionError) as exc:
            raise AccountManagerError(
                response.status_code, "bad_response", BAD_RESPONSE_TEXT, detail=f"{operation}: not JSON"
            ) from exc
        if not isinstance(data, dict):
            raise AccountManagerError(
                response.status_code, "bad_response", BAD_RESPONSE_TEXT, detail=f"{operation}: not an object"
            )
        return data


def read_ca(path: str | Path) -> bytes | None:
    """The CA file's bytes, or None for an empty setting (then the system CAs)."""
    return Path(path).read_bytes() if str(path) else None
