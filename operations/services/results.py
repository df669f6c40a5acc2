"""What the checks find: plain, picklable values kept in the operations store and rendered later.

Texts are kept as gettext message ids with their parameters (``Msg``) and translated when shown, so a report
checked while one user has English selected reads German for the next one (and the other way round).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext

from kimportal.texts import StoredText

OK = "ok"
WARNING = "warning"
ERROR = "error"
UNKNOWN = "unknown"  # the check could not run (e.g. the cards while the Konnektor is unreachable)

_RANK = {OK: 0, UNKNOWN: 1, WARNING: 2, ERROR: 3}


def worst(states: list[str], *, default: str = OK) -> str:
    return max(states, key=_RANK.__getitem__) if states else default


@dataclass(frozen=True)
class Msg:
    """A German message id (marked with gettext_noop where it is written) and its parameters."""

    text: str
    params: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, text: str, **params: Any) -> Msg:
        return cls(text, tuple(sorted(params.items())))

    @classmethod
    def raw(cls, text: str | StoredText | Promise) -> Msg:
        """A text of another module: shown as it is, or, if it is a stored text (kimportal.texts), translated then."""
        return cls("%(text)s", (("text", text),))

    def __str__(self) -> str:
        translated = gettext(self.text)
        if not self.params:
            return translated
        return translated % {
            key: str(value) if isinstance(value, Msg | StoredText | Promise) else value for key, value in self.params
        }


@dataclass(frozen=True)
class Component:
    """One line of the status page and one name in /health/ and /metrics."""

    key: str  # stable name for /health/ and /metrics: "konnektor", "clientmodul" …
    label: Msg
    state: str
    text: Msg


@dataclass(frozen=True)
class CertificateStatus:
    kind: str  # "smcb" | "ehba" | "cm_tls"
    label: Msg  # what it is, e.g. "SMC-B Klinikum Demo (C.AUT)"
    ident: str  # ICCSN or host:port: a label in /metrics
    not_after: float | None  # epoch seconds; None: could not be read
    days_left: float | None
    state: str
    text: Msg


@dataclass(frozen=True)
class CardStatus:
    card_type: str  # as the Konnektor says (SMC-B, HBA …)
    holder: str
    iccsn: str
    ct_id: str
    slot_id: int
    pin_status: str  # VERIFIED, VERIFIABLE, BLOCKED … ("" unknown)
    left_tries: int | None
    state: str
    text: Msg
    certificate: CertificateStatus | None = None


@dataclass(frozen=True)
class AccountStatus:
    mailbox_id: int
    address: str
    display_name: str
    active: bool
    login_state: str
    login_text: Msg
    last_success_at: float | None  # epoch seconds
    fetch_age: float | None  # seconds since the last successful fetch
    fetch_state: str
    fetch_text: Msg
    outbox_waiting: int
    outbox_failed: int  # failed in the last 24 hours
    outbox_uncertain: int
    outbox_held: int  # kept, not sent: its mailbox or KIM account is switched off
    outbox_oldest_wait: float | None  # seconds the oldest waiting message has waited
    outbox_state: str
    outbox_text: Msg
    signing_open: int  # drafts waiting for a signature (or failed and back in the queue)
    signing_running: int
    signing_signed: int  # signed, not yet handed to the outbox


@dataclass
class Report:
    checked_at: float  # epoch seconds
    duration: float  # seconds the round took
    components: list[Component] = field(default_factory=list)
    accounts: list[AccountStatus] = field(default_factory=list)
    # Held outbox mail of switched-off mailboxes (their accounts have no line): address -> messages.
    held_elsewhere: dict[str, int] = field(default_factory=dict)
    cards: list[CardStatus] = field(default_factory=list)
    certificates: list[CertificateStatus] = field(default_factory=list)
    konnektor_product: str = ""
    konnektor_version: str = ""
    worker_host: str = ""
    beat_age: float | None = None
    worker_age: float | None = None

    @property
    def state(self) -> str:
        return worst([c.state for c in self.components])

    def component(self, key: str) -> Component | None:
        return next((c for c in self.components if c.key == key), None)

    def failing(self) -> list[str]:
        return [c.key for c in self.components if c.state == ERROR]

    def warnings(self) -> list[str]:
        return [c.key for c in self.components if c.state in (WARNING, UNKNOWN)]
