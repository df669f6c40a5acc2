"""SOAP 1.1 plumbing of the simulated Konnektor: safe parsing, namespaces, element builders, GERROR faults.

Requests are parsed with entity resolution, network access and DTDs refused — the same hardening the
portal's client applies to responses. Responses are built element by element with the namespaces and
names of the official gematik schemas, so a client generated from the WSDLs reads them unchanged.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
CONN = "http://ws.gematik.de/conn/ConnectorCommon/v5.0"
CCTX = "http://ws.gematik.de/conn/ConnectorContext/v2.0"
GERROR = "http://ws.gematik.de/tel/error/v2.0"
DSS = "urn:oasis:names:tc:dss:1.0:core:schema"
EVT = "http://ws.gematik.de/conn/EventService/v7.2"
CARD = "http://ws.gematik.de/conn/CardService/v8.1"
CARDCMN = "http://ws.gematik.de/conn/CardServiceCommon/v2.0"
CERT = "http://ws.gematik.de/conn/CertificateService/v6.0"
CERTCMN = "http://ws.gematik.de/conn/CertificateServiceCommon/v2.0"
SIG_V75 = "http://ws.gematik.de/conn/SignatureService/v7.5"
SIG_V74 = "http://ws.gematik.de/conn/SignatureService/v7.4"
VR = "urn:oasis:names:tc:dss-x:1.0:profiles:verificationreport:schema#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
DS = "http://www.w3.org/2000/09/xmldsig#"
XML_NS = "http://www.w3.org/XML/1998/namespace"
SDS = "http://ws.gematik.de/conn/ServiceDirectory/v3.1"
SI = "http://ws.gematik.de/conn/ServiceInformation/v2.0"
PI = "http://ws.gematik.de/int/version/ProductInformation/v1.1"

NSMAP = {
    "soap": SOAP_ENV,
    "CONN": CONN,
    "CCTX": CCTX,
    "GERROR": GERROR,
    "dss": DSS,
}

CADES = "urn:ietf:rfc:5652"
PADES = "http://uri.etsi.org/02778/3"


def q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


VENDOR_TRACE_CODE = 90001

# Code → (Severity, ErrorType, German text) for every code the simulator raises (gemSpec_Kon error tables).
ERRORS: dict[int, tuple[str, str, str]] = {
    4000: ("Error", "Technical", "Syntaxfehler"),
    4001: ("Error", "Technical", "Interner Fehler"),
    4003: ("Error", "Technical", "Karte wird in einer Kartensitzung ohne Nutzer-ID verwendet"),
    4004: ("Error", "Technical", "Ungültige Mandanten-ID"),
    4005: ("Error", "Technical", "Ungültige Clientsystem-ID"),
    4006: ("Error", "Technical", "Ungültige Arbeitsplatz-ID"),
    4008: ("Error", "Technical", "Karte nicht als gesteckt identifiziert"),
    4018: ("Error", "Security", "HBA wird von einem anderen Nutzer verwendet (erhöhter Sicherheitszustand)"),
    4021: ("Error", "Technical", "Verpflichtende Angaben im Aufrufkontext fehlen"),
    4043: ("Warning", "Technical", "Timeout bei der PIN-Eingabe"),
    4049: ("Error", "Technical", "Abbruch durch den Benutzer"),
    4060: ("Error", "Technical", "Ressource belegt"),
    4063: ("Error", "Security", "PIN bereits gesperrt (BLOCKED)"),
    4065: ("Warning", "Technical", "PIN transportgeschützt, Änderung erforderlich"),
    4072: ("Error", "Technical", "Ungültige PIN-Referenz PinRef"),
    4085: ("Error", "Security", "Zugriffsbedingungen nicht erfüllt"),
    4092: ("Error", "Technical", "Remote-PIN-KT benötigt, aber für Arbeitsplatz nicht definiert"),
    4093: ("Error", "Technical", "Karte wird in einer anderen Kartensitzung exklusiv verwendet"),
    4101: ("Error", "Technical", "Kartenhandle ungültig"),
    4110: ("Error", "Technical", "Ungültiges Dokumentformat"),
    4111: ("Error", "Technical", "Ungültiger Signaturtyp oder Signaturvariante"),
    4123: ("Error", "Security", "Fehler bei der Signaturerstellung"),
    4126: ("Error", "Security", "Kartentyp für Signatur nicht zulässig"),
    4149: ("Error", "Technical", "Ungültige Zertifikatsreferenz"),
    4209: ("Error", "Technical", "Kartentyp wird durch Operation nicht unterstützt"),
    4243: ("Error", "Technical", "Jobnummer unbekannt"),
    4252: ("Error", "Technical", "Jobnummer wurde in den letzten 1000 Aufrufen bereits verwendet"),
    4258: ("Error", "Technical", "ECC-Zertifikate nicht auf der Karte vorhanden"),
    4263: ("Error", "Technical", "Komfortsignatur ist nicht freigeschaltet"),
    4265: ("Warning", "Technical", "Ungültiges Kartenhandle beim Deaktivieren der Komfortsignatur"),
    4266: ("Warning", "Technical", "Keine Komfortsignatur-Sitzung für die Karte vorhanden"),
    4267: ("Error", "Technical", "Fehler beim Aktivieren der Komfortsignatur"),
    4268: ("Error", "Technical", "Fehler beim Deaktivieren der Komfortsignatur"),
    4269: ("Error", "Technical", "Fehler beim Ermitteln des Signaturmodus"),
    4270: ("Error", "Security", "UserId wurde bereits für eine Komfortsignatur verwendet"),
    4271: ("Error", "Technical", "Komfortsignatur abgebrochen: Anzahl oder Zeit ausgeschöpft"),
    4272: ("Error", "Security", "UserId ist für die Komfortsignatur ungültig"),
    4274: ("Error", "Technical", "Komfortsignatur nur mit HBA möglich"),
    4275: ("Error", "Security", "PIN ist jetzt gesperrt"),
    4276: ("Error", "Security", "PIN falsch"),
    4278: ("Error", "Technical", "Keine Komfortsignatur-Sitzung verfügbar"),
    4283: ("Error", "Technical", "Dokument zu groß"),
    # Not a gematik code: a vendor trace the simulator puts before the gematik one, as real Konnektors do.
    VENDOR_TRACE_CODE: ("Info", "Technical", "Simulierter Konnektor (tisim)"),
}


class KonnektorFault(Exception):
    """A gematik error: ends the operation with a SOAP fault whose last Trace carries ``code``."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        self.severity, self.error_type, self.text = ERRORS.get(code, ("Error", "Technical", "Fehler"))
        self.detail = detail
        super().__init__(f"{code} {self.text}" + (f": {detail}" if detail else ""))


