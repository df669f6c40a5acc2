"""What the simulated CM and the Fachdienst behind it know about senders and recipients.

Kept in ``<data_dir>/send.json`` so another process (the CLI, a test, the demo's seeding) can change
it while the simulator runs; the server reads it once per submission::

    {
      "fachdienst": true,
      "hold_dsns": false,
      "recipients": {"<address>": {"state": "no-certificate", "code": "4004"}},
      "senders_without_certificate": {"<address>": "mail"}
    }

``fachdienst``: simulate the Fachdienst behind the CM (see docs/tisim-send.md): DSNs per RCPT
``NOTIFY``, recipients the CM does not host go to the "outside" drop, sender integrity (A_23421/
A_23422) is enforced. Off, the CM behaves as before issue 10: only hosted accounts are reachable,
every other recipient counts as "no valid encryption certificate", and no DSNs are written.

Recipient states: ``ok`` (reachable; hosted → its maildrop, otherwise the outside drop; the default
for hosted accounts and, with the Fachdienst, for every address in a KIM domain — any other
address counts as ``no-certificate``),
``no-certificate`` (the CM removes the recipient before sending and writes an error mail with
``code``, 4004 by default; 4001/4003/4005 fit here too), ``unknown`` (the CM sends, the Fachdienst
has no such mailbox: a failure DSN, Status 5.1.1), ``delayed`` (the Fachdienst keeps the mail: a
"delayed" DSN, Status 4.4.1, for NOTIFY=DELAY; delivered or failed when released).
``hold_dsns``: DSNs are kept back until released (to see a message "sent, not yet delivered").

Senders without certificate are answered ``553`` at the named stage: ``mail`` (MAIL FROM),
``rcpt`` (every RCPT TO) or ``data`` (after the end of DATA, as a KIM 1.5 CM that checks only then).
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tisim.config import write_json_atomic

SEND_FILE = "send.json"
KIM_DOMAIN_SUFFIXES = (".kim.telematik", ".kim.telematik-test")
RECIPIENT_STATES = ("ok", "unknown", "no-certificate", "delayed")
SENDER_STAGES = ("mail", "rcpt", "data")
# CM error codes (Tab_Fehlercodes_KOMLE-Clientmodule) that mean "this recipient was removed".
REMOVAL_CODES = ("4001", "4003", "4004", "4005")


@dataclass(frozen=True)
class RecipientState:
    state: str
    code: str = "4004"


@dataclass(frozen=True)
class SendPolicy:
    """One consistent reading of ``send.json`` (plus the simulator's own default)."""

    fachdienst: bool = False
    hold_dsns: bool = False
    recipients: dict[str, RecipientState] = field(default_factory=dict)
    senders_without_certificate: dict[str, str] = field(default_factory=dict)

    def recipient(self, address: str, *, hosted: bool) -> RecipientState:
        explicit = self.recipients.get(address.lower())
        if explicit is not None:
            return explicit
        if hosted:
            return RecipientState("ok")
        if self.fachdienst:
            # Only KIM addresses can be in the VZD; anything else has no encryption certificate
            # and the CM removes it (A_23174: non-KIM recipients are not sent to).
            return RecipientState("ok" if is_kim_address(address) else "no-certificate")
        # Without the Fachdienst there is nobody outside: an address the CM does not host plays
        # "not in the VZD", as the simulator always did.
        return RecipientState("no-certificate")

    def sender_stage(self, address: str) -> str | None:
        return self.senders_without_certificate.get(address.lower())


def is_kim_address(address: str) -> bool:
    domain = address.rpartition("@")[2].lower()
    return any(domain.endswith(suffix) for suffix in KIM_DOMAIN_SUFFIXES)


class SendRules:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / SEND_FILE
        self._lock_path = data_dir / ".send.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load_raw(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _update(self, change: Callable[[dict[str, Any]], None]) -> None:
        with self._locked():
            data = self.load_raw()
            change(data)
            write_json_atomic(self.path, data)

    def policy(self, *, fachdienst: bool | None = None) -> SendPolicy:
        """The rules now; ``fachdienst`` given by the simulator's constructor wins over the file."""
        data = self.load_raw()
        recipients = {
            str(address).lower(): RecipientState(str(entry.get("state", "ok")), str(entry.get("code", "4004")))
            for address, entry in (data.get("recipients") or {}).items()
            if isinstance(entry, dict)
        }
        senders = {str(a).lower(): str(s) for a, s in (data.get("senders_without_certificate") or {}).items()}
        mode = bool(data.get("fachdienst", False)) if fachdienst is None else fachdienst
        return SendPolicy(
            fachdienst=mode,
            hold_dsns=bool(data.get("hold_dsns", False)),
            recipients=recipients,
            senders_without_certificate=senders,
        )

    def set_fachdienst(self, on: bool) -> None:
        self._update(lambda data: data.__setitem__("fachdienst", bool(on)))

    def set_hold_dsns(self, on: bool) -> None:
        self._update(lambda data: data.__setitem__("hold_dsns", bool(on)))

    def set_recipient_state(self, address: str, state: str, *, code: str | None = None) -> None:
        if state not in RECIPIENT_STATES:
            raise ValueError(f"unknown recipient state {state!r}; known: {', '.join(RECIPIENT_STATES)}")
        if code is not None and (state != "no-certificate" or code not in REMOVAL_CODES):
            raise ValueError(f"code only with 'no-certificate', one of {', '.join(REMOVAL_CODES)}")
        entry = {"state": state, "code": code or "4004"}
        self._update(lambda data: data.setdefault("recipients", {}).__setitem__(address.lower(), entry))

    def set_sender_without_certificate(self, address: str, *, stage: str = "mail", on: bool = True) -> None:
        if stage not in SENDER_STAGES:
            raise ValueError(f"unknown stage {stage!r}; known: {', '.join(SENDER_STAGES)}")

        def change(data: dict[str, Any]) -> None:
            senders = data.setdefault("senders_without_certificate", {})
            if on:
                senders[address.lower()] = stage
            else:
                senders.pop(address.lower(), None)

        self._update(change)

    def reset(self, *, keep_mode: bool = True) -> None:
        """Forget recipient states and senders; the Fachdienst switch stays unless ``keep_mode=False``."""

        def change(data: dict[str, Any]) -> None:
            mode = data.get("fachdienst")
            data.clear()
            if keep_mode and mode is not None:
                data["fachdienst"] = mode

        self._update(change)
