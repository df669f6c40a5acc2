"""What the Clientmodul's result headers, error codes and Vermerk say about a received message.

Pure functions over the stored header values (no queries): ``assess_security`` decides the
security state shown for a message, ``error_explanations`` names known X-KIM-Fehlermeldung codes and
``split_cm_note`` separates the Clientmodul's Vermerk from the letter's text. The rule for the
result headers, and why it is this strict, is in docs/security-headers.md.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

DECRYPTION_OK = "00"  # KOM-LE-A_2179-02: the only value for "decrypted"
INTEGRITY_OK = "01"  # draft ILF header table: "no error"
# A result the CM wrote: the gematik IDs are digits, vendor IDs start with "X" (api-kim FAQ
# "Umgang mit den Fehlercodes"). Anything else (empty, RFC 2047 words, text, a header line folded
# into another field) cannot be told apart from a forgery and is "unreadable".
_RESULT_CODE_RE = re.compile(r"^(?:[0-9]{2,4}|[Xx][0-9A-Za-z]{1,8})$")


class SecurityState(enum.StrEnum):
    SECURE = "secure"  # exactly one "00" and one "01", nothing contradicts them
    FAILED = "failed"  # the CM reports a failed decryption or integrity check
    UNCLEAR = "unclear"  # results present but not trustworthy (repeated, partial, unreadable, contradicted)
    NONE = "none"  # no results: not received as an encrypted KIM message


@dataclass(frozen=True)
class SecurityAssessment:
    state: SecurityState
    failed_decryption: tuple[str, ...] = ()
    failed_integrity: tuple[str, ...] = ()
    reasons: tuple[Promise | str, ...] = ()

    @property
    def is_warning(self) -> bool:
        return self.state in (SecurityState.FAILED, SecurityState.UNCLEAR)


def is_out_of_office(dienstkennung: str) -> bool:
    parts = [p.strip().casefold() for p in dienstkennung.split(";")]
    return len(parts) >= 2 and parts[0] == "kim-mail" and parts[1] == "abwesend"


def assess_security(
    decryption_results: Sequence[str],
    integrity_results: Sequence[str],
    *,
    kim_error_codes: Sequence[str] = (),
    dienstkennung: str = "",
) -> SecurityAssessment:
    """The security state of a message from its top-level X-KIM-* values (see docs/security-headers.md).

    A sender can write these headers too, and not every Clientmodul removes them (a CM passes mail
    without X-KOM-LE-Version through unchanged). So "secure" needs exactly one well-formed OK value
    of each; a failure reported anywhere wins over any OK value (a forged "01" cannot hide the CM's
    "08"); everything in between is "unclear", never "secure".
    """
    decryption, integrity = list(decryption_results), list(integrity_results)
    failed_decryption = tuple(v for v in decryption if v != DECRYPTION_OK and _RESULT_CODE_RE.fullmatch(v))
    failed_integrity = tuple(v for v in integrity if v != INTEGRITY_OK and _RESULT_CODE_RE.fullmatch(v))
    if not decryption and not integrity:
        return SecurityAssessment(SecurityState.NONE)

    failed = bool(failed_decryption or failed_integrity)
    reasons: list[Promise | str] = []
    for value in (*decryption, *integrity):
        if not _RESULT_CODE_RE.fullmatch(value):
            reasons.append(_("Ein Prüfergebnis ist nicht lesbar: „%(value)s“.") % {"value": value[:200]})
    # Once the CM reports a failure, that is the message's state; what else is odd only matters
    # while the results still claim success.
    if not failed:
        # Several failure IDs are normal (FAQ: "06" and "08"); several OK values are not.
        if len(decryption) > 1 or len(integrity) > 1:
            reasons.append(
                _(
                    "Ein Prüfergebnis steht mehrfach in der Nachricht. Das Clientmodul schreibt jedes Ergebnis "
                    "einmal; eine weitere Angabe kann vom Absender stammen."
                )
            )
        if not decryption:
            reasons.append(_("Das Ergebnis der Entschlüsselung fehlt."))
        if not integrity:
            reasons.append(_("Das Ergebnis der Signaturprüfung fehlt."))
        if kim_error_codes:
            reasons.append(
                _("Die Nachricht ist eine Fehlermeldung, gibt aber an, entschlüsselt und geprüft worden zu sein.")
            )
        if is_out_of_office(dienstkennung):
            reasons.append(
                _(
                    "Abwesenheitsnotizen werden unsigniert und unverschlüsselt zugestellt; die Angabe "
                    "„entschlüsselt und geprüft“ kann nicht vom Clientmodul stammen."
                )
            )
    if failed:
        state = SecurityState.FAILED
    elif reasons:
        state = SecurityState.UNCLEAR
    else:
        state = SecurityState.SECURE
    return SecurityAssessment(state, failed_decryption, failed_integrity, tuple(reasons))


# X-KIM-Fehlermeldung codes the portal explains (gemSpec_CM_KOMLE Tab_Fehlercodes_KOMLE-Clientmodule
# as the open-source CM openkim words them; 4018 per A_23512/A_28602). Other codes are shown as the
# number only: the draft ILF warns against relying on specific codes, so nothing else depends on them.
# The German msgids (kept as such where a reason is stored: kimportal.texts), and their lazy translations.
ERROR_MSGIDS: dict[str, str] = {
    "4004": gettext_noop("Die Nachricht konnte nicht für alle Empfänger verschlüsselt werden."),
    "4008": gettext_noop("Das Clientmodul unterstützt die KIM-Version der Nachricht nicht."),
    "4009": gettext_noop("Die Nachricht konnte nicht entschlüsselt werden: Der Schlüssel ist nicht verfügbar."),
    "4010": gettext_noop("Die Nachricht konnte nicht entschlüsselt werden: Sie hat ein falsches Format."),
    "4011": gettext_noop("Der Konnektor stand für die Entschlüsselung nicht zur Verfügung."),
    "4018": gettext_noop(
        "Große Nachricht nicht empfangen: Der Empfang großer Nachrichten (KIM 1.5+) ist für dieses Postfach "
        "nicht aktiviert. Nach dem Aktivieren im Account Manager diese Fehlermeldung an das eigene Postfach "
        "weiterleiten, um die Nachricht erneut zu empfangen."
    ),
}
ERROR_TEXTS: dict[str, Promise] = {code: _(msgid) for code, msgid in ERROR_MSGIDS.items()}
LARGE_MESSAGE_REFUSED = "4018"


def error_explanations(codes: Sequence[str]) -> list[tuple[str, Promise]]:
    return [(code, ERROR_TEXTS[code]) for code in codes if code in ERROR_TEXTS]


# The Vermerk a CM appends to the first text part after decrypting (KOM-LE-A_2179-02; gematik's
# sample samples/KAS/2_4_Client-Mail_finalisiert.txt): a line of dashes, then
# "Die Nachricht wurde entschlüsselt." and the signature result, at the end of that part.
_CM_NOTE_RE = re.compile(
    r"\n[ \t]*-{20,}[ \t]*\n"  # the dashed line
    r"((?:Die Nachricht wurde entschl[^\n]*)(?:\n[^\n]*\S[^\n]*)*)"  # the result lines, up to a blank line
    r"\s*(?=\n\n|\Z)"
)


def split_cm_note(text: str) -> tuple[str, str]:
    """(the letter's text, the CM's Vermerk) — the last Vermerk in the text, or ("text", "")."""
    matches = list(_CM_NOTE_RE.finditer(text))
    if not matches:
        return text, ""
    note = matches[-1]
    before, after = text[: note.start()].rstrip(), text[note.end() :].strip("\n")
    letter = f"{before}\n\n{after}\n" if after else f"{before}\n"
    return letter, note.group(1).strip()
