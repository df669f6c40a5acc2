"""HTTP(S) to the Konnektor: the three connection modes, trust, and a timeout per operation.

- ``plain``: HTTP ("Ungesichert"; an https base URL is still checked against the trust anchor);
- ``basic``: HTTPS + HTTP Basic auth ("Login");
- ``cert``: HTTPS + TLS client certificate ("Zertifikat", the Konnektor's default).

Trust lives in one ``ssl.SSLContext`` per client: the configured CA only (host name not checked: a Konnektor's
certificate names its card), or the system store with the host name. The client key is loaded into that context
from an anonymous in-memory file (memfd), so it never touches the disk; where memfd is missing it goes through a
0600 file in a private temporary folder that is deleted right after loading.

The texts of the KonnektorErrors raised here are German source strings through gettext, in the language active
when they are raised; the technical cause (third argument, for the log) stays untranslated.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from django.utils.translation import gettext as _
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from zeep.transports import Transport

from .errors import KonnektorError
from .types import MODES, KonnektorConfig

# SOAPActions of the operations that wait for a person at the card terminal (PIN entry).
_SLOW_ACTIONS = ("#SignDocument", "#VerifyPin", "#ActivateComfortSignature")


class _TlsAdapter(HTTPAdapter):
    """Connections whose trust comes from our SSL context only.

    requests would otherwise add its default CA bundle (certifi) to every verified connection.
    """

    def __init__(self, context: ssl.SSLContext, *, check_hostname: bool) -> None:
        self._context = context
        self._check_hostname = check_hostname
        super().__init__()

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs["ssl_context"] = self._context
        if not self._check_hostname:
            pool_kwargs["assert_hostname"] = False
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None


def check_config(config: KonnektorConfig) -> None:
    """Refuse settings that cannot work, with a text for the administrator (German source, active language)."""
    if config.mode not in MODES:
        raise KonnektorError(
            None,
            _("Unbekannte Verbindungsart zum Konnektor: %(mode)s (erlaubt: plain, basic, cert).")
            % {"mode": repr(config.mode)},
            "mode",
            kind="config",
        )
    scheme = urlsplit(config.base_url).scheme
    if scheme not in ("http", "https"):
        raise KonnektorError(
            None,
            _("Die Adresse des Konnektors ist ungültig: %(url)s.") % {"url": repr(config.base_url)},
            "base_url",
            kind="config",
        )
    if config.mode != "plain" and scheme != "https":
        raise KonnektorError(
            None,
            _("Für die Anmeldung am Konnektor (Benutzer oder Client-Zertifikat) ist eine HTTPS-Adresse nötig."),
            "base_url",
            kind="config",
        )
    if config.mode == "basic" and not (config.username and config.password):
        raise KonnektorError(
            None,
            _("Für die Anmeldung am Konnektor fehlen Benutzername oder Passwort."),
            "credentials",
            kind="config",
        )
    if config.mode == "cert" and not (config.client_cert_pem and config.client_key_pem):
        raise KonnektorError(
            None,
            _("Für die Anmeldung am Konnektor fehlen Client-Zertifikat oder Schlüssel."),
            "client_cert",
            kind="config",
        )


def build_ssl_context(config: KonnektorConfig) -> tuple[ssl.SSLContext, bool]:
    """The context for HTTPS to the Konnektor and whether urllib3 must check the host name."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.ca_pem:
        try:
            context.load_verify_locations(cadata=config.ca_pem.decode("ascii"))
        except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
            raise KonnektorError(
                None,
                _("Das CA-Zertifikat für den Konnektor ist ungültig (PEM erwartet)."),
                str(exc),
                kind="config",
            ) from None
        context.check_hostname = False
        check_hostname = False
    else:
        context.load_default_certs()
        check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    if config.mode == "cert":
        assert config.client_cert_pem is not None and config.client_key_pem is not None
        _load_client_identity(context, config.client_cert_pem, config.client_key_pem)
    return context, check_hostname


