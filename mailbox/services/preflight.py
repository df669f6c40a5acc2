"""Pre-flight: what the directory (VZD) says about a draft's recipients, before anything is queued.

The CM checks the same later and drops a recipient it cannot encrypt for (KOM-LE-A_2176-01) — the
sender learns it only by error mail. So the portal asks first and names every problem with the
recipient and the reason in German: a valid encryption certificate, all of a recipient's
certificates carrying its one Telematik-ID (else the CM refuses with 4005), and a mail over 15 MiB
(after base64) only to addresses whose KIM version ends in "+" (``1.5+``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext as _

from directory.clients.vzd import VzdError
from directory.entries import DirectoryEntry
from directory.selectors import directory_entries_for_addresses, unavailable_message
from kimportal.errors import PortalError, Unavailable
from mailbox.models import OutgoingMessage
from mailbox.services.compose import draft_problems, estimated_size, require_sender, too_many_recipients

log = logging.getLogger(__name__)

# 15 MiB after base64: up to this size every KIM version receives (gematik KIM_API.adoc).
LARGE_MAIL_BYTES = 15 * 1024 * 1024


@dataclass(frozen=True)
class PreflightProblem:
    address: str  # "" for a problem of the whole message
    reason: str  # German, names the recipient


class PreflightFailed(PortalError):
    """The draft was not queued; ``problems`` names each recipient and why (the page offers to remove them)."""

    def __init__(self, problems: list[PreflightProblem]) -> None:
        lines = [p.reason for p in problems]
        super().__init__(_("Die Nachricht wurde nicht gesendet:") + " " + " ".join(lines))
        self.problems = problems


class DirectoryUnreachable(Unavailable):
    """The directory could not be asked: nothing is sent half-checked."""


def outgoing_preflight(*, user: Any, draft: OutgoingMessage) -> list[PreflightProblem]:
    """Every problem of the draft (empty: it may be sent). Raises DirectoryUnreachable when the VZD is down."""
    require_sender(user, draft.mailbox_id)
    problems = [PreflightProblem(address, reason) for address, reason in draft_problems(draft)]
    if too_many_recipients(len(draft.recipients)):
        return problems  # said at once, before the directory is asked for each of them
    addresses = [a for a in draft.recipients if not any(p.address == a for p in problems)]
    if not addresses:
        return problems
    try:
        entries = directory_entries_for_addresses(addresses)
    except VzdError as exc:
        log.warning("pre-flight: VZD unavailable: %s", exc)
        raise DirectoryUnreachable(
            _("Die Empfänger konnten nicht im Verzeichnis geprüft werden; die Nachricht wurde nicht gesendet. ")
            + unavailable_message(exc)
        ) from exc
    size = estimated_size(draft, list(draft.attachments.all()))
    for address in addresses:
        problems += recipient_problems(address, entries.get(address.lower()), size=size)
    return problems


def recipient_problems(address: str, entry: DirectoryEntry | None, *, size: int) -> list[PreflightProblem]:
    if entry is None:
        return [
            PreflightProblem(address, _("%(address)s: nicht im Verzeichnis (VZD) gefunden.") % {"address": address})
        ]
    cert = entry.cert
    out: list[PreflightProblem] = []
    if cert.status == "missing":
        out.append(
            PreflightProblem(
                address,
                _(
                    "%(address)s: kein Verschlüsselungszertifikat im Verzeichnis – die Nachricht kann nicht "
                    "verschlüsselt werden."
                )
                % {"address": address},
            )
        )
    elif any(c.problem == "telematik_id_mismatch" for c in cert.certificates):
        out.append(
            PreflightProblem(
                address,
                _(
                    "%(address)s: die Zertifikate des Eintrags tragen nicht alle dieselbe Telematik-ID "
                    "(%(tid)s); das Clientmodul würde nicht an diesen Empfänger senden."
                )
                % {"address": address, "tid": entry.telematik_id or "–"},
            )
        )
    elif not cert.ok:
        reasons = ", ".join(cert.reasons) or cert.label
        out.append(
            PreflightProblem(
                address,
                _("%(address)s: kein gültiges Verschlüsselungszertifikat (%(reasons)s).")
                % {"address": address, "reasons": reasons},
            )
        )
    if size > LARGE_MAIL_BYTES:
        version = entry.kim_version(address) or "1.0"
        if not version.endswith("+"):
            out.append(
                PreflightProblem(
                    address,
                    _(
                        "%(address)s empfängt keine Nachrichten über 15 MiB (KIM-Version %(version)s); diese "
                        "Nachricht ist etwa %(size)s MiB groß."
                    )
                    % {"address": address, "version": version, "size": f"{size / 1024 / 1024:.1f}"},
                )
            )
    return out
