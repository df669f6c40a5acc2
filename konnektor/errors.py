"""KonnektorError and the German texts for the gematik error codes (gemSpec_Kon tables, research/konnektor.md §8.2).

A failed operation comes back as a SOAP 1.1 fault whose detail holds a ``GERROR:Error`` with one or more
``Trace`` entries; vendor-specific codes may come first, the LAST trace carries the code gematik specifies.
Per-document statuses of SignDocument carry the same ``GERROR:Error`` structure.
"""

from __future__ import annotations

from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from lxml import etree

GERROR_NS = "http://ws.gematik.de/tel/error/v2.0"

# The codes the portal can meet while signing with an eHBA, with the Komfortsignatur (4263–4278), verifying
# signatures and authenticating with the SMC-B. Texts are for the physician or the administrator reading them;
# German source strings, translated lazily (error_text gives them in the language active at the time).
ERROR_TEXTS: dict[int, Promise] = {
    4000: gettext_lazy(
        "Der Konnektor hat die Anfrage als fehlerhaft abgelehnt (Syntaxfehler, z. B. zu viele Dokumente in "
        "einem Aufruf)."
    ),
    4001: gettext_lazy("Interner Fehler im Konnektor."),
    4003: gettext_lazy("Für die Signatur mit dem HBA fehlt die Nutzerkennung (UserId) im Aufrufkontext."),
    4004: gettext_lazy("Der Mandant ist im Konnektor nicht bekannt (MandantId prüfen)."),
    4005: gettext_lazy("Das Clientsystem ist im Konnektor nicht bekannt (ClientSystemId prüfen)."),
    4006: gettext_lazy("Der Arbeitsplatz ist im Konnektor nicht bekannt (WorkplaceId prüfen)."),
    4007: gettext_lazy("Die Kartenterminal-ID ist ungültig."),
    4008: gettext_lazy("Die Karte ist nicht (mehr) gesteckt."),
    4010: gettext_lazy("Das Clientsystem ist dem Mandanten im Konnektor nicht zugeordnet."),
    4011: gettext_lazy("Der Arbeitsplatz ist dem Mandanten im Konnektor nicht zugeordnet."),
    4012: gettext_lazy("Das Kartenterminal ist dem Mandanten im Konnektor nicht zugeordnet."),
    4014: gettext_lazy("Der Arbeitsplatz ist dem Clientsystem im Konnektor nicht zugeordnet."),
    4015: gettext_lazy("Das Kartenterminal ist von diesem Arbeitsplatz aus nicht lokal erreichbar."),
    4016: gettext_lazy("Das Kartenterminal ist von diesem Arbeitsplatz aus nicht entfernt erreichbar."),
    4018: gettext_lazy(
        "Der HBA ist bereits für einen anderen Nutzer freigeschaltet. Bitte die Karte ziehen und neu stecken."
    ),
    4020: gettext_lazy("Das Kartenterminal ist von diesem Arbeitsplatz aus nicht erreichbar."),
    4021: gettext_lazy("Im Aufrufkontext fehlen Pflichtangaben (Mandant, Clientsystem oder Arbeitsplatz)."),
    4024: gettext_lazy("Die Formatprüfung des Dokuments ist fehlgeschlagen (XML, PDF/A, TIFF oder Text ungültig)."),
    4043: gettext_lazy("Zeitüberschreitung bei der PIN-Eingabe."),
    4044: gettext_lazy("Fehler beim Zugriff auf das Kartenterminal."),
    4049: gettext_lazy("Abbruch durch den Benutzer am Kartenterminal."),
    4053: gettext_lazy("Die PIN-Eingabe an einem entfernten Kartenterminal ist nicht möglich."),
    4058: gettext_lazy("Der Aufruf ist nicht zulässig (z. B. qualifizierte Signatur nur mit dem HBA)."),
    4060: gettext_lazy("Karte oder Kartenterminal sind gerade belegt. Bitte später erneut versuchen."),
    4063: gettext_lazy("Die PIN ist gesperrt. Sie muss mit der PUK entsperrt werden."),
    4065: gettext_lazy("Die PIN ist noch transportgeschützt. Bitte zuerst eine eigene PIN am Kartenterminal setzen."),
    4072: gettext_lazy("Die PIN-Referenz ist ungültig."),
    4085: gettext_lazy("Die Zugriffsbedingungen der Karte sind nicht erfüllt."),
    4092: gettext_lazy("Für diesen Arbeitsplatz ist kein Kartenterminal für die entfernte PIN-Eingabe eingerichtet."),
    4093: gettext_lazy("Die Karte wird gerade in einer anderen Kartensitzung exklusiv verwendet."),
    4094: gettext_lazy("Zeitüberschreitung beim Zugriff auf die Karte."),
    4101: gettext_lazy(
        "Die Karte ist nicht mehr verfügbar (Kartenhandle ungültig). Bitte die Karte prüfen und erneut versuchen."
    ),
    4110: gettext_lazy("Das Dokumentformat ist für eine qualifizierte Signatur nicht zulässig."),
    4111: gettext_lazy("Signaturtyp oder Signaturvariante sind ungültig."),
    4118: gettext_lazy("Stapelsignaturen sind nur mit einem HBA der Generation 2 möglich."),
    4120: gettext_lazy("Kartenfehler: die erzeugte Signatur ist ungültig."),
    4123: gettext_lazy("Fehler bei der Signaturerstellung."),
    4125: gettext_lazy("Die Signaturfunktion ist im Konnektor nicht freigeschaltet."),
    4126: gettext_lazy("Mit diesem Kartentyp darf nicht signiert werden."),
    4131: gettext_lazy("Für das Kartenhandle ist keine Karte gesteckt. Bitte die Karte prüfen und erneut versuchen."),
    4146: gettext_lazy("Das Kartenhandle existiert nicht (mehr). Bitte die Karte prüfen und erneut versuchen."),
    4149: gettext_lazy("Die Zertifikatsreferenz ist ungültig."),
    4197: gettext_lazy("Die Angabe zur Signaturposition wurde ignoriert."),
    4204: gettext_lazy(
        "Das Clientsystem konnte nicht authentifiziert werden (Zugangsdaten passen nicht zur ClientSystemId)."
    ),
    4205: gettext_lazy("Im PDF-Dokument ist nicht genug Platz für die Signatur."),
    4209: gettext_lazy("Der Kartentyp wird von dieser Operation nicht unterstützt."),
    4243: gettext_lazy("Die Jobnummer ist dem Konnektor unbekannt."),
    4252: gettext_lazy("Die Jobnummer wurde bereits verwendet. Bitte den Vorgang neu starten."),
    4258: gettext_lazy("Auf der Karte sind keine ECC-Zertifikate vorhanden."),
    4261: gettext_lazy("Sperrinformationen konnten nicht in die Signatur eingebettet werden."),
    4263: gettext_lazy(
        "Die Komfortsignatur ist im Konnektor nicht freigeschaltet (sie ist nur mit der Verbindungsart "
        "„Login“ oder „Zertifikat“ möglich)."
    ),
    4265: gettext_lazy("Ungültiges Kartenhandle beim Deaktivieren der Komfortsignatur."),
    4266: gettext_lazy("Für den HBA besteht keine Komfortsignatur-Sitzung."),
    4267: gettext_lazy("Fehler beim Aktivieren der Komfortsignatur."),
    4268: gettext_lazy("Fehler beim Deaktivieren der Komfortsignatur."),
    4269: gettext_lazy("Fehler beim Abfragen des Signaturmodus."),
    4270: gettext_lazy(
        "Die Nutzerkennung (UserId) wurde für die Komfortsignatur bereits verwendet. Bitte die Komfortsignatur "
        "neu aktivieren."
    ),
    4271: gettext_lazy(
        "Die Komfortsignatur ist beendet: die erlaubte Anzahl an Signaturen ist erreicht oder die Zeit ist "
        "abgelaufen (oder der Stapel ist größer als die verbleibende Anzahl). Bitte die Komfortsignatur erneut "
        "aktivieren (PIN-Eingabe am Kartenterminal)."
    ),
    4272: gettext_lazy(
        "Die Nutzerkennung (UserId) ist für die Komfortsignatur ungültig (je Aktivierung ist eine neue UUID nötig)."
    ),
    4273: gettext_lazy("Angaben zu Signatureigenschaften wurden ignoriert."),
    4274: gettext_lazy("Die Komfortsignatur ist nur mit einem eHBA möglich."),
    4275: gettext_lazy(
        "Die PIN wurde falsch eingegeben und ist jetzt gesperrt. Sie muss mit der PUK entsperrt werden."
    ),
    4276: gettext_lazy("Die PIN wurde falsch eingegeben."),
    4278: gettext_lazy(
        "Für den eHBA besteht keine Komfortsignatur mehr (deaktiviert oder Karte gezogen). Bitte die "
        "Komfortsignatur erneut aktivieren."
    ),
    4279: gettext_lazy("S/MIME wird nicht unterstützt."),
    4283: gettext_lazy("Das Dokument ist zu groß (höchstens 25 MB je Dokument und 250 MB je Aufruf)."),
}


