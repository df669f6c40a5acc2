"""The simulated smartcards: eHBA and SMC-B with software keys, PIN state and a slot in a card terminal."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tisim.konnektor.pki import Issued

MAX_PIN_TRIES = 3
PIN_STATES = ("VERIFIABLE", "TRANSPORT_PIN", "EMPTY_PIN", "BLOCKED", "DISABLED")


@dataclass(eq=False)
class SimCard:
    """A card in a terminal slot. ``card_handle`` changes when the card is pulled and inserted again."""

    card_handle: str
    card_type: str  # "HBA" or "SMC-B"
    iccsn: str
    telematik_id: str
    holder_name: str
    ct_id: str
    slot_id: int
    pin: str
    pin_state: str = "VERIFIABLE"
    left_tries: int = MAX_PIN_TRIES
    inserted: bool = True
    insert_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(microsecond=0))
    issued: Issued | None = field(default=None, repr=False)
    # The job (or PIN verification) holding the card right now: a second one gets "Ressource belegt".
    busy_with: str | None = field(default=None, repr=False)

    @property
    def certificate_der(self) -> bytes:
        assert self.issued is not None
        return self.issued.cert_der

    @property
    def pin_ref(self) -> str:
        return "PIN.QES" if self.card_type == "HBA" else "PIN.SMC"

    def pin_refs(self) -> tuple[str, ...]:
        return ("PIN.QES", "PIN.CH") if self.card_type == "HBA" else ("PIN.SMC",)

    def register_wrong_pin(self) -> None:
        self.left_tries = max(0, self.left_tries - 1)
        if self.left_tries == 0:
            self.pin_state = "BLOCKED"

    def register_right_pin(self) -> None:
        self.left_tries = MAX_PIN_TRIES
