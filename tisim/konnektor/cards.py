"""The simulated smartcards: eHBA and SMC-B with software keys, PIN state and a slot in a card terminal."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from tisim.konnektor.pki import Issued

MAX_PIN_TRIES = 3
PIN_STATES = ("VERIFIABLE", "TRANSPORT_PIN", "EMPTY_PIN", "BLOCKED", "DISABLED")


@dataclass
class ComfortSession:
    """A Komfortsignatur session: PIN.QES was entered once for (card, ``user_id``); SignDocument calls of this
    ClientSystemId and UserId sign without a PIN until ``remaining`` signatures are made or ``expires`` passes
    (monotonic clock), or it is deactivated, or the card is pulled."""

    user_id: str
    client_system_id: str
    remaining: int
    expires: float

    def time_left(self) -> float:
        return max(0.0, self.expires - time.monotonic())

    @property
    def exhausted(self) -> bool:
        return self.remaining <= 0 or self.time_left() <= 0


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
    # The card's keys and certificates by algorithm: "RSA" and/or "ECC" (a G2.1 card has both).
    keys: dict[str, Issued] = field(default_factory=dict, repr=False)
    # The job (or PIN verification) holding the card right now: a second one gets "Ressource belegt".
    busy_with: str | None = field(default=None, repr=False)
    # The SMC-B's C.AUT keys and certificates by algorithm (issued by the SMC-B CA): ExternalAuthenticate.
    aut_keys: dict[str, Issued] = field(default_factory=dict, repr=False)
    # The open Komfortsignatur session (eHBA only): the card's raised security state, bound to one UserId.
    comfort: ComfortSession | None = field(default=None, repr=False)

    @property
    def certificate_der(self) -> bytes:
        """The certificate ReadCardCertificate returns by default (Crypt RSA): RSA where the card has it."""
        return self.key_for("RSA").cert_der

    @property
    def ecc_certificate_der(self) -> bytes | None:
        ecc = self.keys.get("ECC")
        return ecc.cert_der if ecc is not None else None

    def aut_key_for(self, crypt: str | None) -> Issued:
        """The C.AUT key for ``crypt`` ("ECC" or "RSA"; None: RSA where the card has it, as ReadCardCertificate's
        default). Raises KeyError if the card lacks it."""
        if crypt is None:
            return self.aut_keys["RSA"] if "RSA" in self.aut_keys else self.aut_keys["ECC"]
        return self.aut_keys[crypt]

    @property
    def expiry_certificate(self) -> Issued | None:
        """The certificate whose end of validity GetCards reports: the eHBA's C.QES, the SMC-B's C.AUT (ECC)."""
        if self.aut_keys:
            return self.aut_keys.get("ECC") or next(iter(self.aut_keys.values()))
        return self.key_for("RSA") if self.keys else None

    @property
    def generation(self) -> str:
        return "G2.1" if "ECC" in self.keys else "G2.0"

    def key_for(self, crypt: str | None) -> Issued:
        """The key SignDocument/ReadCardCertificate use for ``crypt`` (TAB_KON_900): RSA_ECC takes ECC on a
        G2.1 card, else RSA; RSA or nothing takes RSA. Raises KeyError if the card lacks the asked algorithm."""
        if crypt == "ECC":
            return self.keys["ECC"]
        if crypt == "RSA_ECC" and "ECC" in self.keys:
            return self.keys["ECC"]
        return self.keys["RSA"] if "RSA" in self.keys else self.keys["ECC"]

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