def error_text(code: int | None) -> str:
    """The text for a gematik error code (German source, in the active language); a generic one naming the code
    for codes not in the table."""
    if code is None:
        return _("Konnektor nicht erreichbar.")
    text = ERROR_TEXTS.get(code)
    if text is not None:
        return str(text)
    return _("Der Konnektor meldet den Fehler %(code)s.") % {"code": code}


class KonnektorError(Exception):
    """An operation at the Konnektor failed.

    ``code`` is the gematik code of the last trace (None when the Konnektor did not answer with a fault:
    unreachable, timeout, refused credentials, an answer that is not acceptable XML); ``text`` is German, for the
    user; ``fault`` the raw faultstring or the technical cause, for the log; ``severity`` as the Konnektor said
    (``Error``, ``Warning``, ``Fatal`` …). ``kind`` tells callers what to do: ``fault`` (the Konnektor refused),
    ``unreachable`` and ``timeout`` (worth retrying later), ``auth`` and ``tls`` and ``config`` (an administrator
    must fix the connection settings), ``protocol`` (an answer the portal cannot accept).
    """

    def __init__(
        self,
        code: int | None,
        text: str,
        fault: str = "",
        severity: str = "Error",
        *,
        kind: str = "fault",
        error_type: str = "",
    ) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.fault = fault
        self.severity = severity
        self.kind = kind
        self.error_type = error_type

    def __reduce__(self) -> tuple[Any, ...]:
        # Survives pickling (Celery results, multiprocessing): Exception would rebuild it from the text alone.
        return (
            _rebuild,
            (self.code, self.text, self.fault, self.severity, self.kind, self.error_type),
        )

    @property
    def is_warning(self) -> bool:
        return self.severity.lower() in ("warning", "info")

    def __str__(self) -> str:
        prefix = f"[{self.code}] " if self.code is not None else ""
        return f"{prefix}{self.text}"

    def __repr__(self) -> str:
        return f"KonnektorError(code={self.code!r}, kind={self.kind!r}, fault={self.fault!r})"


