"""connector.sds: which service versions the Konnektor offers, and where.

Per service the portal takes the highest announced version whose major.minor it implements, and that version's
own endpoint (Konnektors serve versions under different URLs, e.g. ``/service/v75/signservice``). The endpoint is
``EndpointTLS`` when the portal talks HTTPS, else ``Endpoint`` (optional in the schema; EndpointTLS when absent).
A connector.sds the portal cannot accept becomes a KonnektorError whose text goes through gettext (in the language
active when it is raised).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.utils.translation import gettext as _
from lxml import etree

from .errors import KonnektorError
from .types import ServiceDirectory

SDS_NS = "http://ws.gematik.de/conn/ServiceDirectory/v3.1"
SI_NS = "http://ws.gematik.de/conn/ServiceInformation/v2.0"
PI_NS = "http://ws.gematik.de/int/version/ProductInformation/v1.1"

# Service name → the major.minor versions the portal's WSDL subset implements.
SUPPORTED: dict[str, tuple[tuple[int, int], ...]] = {
    "EventService": ((7, 2),),
    "CardService": ((8, 1),),
    "CertificateService": ((6, 0),),
    "SignatureService": ((7, 5), (7, 4)),
    "AuthSignatureService": ((7, 4),),
}

_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")
_NS_VERSION = re.compile(r"/v(\d+)\.(\d+)$")


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    return int(match[1]), int(match[2]), int(match[3] or 0)


def safe_parse(content: bytes) -> etree._Element:
    """Parse XML from the network: no entities resolved, no DTD, nothing fetched."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True, huge_tree=False
    )
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise KonnektorError(
            None,
            _("Die Dienstbeschreibung des Konnektors (connector.sds) ist kein gültiges XML."),
            str(exc),
            kind="protocol",
        ) from None
    if root.getroottree().docinfo.doctype:
        raise KonnektorError(
            None,
            _("Die Dienstbeschreibung des Konnektors (connector.sds) enthält eine DTD und wird abgelehnt."),
            "DTD in connector.sds",
            kind="protocol",
        )
    return root


def parse_sds(content: bytes, *, tls: bool) -> ServiceDirectory:
    root = safe_parse(content)
    if root.tag != f"{{{SDS_NS}}}ConnectorServices":
        raise KonnektorError(
            None,
            _("Die Dienstbeschreibung des Konnektors (connector.sds) hat ein unbekanntes Format."),
            f"root element {root.tag}",
            kind="protocol",
        )
    services: dict[str, tuple[str, str]] = {}
    offered: dict[str, list[str]] = {}
    for service in root.iter(f"{{{SI_NS}}}Service"):
        name = service.get("Name", "")
        best: tuple[tuple[int, int, int], str, str] | None = None
        for version in service.iter(f"{{{SI_NS}}}Version"):
            number = _version_of(version)
            if number is None:
                continue
            offered.setdefault(name, []).append(".".join(map(str, number)))
            if (number[0], number[1]) not in SUPPORTED.get(name, ()):
                continue
            endpoint = _endpoint(version, tls=tls)
            if not endpoint:
                continue
            if best is None or number > best[0]:
                best = (number, ".".join(map(str, number)), endpoint)
        if best is not None:
            services[name] = (best[1], best[2])
    return ServiceDirectory(
        product_name=_text(root, "ProductMiscellaneous", "ProductName"),
        product_version=_text(root, "ProductIdentification", "ProductVersion", "Local", "FWVersion"),
        services=services,
        vendor_name=_text(root, "ProductMiscellaneous", "ProductVendorName"),
        product_type_version=_text(root, "ProductTypeInformation", "ProductTypeVersion"),
        tls_mandatory=_bool(root.findtext(f"{{{SDS_NS}}}TLSMandatory")),
        client_auth_mandatory=_bool(root.findtext(f"{{{SDS_NS}}}ClientAutMandatory")),
        offered=offered,
    )


def _version_of(version: etree._Element) -> tuple[int, int, int] | None:
    # One real connector.sds (secunet) has a Version without @Version: the target namespace still names
    # major.minor.
    number = parse_version(version.get("Version", ""))
    if number is not None:
        return number
    match = _NS_VERSION.search(version.get("TargetNamespace", ""))
    if match is None:
        return None
    return int(match[1]), int(match[2]), 0


def _endpoint(version: etree._Element, *, tls: bool) -> str:
    secure = version.find(f"{{{SI_NS}}}EndpointTLS")
    plain = version.find(f"{{{SI_NS}}}Endpoint")
    order = (secure, plain) if tls else (plain, secure)
    # With TLS, only https endpoints: credentials and documents never go out in the clear because of what
    # connector.sds says. Other schemes (file:, ftp:) are never used.
    schemes = ("https",) if tls else ("http", "https")
    for element in order:
        location = str(element.get("Location", "") if element is not None else "").strip()
        if location and urlsplit(location).scheme.lower() in schemes:
            return location
    return ""


def _text(root: etree._Element, *path: str) -> str:
    info = root.find(f"{{{PI_NS}}}ProductInformation")
    if info is None:
        return ""
    xpath = "/".join(f"{{{PI_NS}}}{step}" for step in path)
    return str(info.findtext(xpath) or "").strip()


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("true", "1")
