"""What the Clientmodul's POP3 and SMTP answers mean, in German, and how to go on after them.

POP3 (RFC 2449, RFC 3206): ``-ERR [CODE] text``. Only ``[AUTH]`` (or no code at all at login) means
the credentials; ``[IN-USE]`` means another client (often the KIS itself) holds the maildrop, and
must never read as "Passwort falsch". SMTP (RFC 5321, RFC 3463): 4xx is temporary, 5xx permanent;
the enhanced status code (``5.7.8`` …) says more where the CM sends one.
"""

from __future__ import annotations

import re

from kimportal.texts import N_, StoredText, join
from mailbox.clients.pop3 import Pop3Refused, RetrIncomplete, RetrTooLarge
from mailbox.clients.smtp import SmtpRefused
from mailbox.clients.tls import CmError, CmTimeout, CmUnreachable

# Login delays: [IN-USE] clears when the other client logs out (minutes at most); [LOGIN-DELAY]
# means the CM enforces a minimum time between logins; [SYS/PERM] will not go away by itself.
IN_USE_MAX_SECONDS = 5 * 60
LOGIN_DELAY_MIN_SECONDS = 5 * 60
LONG_BACKOFF_SECONDS = 60 * 60


def pop3_refused_message(exc: Pop3Refused, *, where: str) -> StoredText:
    detail = _strip_code(exc.response)
    if exc.code == "IN-USE":
        return N_(
            "Das Postfach ist gerade belegt [IN-USE]: ein anderes Programm (z. B. das KIS oder ein zweiter "
            "Arbeitsplatz) ruft es über %(where)s ab. Das Passwort ist in Ordnung; der Abruf wird in Kürze "
            "wiederholt."
        ) % {"where": where}
    if exc.code == "LOGIN-DELAY":
        return N_(
            "%(where)s lässt eine neue Anmeldung noch nicht zu [LOGIN-DELAY]: zwischen zwei Abrufen muss mehr "
            "Zeit vergehen. Der nächste Versuch folgt in einigen Minuten; gegebenenfalls das Abrufintervall "
            "erhöhen."
        ) % {"where": where}
    if exc.code == "SYS/TEMP":
        return N_(
            "Vorübergehender Fehler im Clientmodul %(where)s [SYS/TEMP]: %(detail)s. Der Abruf wird automatisch "
            "wiederholt."
        ) % {"where": where, "detail": detail}
    if exc.code == "SYS/PERM":
        return N_(
            "Dauerhafter Fehler im Clientmodul %(where)s [SYS/PERM]: %(detail)s. Bitte die Betreuung des "
            "Clientmoduls verständigen; bis dahin wird nur selten neu versucht."
        ) % {"where": where, "detail": detail}
    if exc.code == "AUTH":
        return N_("Anmeldung abgelehnt – Benutzername oder Passwort falsch (%(detail)s).") % {"detail": exc.response}
    return N_("%(where)s hat abgelehnt: %(detail)s") % {"where": where, "detail": exc.response}


def pop3_login_retry(code: str, *, poll_seconds: int, failures: int) -> tuple[float, bool] | None:
    """(delay in seconds, needs an administrator) for a refused login, or None for the usual backoff."""
    step = min(failures - 1, 10)
    if code == "IN-USE":
        return min(poll_seconds * 2**step, IN_USE_MAX_SECONDS), False
    if code == "LOGIN-DELAY":
        return min(max(LOGIN_DELAY_MIN_SECONDS, poll_seconds * 2**step), LONG_BACKOFF_SECONDS), False
    if code == "SYS/PERM":
        return LONG_BACKOFF_SECONDS, True
    return None


def retr_error_message(exc: BaseException, *, timeout: float) -> StoredText:
    """Why one message could not be fetched (the text owners see next to it)."""
    if isinstance(exc, Pop3Refused):
        if exc.code == "SYS/TEMP":
            return N_("Vorübergehender Fehler im Clientmodul [SYS/TEMP]: %(detail)s") % {
                "detail": _strip_code(exc.response)
            }
        if exc.code == "SYS/PERM":
            return N_("Dauerhafter Fehler im Clientmodul [SYS/PERM]: %(detail)s") % {
                "detail": _strip_code(exc.response)
            }
        return N_("Das Clientmodul hat die Nachricht nicht herausgegeben (%(detail)s).") % {"detail": exc.response}
    if isinstance(exc, CmTimeout):
        return N_("Zeitüberschreitung: das Clientmodul hat %(seconds)s Sekunden lang keine Daten gesendet.") % {
            "seconds": f"{timeout:g}"
        }
    if isinstance(exc, RetrIncomplete):
        return N_(
            "Nur %(arrived)s von %(announced)s Bytes angekommen – die Nachricht wurde unvollständig übertragen."
        ) % {"arrived": exc.arrived, "announced": exc.announced}
    if isinstance(exc, RetrTooLarge):
        return N_("Die Antwort des Clientmoduls ist größer als 1 GiB und keine gültige KIM-Nachricht.")
    if isinstance(exc, CmUnreachable):
        return N_("Die Verbindung ist während der Übertragung abgebrochen (%(detail)s).") % {"detail": exc}
    if isinstance(exc, CmError):
        return N_("Fehler bei der Übertragung: %(detail)s") % {"detail": exc}
    return N_("Die Nachricht konnte nicht verarbeitet werden (%(kind)s). Details im Server-Log.") % {
        "kind": exc.__class__.__name__
    }


def smtp_refused_message(exc: SmtpRefused, *, where: str) -> StoredText:
    """A sentence (translated when shown) for an SMTP reply of the CM (temporary or permanent, by its codes)."""
    reply = str(exc)
    enhanced = exc.enhanced
    if exc.code == 452 or enhanced.startswith("4.2.") or enhanced == "4.3.1":
        text = N_("%(where)s hat vorübergehend keinen Platz für die Nachricht (%(reply)s).")
    elif exc.code == 421 or enhanced.startswith("4.3."):
        text = N_("%(where)s ist vorübergehend nicht bereit (%(reply)s).")
    elif exc.code == 454 or enhanced == "4.7.0":
        text = N_("%(where)s kann die Anmeldung vorübergehend nicht prüfen (%(reply)s).")
    elif exc.code == 530 or enhanced == "5.7.0":
        text = N_("%(where)s verlangt eine Anmeldung, die nicht angenommen wurde (%(reply)s).")
    elif exc.code == 552 or enhanced in ("5.3.4", "5.2.3"):
        text = N_("Die Nachricht ist für %(where)s zu groß (%(reply)s).")
    elif enhanced.startswith("5.1."):
        text = N_("%(where)s kennt eine Empfängeradresse nicht (%(reply)s).")
    elif exc.temporary:
        text = N_("%(where)s hat vorübergehend abgelehnt (%(reply)s).")
    else:
        text = N_("%(where)s hat dauerhaft abgelehnt (%(reply)s).")
    suffix = N_("Es wird später erneut versucht.") if exc.temporary else N_("Ein erneuter Versuch ändert daran nichts.")
    return join(text % {"where": where, "reply": reply}, suffix)


_CODE_PREFIX = re.compile(r"^-ERR\s*(\[[^\]]*\])?\s*")


def _strip_code(response: str) -> str:
    return _CODE_PREFIX.sub("", response).strip() or response