def _rebuild(code: int | None, text: str, fault: str, severity: str, kind: str, error_type: str) -> KonnektorError:
    return KonnektorError(code, text, fault, severity, kind=kind, error_type=error_type)


class Trace:
    """One ``GERROR:Trace`` entry (only the parts the portal uses)."""

    __slots__ = ("code", "error_text", "error_type", "severity")

    def __init__(self, code: int | None, severity: str, error_type: str, error_text: str) -> None:
        self.code = code
        self.severity = severity
        self.error_type = error_type
        self.error_text = error_text


def traces_from_xml(element: etree._Element | None) -> list[Trace]:
    """The traces of the first ``GERROR:Error`` at or below ``element`` (a fault's ``detail``), in order."""
    if element is None:
        return []
    if element.tag == f"{{{GERROR_NS}}}Error":
        error: etree._Element | None = element
    else:
        error = element.find(f".//{{{GERROR_NS}}}Error")
    if error is None:
        return []
    traces = []
    for trace in error.findall(f"{{{GERROR_NS}}}Trace"):
        traces.append(
            Trace(
                code=_int_or_none(trace.findtext(f"{{{GERROR_NS}}}Code")),
                severity=(trace.findtext(f"{{{GERROR_NS}}}Severity") or "").strip(),
                error_type=(trace.findtext(f"{{{GERROR_NS}}}ErrorType") or "").strip(),
                error_text=(trace.findtext(f"{{{GERROR_NS}}}ErrorText") or "").strip(),
            )
        )
    return traces


def traces_from_object(error: Any) -> list[Trace]:
    """The traces of a ``GERROR:Error`` as zeep parsed it (inside a ``CONN:Status``)."""
    if error is None:
        return []
    traces = []
    for trace in getattr(error, "Trace", None) or []:
        code = getattr(trace, "Code", None)
        traces.append(
            Trace(
                code=int(code) if code is not None else None,
                severity=str(getattr(trace, "Severity", "") or "").strip(),
                error_type=str(getattr(trace, "ErrorType", "") or "").strip(),
                error_text=str(getattr(trace, "ErrorText", "") or "").strip(),
            )
        )
    return traces


def error_from_fault(faultstring: str | None, detail: etree._Element | None) -> KonnektorError:
    """A KonnektorError from a SOAP fault: the last trace's code decides the text."""
    fault = (faultstring or "").strip()
    traces = traces_from_xml(detail)
    if not traces:
        return KonnektorError(
            None,
            _("Der Konnektor hat die Anfrage abgelehnt: %(reason)s.")
            % {"reason": fault or _("ohne Angabe von Gründen")},
            fault,
            kind="fault",
        )
    last = traces[-1]
    text = error_text(last.code)
    if last.code is not None and last.code not in ERROR_TEXTS and last.error_text:
        text = f"{text} ({last.error_text})"
    return KonnektorError(
        last.code,
        text,
        fault or last.error_text,
        last.severity or "Error",
        kind="fault",
        error_type=last.error_type,
    )


def is_error_severity(severity: str) -> bool:
    """Severities that mean 'failed' (spellings vary between Konnektors: Error, ERROR, Fatal …)."""
    return severity.strip().lower() in ("error", "fatal")


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
