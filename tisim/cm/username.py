"""KIM usernames: the ``#``-separated SMTP-AUTH / POP3 USER strings a Clientmodul expects.

SMTP: ``address#host:port#MandantId#ClientSystemId#WorkplaceId[#KonnektorId ...]``
POP3: ``address#host:port#MandantId#ClientSystemId#WorkplaceId[#UserId[#KonnektorId]]``

``host:port`` may be ``*`` (the CM finds the Fachdienst by DNS-SD, accepted since KIM 1.5.4).
The call context (MandantId, ClientSystemId, WorkplaceId) is mandatory. A skipped optional position
must be written as ``*`` (A_21519-02), so an *empty* position is malformed, not "absent".
Error texts end up in SMTP replies, hence ASCII and English.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Protocol = Literal["smtp", "pop3"]

PLACEHOLDER = "*"
MANDATORY = ("MandantId", "ClientSystemId", "WorkplaceId")
# Names of the positions after WorkplaceId. The SMTP position of UserId is not pinned down by
# gematik (KonnektorId follows WorkplaceId in their example), so SMTP allows two generic extras.
OPTIONAL: dict[str, tuple[str, ...]] = {
    "smtp": ("KonnektorId", "optional position 7"),
    "pop3": ("UserId", "KonnektorId"),
}

_LOCAL = r"[A-Za-z0-9!$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})+"
ADDRESS_RE = re.compile(rf"^{_LOCAL}@{_DOMAIN}$")
# Underscores occur in real Fachdienst host names (gematik's own example: hrst_domain.kim.telematik).
HOST_PORT_RE = re.compile(rf"^(?P<host>{_LABEL}(?:\.{_LABEL})*):(?P<port>[0-9]{{1,5}})$")
_CONTEXT_ID_RE = re.compile(r"^[^\s#]+$")


class UsernameError(ValueError):
    """The username is malformed; the message says what is wrong."""


@dataclass(frozen=True)
class KimUsername:
    protocol: Protocol
    address: str  # lower-cased
    fachdienst: str | None = None  # "host:port", None for "*" (DNS-SD) or a plain username
    mandant_id: str | None = None
    client_system_id: str | None = None
    workplace_id: str | None = None
    # Positions after WorkplaceId; None where the client wrote "*".
    optional: tuple[str | None, ...] = ()
    plain: bool = False  # a bare address without call context (only if the config allows it)

    @property
    def user_id(self) -> str | None:
        return self.optional[0] if self.protocol == "pop3" and self.optional else None

    @property
    def konnektor_id(self) -> str | None:
        index = 1 if self.protocol == "pop3" else 0
        return self.optional[index] if len(self.optional) > index else None


def is_valid_address(value: str) -> bool:
    return len(value) <= 254 and ADDRESS_RE.match(value) is not None


def parse_username(raw: str, protocol: Protocol, *, allow_plain: bool = False) -> KimUsername:
    """Parse and validate; raise :class:`UsernameError` naming the first problem found."""
    if raw != raw.strip() or not raw:
        raise UsernameError("username is empty or has surrounding whitespace")
    if "#" not in raw:
        if not allow_plain:
            raise UsernameError(
                "username has no KIM call context; expected address#host:port#MandantId#ClientSystemId#WorkplaceId"
            )
        _check_address(raw)
        return KimUsername(protocol=protocol, address=raw.lower(), plain=True)

    parts = raw.split("#")
    optional_names = OPTIONAL[protocol]
    max_parts = 5 + len(optional_names)
    if len(parts) < 5:
        raise UsernameError(
            f"username has {len(parts)} '#'-separated parts, needs at least 5: "
            "address#host:port#MandantId#ClientSystemId#WorkplaceId"
        )
    if len(parts) > max_parts:
        raise UsernameError(
            f"username has {len(parts)} '#'-separated parts, a {protocol.upper()} username allows {max_parts}"
        )

    address, fachdienst = parts[0], parts[1]
    _check_address(address)
    if fachdienst == "":
        raise UsernameError("position 2 (Fachdienst host:port) is empty; use '*' for DNS-SD")
    if fachdienst != PLACEHOLDER:
        match = HOST_PORT_RE.match(fachdienst)
        if match is None or not 1 <= int(match["port"]) <= 65535:
            raise UsernameError(f"position 2 must be host:port or '*', got {_show(fachdienst)}")

    context = parts[2:5]
    for position, (name, value) in enumerate(zip(MANDATORY, context, strict=True), start=3):
        if value in ("", PLACEHOLDER):
            raise UsernameError(f"position {position} ({name}) is mandatory and must not be empty or '*'")
        if not _CONTEXT_ID_RE.match(value):
            raise UsernameError(f"position {position} ({name}) contains whitespace")

    optional: list[str | None] = []
    for position, (name, value) in enumerate(zip(optional_names, parts[5:], strict=False), start=6):
        if value == "":
            raise UsernameError(f"position {position} ({name}) is empty; write '*' or leave the position out")
        if value != PLACEHOLDER and not _CONTEXT_ID_RE.match(value):
            raise UsernameError(f"position {position} ({name}) contains whitespace")
        optional.append(None if value == PLACEHOLDER else value)

    return KimUsername(
        protocol=protocol,
        address=address.lower(),
        fachdienst=None if fachdienst == PLACEHOLDER else fachdienst,
        mandant_id=context[0],
        client_system_id=context[1],
        workplace_id=context[2],
        optional=tuple(optional),
    )


def build_username(
    address: str,
    *,
    fachdienst: str | None = None,
    mandant_id: str = "1",
    client_system_id: str = "tisim",
    workplace_id: str = "tisim",
) -> str:
    """The username the simulator's own sender uses (SMTP and POP3 agree up to WorkplaceId)."""
    host = fachdienst or f"{address.rpartition('@')[2]}:465"
    return "#".join([address, host, mandant_id, client_system_id, workplace_id])


def _check_address(value: str) -> None:
    if not is_valid_address(value):
        raise UsernameError(f"position 1 is not a valid mail address: {_show(value)}")


def _show(value: str) -> str:
    # Replies are ASCII; keep non-ASCII input visible but harmless.
    return repr(value[:80]).encode("ascii", "backslashreplace").decode("ascii")
