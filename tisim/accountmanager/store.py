"""The simulated Account Manager's state: registration codes, accounts, the directory entries it maintains.

One JSON file, ``<data_dir>/accountmanager/state.json``, read and written under an exclusive ``flock`` for every
change, so ``python -m tisim accountmanager reg-code`` (another process) can add a code while the server runs.
Passwords are not kept here: the Clientmodul's account store is the one truth (tisim.accountmanager.cmlink).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

STATE_FILE = "state.json"
LOCK_FILE = ".state.lock"
DEFAULT_KIM_VERSION = "1.5"
DEFAULT_TTL = 90
MAX_MAIL_SIZE = 734003200

T = TypeVar("T")
_thread_lock = threading.Lock()


@dataclass(frozen=True)
class RegistrationCode:
    reference_id: str
    initial_password: str
    address: str
    telematik_id: str | None


def _new_state() -> dict[str, Any]:
    return {"codes": {}, "accounts": {}, "directory": {}, "vzd_available": True}


class StateStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with _thread_lock, open(self.directory / LOCK_FILE, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            state = json.loads((self.directory / STATE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _new_state()
        base = _new_state()
        base.update(state if isinstance(state, dict) else {})
        return base

    def _save(self, state: dict[str, Any]) -> None:
        path = self.directory / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def read(self) -> dict[str, Any]:
        with self._locked():
            return self._load()

    def update(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Run ``change`` on the current state and save it (unless it raises), atomically across processes."""
        with self._locked():
            state = self._load()
            result = change(state)
            self._save(state)
            return result

    # --- registration codes ----------------------------------------------------------------------------------

    def issue_code(self, address: str, *, telematik_id: str | None = None) -> RegistrationCode:
        """A registration code (referenceID) and initial password for ``address``, as a provider's contract
        letter would carry them; ``telematik_id`` binds it to that institution's card."""
        code = RegistrationCode(
            reference_id="REG-" + secrets.token_hex(6).upper(),
            initial_password=secrets.token_urlsafe(12),
            address=address.lower(),
            telematik_id=telematik_id,
        )

        def add(state: dict[str, Any]) -> None:
            state["codes"][code.reference_id] = {
                "address": code.address,
                "ini_password": code.initial_password,
                "telematik_id": code.telematik_id,
                "used": False,
            }

        self.update(add)
        return code