class BadRequest(Exception):
    """Not a SOAP message at all (or forbidden XML): answered with a plain SOAP Client fault."""


def _parser() -> etree.XMLParser:
    # huge_tree: a 25 MB document is one base64 text node, beyond libxml2's default 10 MB limit.
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=True
    )


def parse_envelope(body: bytes) -> etree._Element:
    """The operation element inside the SOAP Body; refuses DTDs (entity expansion) and non-envelopes."""
    try:
        doc = etree.fromstring(body, _parser()).getroottree()
    except etree.XMLSyntaxError as exc:
        raise BadRequest(f"malformed XML: {exc}") from exc
    if doc.docinfo.doctype or doc.docinfo.internalDTD is not None:
        raise BadRequest("DTDs are not allowed")
    root = doc.getroot()
    if root.tag != q(SOAP_ENV, "Envelope"):
        raise BadRequest("not a SOAP 1.1 envelope")
    body_el = root.find(q(SOAP_ENV, "Body"))
    if body_el is None:
        raise BadRequest("SOAP envelope without Body")
    children = [child for child in body_el if isinstance(child.tag, str)]
    if len(children) != 1:
        raise BadRequest("the SOAP Body must hold exactly one operation element")
    return children[0]


def envelope(payload: etree._Element) -> bytes:
    env = etree.Element(q(SOAP_ENV, "Envelope"), nsmap={"soap": SOAP_ENV})
    etree.SubElement(env, q(SOAP_ENV, "Body")).append(payload)
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def element(parent: etree._Element | None, namespace: str, name: str, text: str | None = None) -> etree._Element:
    if parent is None:
        el = etree.Element(q(namespace, name), nsmap=_nsmap_for(namespace))
    else:
        el = etree.SubElement(parent, q(namespace, name))
    if text is not None:
        el.text = text
    return el


