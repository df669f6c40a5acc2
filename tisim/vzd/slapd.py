"""Run Debian's OpenLDAP slapd as a private, unprivileged VZD test directory.

Recipe from shared/research/vzd.md §7.2: slapd.conf with core/cosine/inetorgperson + the project's own VZD
schema, back_mdb as a module, ``sizelimit 100`` like the real VZD (TIP1-A_5552), the index set from
shared/TESTING.md, bulk load with slapadd while slapd is stopped, slapd bound to 127.0.0.1 only and running as
an unprivileged user (``openldap`` if it exists, else ``nobody``) when we are root.

    server = SlapdServer(data_dir, ldif_path, port=0).start()
    server.url  # ldap://127.0.0.1:PORT
    server.stop()
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

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


def _service_user() -> tuple[str, str] | None:
    if os.geteuid() != 0:
        return None
    for name in ("openldap", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return name, grp.getgrgid(pw.pw_gid).gr_name
    raise SlapdError("no unprivileged user (openldap/nobody) to run slapd as")


class SlapdServer:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        ldif_path: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        schema_file: Path = SCHEMA_FILE,
        extra_ldif: list[Path] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.ldif_path = Path(ldif_path).resolve() if ldif_path else None
        self.port = port or free_port()
        self.schema_file = Path(schema_file).resolve()
        self.extra_ldif = [Path(p).resolve() for p in extra_ldif or []]
        self.process: subprocess.Popen[bytes] | None = None
        self.user = _service_user()

    # -- paths ---------------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

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
        # A copy of the schema inside the data dir, so the unprivileged user can read it wherever the repo is.
        schema_copy = self.data_dir / "vzd.schema"
        shutil.copyfile(self.schema_file, schema_copy)
        lines = [
            *(f"include {SYSTEM_SCHEMA_DIR / n}" for n in ("core.schema", "cosine.schema", "inetorgperson.schema")),
            f"include {schema_copy}",
            f"pidfile {self.data_dir / 'slapd.pid'}",
            f"argsfile {self.data_dir / 'slapd.args'}",
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "sizelimit size.soft=100 size.hard=100",
            "timelimit 30",
            "database mdb",
            f'suffix "{BASE_DN}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {ROOT_PW}",
            f"directory {self.db_dir}",
            f"maxsize {MAXSIZE}",
            "index_substr_any_len 3",
            *INDEXES,
            "access to * by * read",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")
        self._chown_tree()

    def _chown_tree(self) -> None:
        if not self.user:
            return
        uid = pwd.getpwnam(self.user[0]).pw_uid
        gid = grp.getgrnam(self.user[1]).gr_gid
        for path in [self.data_dir, *self.data_dir.rglob("*")]:
            os.chown(path, uid, gid)
        self.data_dir.chmod(0o750)
        for parent in self.data_dir.parents:
            if not parent.stat().st_mode & 0o001:
                raise SlapdError(
                    f"{parent} is not searchable for {self.user[0]}: put the data dir under a world-searchable "
                    "directory (e.g. tempfile.mkdtemp() in /tmp)"
                )

    def _as_user(self, cmd: list[str]) -> list[str]:
        if not self.user:
            return cmd
        return ["runuser", "-u", self.user[0], "--", *cmd]

    def load(self) -> None:
        """slapadd the LDIF into a fresh database (slapd must be stopped)."""
        if self.db_dir.exists():
            shutil.rmtree(self.db_dir)
        self.write_config()
        sources = [p for p in [self.ldif_path, *self.extra_ldif] if p]
        for src in sources:
            # slapadd runs as the service user: give it a readable copy path via stdin instead of chmod-ing src.
            with src.open("rb") as fh:
                result = subprocess.run(
                    self._as_user([SLAPADD, "-q", "-f", str(self.conf_path)]),
                    stdin=fh,
                    capture_output=True,
                )
            if result.returncode != 0:
                raise SlapdError(f"slapadd {src} failed: {result.stderr.decode(errors='replace')[-2000:]}")
        self.loaded_marker.write_text("ok\n")
        self._chown_tree()

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self, *, reload: bool = False, timeout: float = 30.0) -> SlapdServer:
        ensure_installed()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if reload or not self.loaded_marker.exists():
            self.load()
        else:
            self.write_config()
        cmd = [SLAPD, "-d", "0", "-f", str(self.conf_path), "-h", f"ldap://127.0.0.1:{self.port}/"]
        if self.user:
            cmd += ["-u", self.user[0], "-g", self.user[1]]
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