def build_session(config: KonnektorConfig) -> requests.Session:
    check_config(config)
    session = requests.Session()
    # No proxies, CA bundles or .netrc credentials from the environment: the Konnektor sits in the hospital's LAN
    # and is trusted only as configured.
    session.trust_env = False
    # A Konnektor does not redirect; following one could carry credentials or documents elsewhere.
    session.max_redirects = 0
    session.headers["User-Agent"] = "KIM-Portal"
    context, check_hostname = build_ssl_context(config)
    session.mount("https://", _TlsAdapter(context, check_hostname=check_hostname))
    if config.mode == "basic":
        session.auth = HTTPBasicAuth(config.username, config.password)
    return session


class KonnektorTransport(Transport):
    """zeep's transport with a connect timeout, a read timeout per operation, and refused logins reported as such.

    SignDocument waits for the PIN at the card terminal (minutes); every other operation gets ``timeout``.
    """

    def __init__(self, session: requests.Session, *, timeout: float, sign_timeout: float) -> None:
        super().__init__(session=session, timeout=timeout, operation_timeout=timeout)  # type: ignore[no-untyped-call]
        # zeep mounts a file:// adapter on the session; nothing the portal sends goes to a file URL.
        session.adapters.pop("file://", None)
        self.timeout = timeout
        self.sign_timeout = sign_timeout

    def post(self, address: str, message: bytes | str, headers: dict[str, str]) -> requests.Response:
        action = headers.get("SOAPAction", "").strip('"')
        read = self.sign_timeout if action.endswith(_SLOW_ACTIONS) else self.timeout
        response = self.session.post(address, data=message, headers=headers, timeout=(self.timeout, read))
        check_http_status(response)
        return response

    def get(self, address: str, params: Any, headers: dict[str, str]) -> requests.Response:
        response = self.session.get(address, params=params, headers=headers, timeout=(self.timeout, self.timeout))
        check_http_status(response)
        return response

    def load(self, url: str) -> bytes:
        # The WSDL subset is loaded once per process from the package (see client._document); a Konnektor's
        # answer never makes the portal fetch anything.
        raise KonnektorError(
            None,
            _("Unerwarteter Nachladeversuch: das Portal lädt keine Dateien vom Konnektor nach."),
            url,
            kind="protocol",
        )


def check_http_status(response: requests.Response) -> None:
    """Refused logins, and HTTP errors that are not SOAP faults (a proxy's or web server's error page), are
    reported as such instead of as an unreadable fault."""
    if response.status_code in (401, 407):
        raise KonnektorError(
            None,
            _("Anmeldung am Konnektor fehlgeschlagen: Benutzername oder Passwort wurden abgelehnt."),
            f"HTTP {response.status_code}",
            kind="auth",
        )
    if response.status_code == 403:
        raise KonnektorError(
            None,
            _("Der Konnektor verweigert den Zugriff (Zugangsdaten oder Client-Zertifikat prüfen)."),
            "HTTP 403",
            kind="auth",
        )
    if response.status_code >= 400 and not (response.status_code == 500 and b"Fault" in response.content):
        raise KonnektorError(
            None,
            _("Der Konnektor hat mit HTTP-Status %(status)s statt einer SOAP-Antwort geantwortet.")
            % {"status": response.status_code},
            f"HTTP {response.status_code}",
            kind="protocol",
        )


def _load_client_identity(context: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    try:
        with _secret_files(cert_pem, key_pem) as (cert_path, key_path):
            context.load_cert_chain(certfile=cert_path, keyfile=key_path)
    except (ssl.SSLError, OSError) as exc:
        raise KonnektorError(
            None,
            _("Client-Zertifikat oder Schlüssel für den Konnektor sind ungültig oder passen nicht zusammen."),
            str(exc),
            kind="config",
        ) from None


@contextmanager
def _secret_files(cert_pem: bytes, key_pem: bytes) -> Iterator[tuple[str, str]]:
    """Two paths OpenSSL can read the certificate and key from, gone when the block ends."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None and os.path.isdir("/proc/self/fd"):
        fds = []
        try:
            for name, data in (("konnektor-cert", cert_pem), ("konnektor-key", key_pem)):
                fd = memfd_create(name, getattr(os, "MFD_CLOEXEC", 0))
                fds.append(fd)
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    folder = tempfile.mkdtemp(prefix="konnektor-")  # 0700
    try:
        paths = []
        for name, data in (("cert.pem", cert_pem), ("key.pem", key_pem)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            paths.append(path)
        yield paths[0], paths[1]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
