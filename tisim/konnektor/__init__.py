"""The simulated Konnektor: connector.sds and the SOAP services a portal needs for batch QES with the eHBA, the
Komfortsignatur, VerifyDocument and the SMC-B's ExternalAuthenticate; a card terminal with display and PIN pad,
software cards with real keys, faults on demand.

``python -m tisim konnektor-run`` runs it; ``python -m tisim terminal --pin 123456`` types the PIN.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tisim.konnektor.cards import SimCard
    from tisim.konnektor.operations import SignedRequest
    from tisim.konnektor.simulator import FAULT_KINDS, RUNTIME_FILE, KonnektorSimulator
    from tisim.konnektor.terminal import Terminal

__all__ = ["FAULT_KINDS", "RUNTIME_FILE", "KonnektorSimulator", "SignedRequest", "SimCard", "Terminal"]

# Loaded on first use: `python -m tisim` builds its parser from tisim.konnektor.cli and should not pay for
# lxml, cryptography and pyhanko unless the simulator itself runs.
_WHERE = {
    "SimCard": "tisim.konnektor.cards",
    "SignedRequest": "tisim.konnektor.operations",
    "FAULT_KINDS": "tisim.konnektor.simulator",
    "RUNTIME_FILE": "tisim.konnektor.simulator",
    "KonnektorSimulator": "tisim.konnektor.simulator",
    "Terminal": "tisim.konnektor.terminal",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'tisim.konnektor' has no attribute {name!r}")
