"""The simulator's configuration file and the runtime file ``cm.json``.

Config (JSON, written by hand or by :class:`tisim.cm.CMSimulator`)::

    {"host": "127.0.0.1", "smtp_port": 8465, "pop3_port": 8995, "tls": true,
     "starttls": false, "require_client_cert": false,
     "data_dir": "/abs/or/relative/to/the/config/file", "allow_plain_username": false,
     "accounts": [{"address": "a@x.kim.telematik", "password": "..."}]}

``tls`` false: plain SMTP/POP3 only. ``tls`` true: implicit TLS (SMTPS/POP3S) unless ``starttls`` is
true, then the ports start plain, offer STARTTLS/STLS and refuse any login before it.
``require_client_cert``: the TLS handshake demands a certificate from the simulator's client CA.

``<data_dir>/cm.json`` is written by a running simulator so other processes find its actual ports
and the certificate fingerprint to pin.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_SMTP_PORT = 8465
DEFAULT_POP3_PORT = 8995
CONFIG_FILE = "config.json"
RUNTIME_FILE = "cm.json"


def default_data_dir() -> Path:
    return Path(os.environ.get("TISIM_DATA_DIR") or Path.cwd() / "var" / "tisim").resolve()


@dataclass
class CMConfig:
    path: Path
    data_dir: Path
    host: str = DEFAULT_HOST
    smtp_port: int = DEFAULT_SMTP_PORT
    pop3_port: int = DEFAULT_POP3_PORT
    tls: bool = True
    starttls: bool = False
    require_client_cert: bool = False
    allow_plain_username: bool = False
    # Keys are lower-cased addresses: mail addresses are matched case-insensitively.
    accounts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, *, create: bool = False, data_dir: Path | None = None) -> CMConfig:
        """Read ``path``; with ``create`` a missing file is written with defaults and no accounts."""
        path = path.resolve()
        if not path.exists():
            if not create:
                raise FileNotFoundError(f"simulator config {path} does not exist")
            config = cls(path=path, data_dir=(data_dir or path.parent).resolve())
            config.save()
            return config
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        configured_dir = Path(raw.get("data_dir") or ".")
        if not configured_dir.is_absolute():
            configured_dir = path.parent / configured_dir
        accounts: dict[str, str] = {}
        for entry in raw.get("accounts", []):
            accounts[str(entry["address"]).lower()] = str(entry["password"])
        return cls(
            path=path,
            data_dir=(data_dir or configured_dir).resolve(),
            host=str(raw.get("host", DEFAULT_HOST)),
            smtp_port=int(raw.get("smtp_port", DEFAULT_SMTP_PORT)),
            pop3_port=int(raw.get("pop3_port", DEFAULT_POP3_PORT)),
            tls=bool(raw.get("tls", True)),
            starttls=bool(raw.get("starttls", False)),
            require_client_cert=bool(raw.get("require_client_cert", False)),
            allow_plain_username=bool(raw.get("allow_plain_username", False)),
            accounts=accounts,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "smtp_port": self.smtp_port,
            "pop3_port": self.pop3_port,
            "tls": self.tls,
            "starttls": self.starttls,
            "require_client_cert": self.require_client_cert,
            "data_dir": str(self.data_dir),
            "allow_plain_username": self.allow_plain_username,
            "accounts": [{"address": a, "password": p} for a, p in sorted(self.accounts.items())],
        }

    def save(self) -> None:
        write_json_atomic(self.path, self.to_json())


def resolve_config(config: str | Path | None, data_dir: str | Path | None, *, create: bool) -> CMConfig:
    """The CLI rule: ``--config`` wins; else ``<data-dir>/config.json``; ``--data-dir`` overrides data_dir.

    Without either, a running simulator's ``cm.json`` may name the config file it was started with.
    """
    dd = Path(data_dir).resolve() if data_dir else None
    if config:
        return CMConfig.load(Path(config), create=create, data_dir=dd)
    base = dd or default_data_dir()
    runtime = read_runtime(base)
    if runtime and runtime.get("config") and not (base / CONFIG_FILE).exists():
        return CMConfig.load(Path(runtime["config"]), create=False, data_dir=dd)
    return CMConfig.load(base / CONFIG_FILE, create=create, data_dir=base)


def read_runtime(data_dir: Path) -> dict[str, Any] | None:
    try:
        runtime: dict[str, Any] = json.loads((data_dir / RUNTIME_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return runtime


def write_json_atomic(path: Path, payload: Any) -> None:
    # Readers in other processes must never see a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
