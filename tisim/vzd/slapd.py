"""Run Debian's OpenLDAP slapd as a private, unprivileged VZD test directory.

Recipe from shared/research/vzd.md §7.2: slapd.conf with core/cosine/inetorgperson + the project's own VZD
schema, back_mdb as a module, ``sizelimit 100`` like the real VZD (TIP1-A_5552), the index set from
shared/TESTING.md, bulk load with slapadd while slapd is stopped, slapd bound to 127.0.0.1 only.

slapd runs as whoever starts it, root included: it must reach its data wherever the clone is (a 0700 home, a
``mktemp -d`` folder, a path with spaces), and a loopback-only test directory gains nothing from ``-u openldap``.

    server = SlapdServer(data_dir, ldif_path, port=0).start()
    server.url  # ldap://127.0.0.1:PORT
    server.stop()

With ``ldaps=True`` it also listens on ``server.ldaps_url`` with a self-signed certificate (``server.ca_file``).
With ``konnektor_tls=make_konnektor_tls(dir)`` it serves that Konnektor-like certificate instead (CN from the card,
no host name), and with ``verify_client="demand"`` it refuses clients without a certificate from the client CA
(the Konnektor's "client authentication mandatory", gemSpec_CM_KOMLE A_21223-01).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tisim.tls import ensure_certificate
from tisim.vzd.certs import KonnektorTls
from tisim.vzd.generate import BASE_DN

SCHEMA_FILE = Path(__file__).with_name("vzd.schema")
SYSTEM_SCHEMA_DIR = Path("/etc/ldap/schema")
SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
ROOT_DN = f"cn=admin,{BASE_DN}"
ROOT_PW = "secret"  # test directory only; bound to loopback
# Exactly the index set of shared/TESTING.md: every attribute the portal ORs over is indexed.
INDEXES = (
    "index objectClass eq",
    "index cn,sn,givenName,displayName,organization,l,mail,telematikID,postalCode eq,sub",
    "index specialization,professionOID,entryType,domainID,uid eq",
)
MAXSIZE = 4 * 1024**3  # sparse file; 200,000 entries need ~1.4 GiB


class SlapdError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_installed() -> None:
    """Install slapd + ldap-utils from Debian when missing (CI starts from a clean machine)."""
    if Path(SLAPD).exists() and Path(SLAPADD).exists():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "slapd", "ldap-utils"], check=True, env=env, stdout=subprocess.DEVNULL)


def _quoted(path: Path) -> str:
    """A slapd.conf argument: double quotes keep a path with spaces one argument (slapd.conf(5))."""
    text = str(path)
    if any(c in text for c in '"\\\n'):
        raise SlapdError(f"slapd.conf cannot name {text!r}: no quotes, backslashes or newlines in the data dir")
    return f'"{text}"'


class SlapdServer:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        ldif_path: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        schema_file: Path = SCHEMA_FILE,
        extra_ldif: list[Path] | None = None,
        ldaps: bool = False,
        konnektor_tls: KonnektorTls | None = None,
        verify_client: str = "never",  # slapd's TLSVerifyClient: never, allow, try, demand
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.ldif_path = Path(ldif_path).resolve() if ldif_path else None
        self.port = port or free_port()
        self.konnektor_tls = konnektor_tls
        self.verify_client = verify_client
        self.ldaps_port = free_port() if ldaps or konnektor_tls else None
        self.schema_file = Path(schema_file).resolve()
        self.extra_ldif = [Path(p).resolve() for p in extra_ldif or []]
        self.process: subprocess.Popen[bytes] | None = None

    # -- paths ---------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if self.ldaps_port is None:
            raise SlapdError("this slapd was created without ldaps=True")
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The self-signed server certificate, which is its own CA: what a client pins as its CA file."""
        return ensure_certificate(self.tls_dir).cert_path

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "slapd.conf"

    @property
    def db_dir(self) -> Path:
        return self.data_dir / "db"

    @property
    def loaded_marker(self) -> Path:
        return self.db_dir / "loaded.ok"

    # -- setup ---------------------------------------------------------------------------------------------------
    def write_config(self) -> None:
        self.db_dir.mkdir(parents=True, exist_ok=True)
        system_schemas = [SYSTEM_SCHEMA_DIR / n for n in ("core.schema", "cosine.schema", "inetorgperson.schema")]
        lines = [
            *(f"include {_quoted(p)}" for p in [*system_schemas, self.schema_file]),
            f"pidfile {_quoted(self.data_dir / 'slapd.pid')}",
            f"argsfile {_quoted(self.data_dir / 'slapd.args')}",
        ]
        if self.konnektor_tls is not None:
            tls = self.konnektor_tls
            lines += [
                f"TLSCertificateFile {_quoted(tls.cert_path)}",
                f"TLSCertificateKeyFile {_quoted(tls.key_path)}",
                f"TLSCACertificateFile {_quoted(tls.client_ca_path)}",
                f"TLSVerifyClient {self.verify_client}",
            ]
        elif self.ldaps_port is not None:
            cert = ensure_certificate(self.tls_dir)
            lines += [
                f"TLSCertificateFile {_quoted(cert.cert_path)}",
                f"TLSCertificateKeyFile {_quoted(cert.key_path)}",
            ]
        lines += [
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "sizelimit size.soft=100 size.hard=100",
            "timelimit 30",
            "database mdb",
            f'suffix "{BASE_DN}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {_quoted(self.db_dir)}",
            f"maxsize {MAXSIZE}",
            "index_substr_any_len 3",
            *INDEXES,
            "access to * by * read",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    def load(self) -> None:
        """slapadd the LDIF into a fresh database (slapd must be stopped)."""
        if self.db_dir.exists():
            shutil.rmtree(self.db_dir)
        self.write_config()
        sources = [p for p in [self.ldif_path, *self.extra_ldif] if p]
        for src in sources:
            with src.open("rb") as fh:
                result = subprocess.run([SLAPADD, "-q", "-f", str(self.conf_path)], stdin=fh, capture_output=True)
            if result.returncode != 0:
                raise SlapdError(f"slapadd {src} failed: {result.stderr.decode(errors='replace')[-2000:]}")
        self.loaded_marker.write_text("ok\n")

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, *, reload: bool = False, timeout: float = 30.0) -> SlapdServer:
        ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if reload or not self.loaded_marker.exists():
            self.load()
        else:
            self.write_config()
        urls = [f"ldap://127.0.0.1:{self.port}/"]
        if self.ldaps_port is not None:
            urls.append(f"ldaps://127.0.0.1:{self.ldaps_port}/")
        # No -u/-g: dropping to `openldap` fails for data under a folder only the caller may enter (0700 homes).
        cmd = [SLAPD, "-d", "0", "-f", str(self.conf_path), "-h", " ".join(urls)]
        # -d 0 keeps slapd in the foreground so it is our child and dies with an explicit stop().
        log = (self.data_dir / "slapd.log").open("ab")
        try:
            self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        finally:
            log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                err = (self.data_dir / "slapd.log").read_text(errors="replace")
                raise SlapdError(f"slapd exited with {self.process.returncode}: {err[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        self.stop()
        raise SlapdError(f"slapd did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> SlapdServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