def _nsmap_for(namespace: str) -> dict[str | None, str]:
    # Prefixes as in the gematik examples; lxml declares them once on the operation element.
    prefixes: dict[str | None, str] = {k: v for k, v in NSMAP.items() if k != "soap"}
    prefixes.update({"EVT": EVT, "CARD": CARD, "CARDCMN": CARDCMN, "CERT": CERT, "CERTCMN": CERTCMN})
    if namespace in (SIG_V75, SIG_V74):
        prefixes.update({"vr": VR, "XAdES": XADES, "ds": DS})
    if namespace in (SIG_V75, SIG_V74):
        prefixes["SIG"] = namespace
    return prefixes


def timestamp() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Trace:
    code: int
    detail: str = ""

    @property
    def meta(self) -> tuple[str, str, str]:
        return ERRORS.get(self.code, ("Error", "Technical", "Fehler"))


def gerror(parent: etree._Element, traces: Iterable[Trace]) -> etree._Element:
    error = element(parent, GERROR, "Error")
    element(error, GERROR, "MessageID", secrets.token_hex(8))
    element(error, GERROR, "Timestamp", timestamp())
    for trace in traces:
        severity, error_type, text = trace.meta
        t = element(error, GERROR, "Trace")
        element(t, GERROR, "EventID", secrets.token_hex(4))
        element(t, GERROR, "Instance", "tisim-konnektor")
        element(t, GERROR, "LogReference", "")
        element(t, GERROR, "CompType", "KON")
        element(t, GERROR, "Code", str(trace.code))
        element(t, GERROR, "Severity", severity)
        element(t, GERROR, "ErrorType", error_type)
        element(t, GERROR, "ErrorText", text)
        if trace.detail:
            detail = element(t, GERROR, "Detail", trace.detail)
            detail.set("Encoding", "text/plain")
    return error


def status(parent: etree._Element, warning: Trace | None = None) -> etree._Element:
    st = element(parent, CONN, "Status")
    element(st, CONN, "Result", "OK" if warning is None else "Warning")
    if warning is not None:
        gerror(st, [warning])
    return st


def fault_envelope(fault: KonnektorFault) -> bytes:
    env = etree.Element(q(SOAP_ENV, "Envelope"), nsmap={"soap": SOAP_ENV, "GERROR": GERROR})
    body = etree.SubElement(env, q(SOAP_ENV, "Body"))
    f = etree.SubElement(body, q(SOAP_ENV, "Fault"))
    etree.SubElement(f, "faultcode").text = "soap:Server"
    etree.SubElement(f, "faultstring").text = fault.text
    detail = etree.SubElement(f, "detail")
    # A vendor-specific trace first: clients must read the *last* Trace for the gematik code.
    gerror(detail, [Trace(VENDOR_TRACE_CODE), Trace(fault.code, fault.detail)])
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


def client_fault_envelope(message: str) -> bytes:
    env = etree.Element(q(SOAP_ENV, "Envelope"), nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(env, q(SOAP_ENV, "Body"))
    f = etree.SubElement(body, q(SOAP_ENV, "Fault"))
    etree.SubElement(f, "faultcode").text = "soap:Client"
    etree.SubElement(f, "faultstring").text = message
    return bytes(etree.tostring(env, xml_declaration=True, encoding="UTF-8"))


# --- reading requests ---------------------------------------------------------------------------


def child(el: etree._Element, namespace: str, name: str) -> etree._Element | None:
    return el.find(q(namespace, name))


def text_of(el: etree._Element, namespace: str, name: str) -> str | None:
    found = el.find(q(namespace, name))
    if found is None:
        return None
    return (found.text or "").strip()


def required_text(el: etree._Element, namespace: str, name: str) -> str:
    value = text_of(el, namespace, name)
    if value is None:
        raise KonnektorFault(4000, f"{name} fehlt")
    return value


def parse_bool(value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise KonnektorFault(4000, f"kein boolescher Wert: {value!r}")


@dataclass(frozen=True)
class Context:
    mandant_id: str
    client_system_id: str
    workplace_id: str
    user_id: str | None


def parse_context(operation: etree._Element) -> Context:
    ctx = child(operation, CCTX, "Context")
    if ctx is None:
        raise KonnektorFault(4021, "Context fehlt")
    return Context(
        mandant_id=text_of(ctx, CONN, "MandantId") or "",
        client_system_id=text_of(ctx, CONN, "ClientSystemId") or "",
        workplace_id=text_of(ctx, CONN, "WorkplaceId") or "",
        user_id=text_of(ctx, CONN, "UserId") or None,
    )
