"""The simulated card terminal: a display and a PIN pad, shared between the Konnektor's worker threads
and whoever plays the person at the pad (a test, ``python -m tisim terminal``, or ``auto_pin``).

A PIN request is one round: the Konnektor shows the prompt and waits; the person types a PIN or presses
cancel; StopSignature, a timeout or the simulator's shutdown end the round from the other side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["pin", "cancel", "timeout", "stopped", "removed"]

IDLE_DISPLAY = ["Kartenterminal bereit"]
CHECKING_DISPLAY = ["PIN wird geprüft ..."]


@dataclass
class PinRound:
    """One PIN prompt on the terminal's display."""

    job_number: str | None
    lines: list[str]
    card_handle: str
    outcome: Outcome | None = None
    pin: str | None = None
    stop_reason: str = ""
    done: threading.Event = field(default_factory=threading.Event)


class Terminal:
    def __init__(self, ct_id: str, workplaces: Sequence[str]) -> None:
        self.ct_id = ct_id
        self.workplaces: list[str] = list(workplaces)
        self._cond = threading.Condition()
        self._round: PinRound | None = None
        self._display: list[str] = list(IDLE_DISPLAY)
        # Every prompt ever shown, for assertions ("two PIN entries for a split batch").
        self.prompts: list[list[str]] = []

    # --- what a person sees and does -------------------------------------------------------------

    @property
    def display(self) -> list[str]:
        with self._cond:
            return list(self._display)

    @property
    def waiting(self) -> bool:
        with self._cond:
            return self._round is not None and self._round.outcome is None

    @property
    def job_number(self) -> str | None:
        with self._cond:
            return self._round.job_number if self._round is not None and self._round.outcome is None else None

    def wait_for_prompt(self, timeout: float) -> bool:
        """Block until a PIN is asked for (True) or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._round is not None and self._round.outcome is None):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def wait_settled(self, timeout: float) -> list[str]:
        """The display once the Konnektor has checked a just-typed PIN (or after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._display == CHECKING_DISPLAY:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            return list(self._display)

    def enter_pin(self, pin: str) -> None:
        """Type ``pin`` and press OK; raises if no PIN is asked for now."""
        self._finish("pin", pin=pin)

    def cancel(self) -> None:
        """Press the cancel key while a PIN is asked for."""
        self._finish("cancel")

    # --- the Konnektor's side ---------------------------------------------------------------------

    def begin(self, lines: list[str], *, job_number: str | None, card_handle: str) -> PinRound:
        with self._cond:
            if self._round is not None and self._round.outcome is None:
                raise RuntimeError(f"terminal {self.ct_id} is already asking for a PIN")
            pin_round = PinRound(job_number=job_number, lines=list(lines), card_handle=card_handle)
            self._round = pin_round
            self._display = list(lines)
            self.prompts.append(list(lines))
            self._cond.notify_all()
            return pin_round

    def await_round(self, pin_round: PinRound, timeout: float) -> Outcome:
        if not pin_round.done.wait(timeout):
            self.end(pin_round, "timeout")
        assert pin_round.outcome is not None
        return pin_round.outcome

    def end(self, pin_round: PinRound, outcome: Outcome, reason: str = "") -> None:
        """Close ``pin_round`` from the Konnektor's side (timeout, StopSignature, shutdown)."""
        with self._cond:
            if pin_round.outcome is None:
                pin_round.outcome = outcome
                pin_round.stop_reason = reason
                pin_round.done.set()
            if self._round is pin_round:
                self._cond.notify_all()

    def show(self, lines: list[str]) -> None:
        with self._cond:
            self._display = list(lines)
            self._cond.notify_all()

    def _finish(self, outcome: Outcome, *, pin: str | None = None) -> None:
        with self._cond:
            pin_round = self._round
            if pin_round is None or pin_round.outcome is not None:
                raise RuntimeError(f"terminal {self.ct_id} is not asking for a PIN")
            pin_round.outcome = outcome
            pin_round.pin = pin
            pin_round.done.set()
            self._display = ["Abbruch"] if outcome == "cancel" else list(CHECKING_DISPLAY)
            self._cond.notify_all()

    def state(self) -> dict[str, object]:
        with self._cond:
            asking = self._round is not None and self._round.outcome is None
            return {
                "ct_id": self.ct_id,
                "workplaces": list(self.workplaces),
                "display": list(self._display),
                "waiting": asking,
                "job_number": self._round.job_number if asking and self._round is not None else None,
                "prompts": len(self.prompts),
            }
