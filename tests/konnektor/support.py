"""Helpers for the Konnektor client tests.

- ``OfficialSchemas``: lxml validators built from the OFFICIAL gematik files in the shared spec folder (their
  xmldsig schema has an internal DTD: the parser may read it, but never the network).
- ``EgressCapture``: a zeep plugin keeping every envelope the client sends, to validate them all.
- ``CraftedKonnektor``: a small HTTP server over a real socket that answers with whatever a test prepared — for
  what the simulator never sends (an XML bomb, an external entity, HTTP errors, a fault with vendor traces, a
  7.4.0-only connector.sds, a slow answer).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lxml import etree
from zeep.plugins import Plugin

from tests.conftest import SHARED_DIR

SPEC = SHARED_DIR / "spec" / "konnektor"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
GERROR = "http://ws.gematik.de/tel/error/v2.0"

NS = {
    "event": "http://ws.gematik.de/conn/EventService/v7.2",
    "card": "http://ws.gematik.de/conn/CardService/v8.1",
    "cert": "http://ws.gematik.de/conn/CertificateService/v6.0",
    "sig75": "http://ws.gematik.de/conn/SignatureService/v7.5",
    "sig74": "http://ws.gematik.de/conn/SignatureService/v7.4",
}

# Body namespace → the official schema that defines it (the newest file of that namespace).
OFFICIAL = {
    NS["event"]: "conn/EventService.xsd",
    NS["card"]: "conn/CardService_v8_1_3.xsd",
    NS["cert"]: "conn/CertificateService_v6_0_2.xsd",
    NS["sig75"]: "conn/SignatureService_V7_5_6.xsd",
    NS["sig74"]: "conn/SignatureService_V7_4_4.xsd",
}
# SignatureService 7.4.0 (no Crypt) has its own file in the same namespace.
OFFICIAL_740 = "conn/SignatureService.xsd"


class OfficialSchemas:
    def __init__(self) -> None:
        self._schemas: dict[str, etree.XMLSchema] = {}

    def schema(self, relative: str) -> etree.XMLSchema:
        if relative not in self._schemas:
            parser = etree.XMLParser(load_dtd=True, no_network=True, resolve_entities=True)
            self._schemas[relative] = etree.XMLSchema(etree.parse(str(SPEC / relative), parser))
        return self._schemas[relative]

    def validate_envelope(self, envelope: bytes | etree._Element, *, signature_740: bool = False) -> str:
        """Validate a SOAP 1.1 request's body element against the official schema; returns its local name."""
        # The client's own requests: large documents make text nodes beyond libxml2's default limit.
        parser = etree.XMLParser(huge_tree=True, resolve_entities=False, no_network=True)
        root = envelope if isinstance(envelope, etree._Element) else etree.fromstring(envelope, parser)
        assert root.tag == f"{{{SOAP_ENV}}}Envelope", root.tag
        body = root.find(f"{{{SOAP_ENV}}}Body")
        assert body is not None and len(body) == 1
        payload = body[0]
        namespace = etree.QName(payload).namespace
        assert namespace is not None
        relative = OFFICIAL_740 if signature_740 and namespace == NS["sig74"] else OFFICIAL[namespace]
        schema = self.schema(relative)
        # Validate a standalone copy: the payload as the Konnektor's schema sees it.
        document = etree.fromstring(etree.tostring(payload), parser)
        if not schema.validate(document):
            raise AssertionError(f"{etree.QName(payload).localname} invalid against {relative}: {schema.error_log}")
        return etree.QName(payload).localname


@dataclass
class Sent:
    operation: str
    soap_action: str
    envelope: bytes


class EgressCapture(Plugin):  # type: ignore[misc]
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def egress(self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any) -> Any:
        self.sent.append(
            Sent(operation.name, str(http_headers.get("SOAPAction", "")).strip('"'), etree.tostring(envelope))
        )
        return envelope, http_headers

    def operations(self) -> list[str]:
        return [sent.operation for sent in self.sent]


# ---- connector.sds and SOAP answers built by hand ----------------------------------------------------------


def sds(base_url: str, services: dict[str, list[tuple[str | None, str, str]]], *, tls: bool = False) -> bytes:
    """A connector.sds; ``services``: name → [(Version or None, TargetNamespace, path)]."""
    rows = []
    for name, versions in services.items():
        parts = []
        for version, namespace, path in versions:
            version_attr = f' Version="{version}"' if version else ""
            plain = "" if tls else f'<si:Endpoint Location="{base_url}{path}"/>'
            secure_url = base_url.replace("http://", "https://") + path
            parts.append(
                f'<si:Version TargetNamespace="{namespace}"{version_attr}><si:Abstract>{name}</si:Abstract>'
                f'{plain}<si:EndpointTLS Location="{secure_url}"/></si:Version>'
            )
        rows.append(
            f'<si:Service Name="{name}"><si:Abstract>{name}</si:Abstract><si:Versions>{"".join(parts)}'
            "</si:Versions></si:Service>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<sds:ConnectorServices xmlns="http://ws.gematik.de/int/version/ProductInformation/v1.1"'
        ' xmlns:sds="http://ws.gematik.de/conn/ServiceDirectory/v3.1"'
        ' xmlns:si="http://ws.gematik.de/conn/ServiceInformation/v2.0">'
        "<ProductInformation><InformationDate>2024-01-01T00:00:00Z</InformationDate>"
        "<ProductTypeInformation><ProductType>Konnektor</ProductType><ProductTypeVersion>4.80.3</ProductTypeVersion>"
        "</ProductTypeInformation><ProductIdentification><ProductVendorID>TEST</ProductVendorID>"
        "<ProductCode>K1</ProductCode><ProductVersion><Local><HWVersion>1.0.0</HWVersion>"
        "<FWVersion>5.1.2</FWVersion></Local></ProductVersion></ProductIdentification>"
        "<ProductMiscellaneous><ProductVendorName>Test GmbH</ProductVendorName>"
        "<ProductName>Test-Konnektor</ProductName></ProductMiscellaneous></ProductInformation>"
        f"<sds:TLSMandatory>{'true' if tls else 'false'}</sds:TLSMandatory>"
        "<sds:ClientAutMandatory>false</sds:ClientAutMandatory>"
        f"<si:ServiceInformation>{''.join(rows)}</si:ServiceInformation>"
        "</sds:ConnectorServices>"
    ).encode()


def standard_sds(base_url: str, *, signature: tuple[tuple[str | None, str, str], ...] | None = None) -> bytes:
    sig = signature or (
        ("7.4.0", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4", "/sig74"),
        ("7.5.5", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.5", "/sig75"),
        ("7.4.2", "http://ws.gematik.de/conn/SignatureService/WSDL/v7.4", "/sig74"),
    )
    return sds(
        base_url,
        {
            "EventService": [("7.2.0", "http://ws.gematik.de/conn/EventService/WSDL/v7.2", "/event")],
            "CardService": [("8.1.2", "http://ws.gematik.de/conn/CardService/WSDL/v8.1", "/card")],
            "CertificateService": [("6.0.1", "http://ws.gematik.de/conn/CertificateService/WSDL/v6.0", "/cert")],
            "SignatureService": list(sig),
        },
    )


def envelope(body: str, *, prolog: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{prolog}'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    ).encode()


def job_number_response(job: str = "ABC-123", *, version: str = "7.5") -> str:
    return (
        f'<SIG:GetJobNumberResponse xmlns:SIG="http://ws.gematik.de/conn/SignatureService/v{version}">'
        f"<SIG:JobNumber>{job}</SIG:JobNumber></SIG:GetJobNumberResponse>"
    )


def trace(code: int, *, severity: str = "Error", text: str = "", comp: str = "Konnektor") -> str:
    return (
        "<GERROR:Trace><GERROR:EventID>E1</GERROR:EventID><GERROR:Instance>I1</GERROR:Instance>"
        f"<GERROR:LogReference>L1</GERROR:LogReference><GERROR:CompType>{comp}</GERROR:CompType>"
        f"<GERROR:Code>{code}</GERROR:Code><GERROR:Severity>{severity}</GERROR:Severity>"
        f"<GERROR:ErrorType>Technical</GERROR:ErrorType><GERROR:ErrorText>{text}</GERROR:ErrorText></GERROR:Trace>"
    )


def fault(faultstring: str, *traces: str) -> bytes:
    detail = (
        f'<detail><GERROR:Error xmlns:GERROR="{GERROR}"><GERROR:MessageID>M1</GERROR:MessageID>'
        f"<GERROR:Timestamp>2024-01-01T10:00:00Z</GERROR:Timestamp>{''.join(traces)}</GERROR:Error></detail>"
        if traces
        else ""
    )
    return envelope(
        f"<soap:Fault><faultcode>soap:Server</faultcode><faultstring>{faultstring}</faultstring>{detail}</soap:Fault>"
    )


# ---- the crafted Konnektor ---------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    soap_action: str
    body: bytes
    authorization: str | None


@dataclass
class Answer:
    status: int
    body: bytes
    delay: float = 0.0  # seconds the server waits before answering (a Konnektor waiting for the PIN)
    content_type: str = "text/xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class CraftedKonnektor:
    server: ThreadingHTTPServer
    base_url: str
    sds: bytes = b""
    answer: Callable[[Received], Answer] = field(default=lambda received: Answer(500, b""))
    received: list[Received] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def answer_always(self, status: int, body: bytes, *, delay: float = 0.0) -> None:
        self.answer = lambda received: Answer(status, body, delay)


def start_crafted() -> CraftedKonnektor:
    crafted: CraftedKonnektor

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(
            self, status: int, body: bytes, content_type: str = "text/xml; charset=utf-8", **headers: str
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            crafted.received.append(Received(self.path, "GET", b"", self.headers.get("Authorization")))
            if self.path == "/connector.sds":
                self._send(200, crafted.sds, "application/xml")
            else:
                self._send(404, b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            received = Received(
                self.path,
                self.headers.get("SOAPAction", "").strip('"'),
                self.rfile.read(length),
                self.headers.get("Authorization"),
            )
            crafted.received.append(received)
            answer = crafted.answer(received)
            if answer.delay:
                # Answers late (or never, until the test ends): the released event ends the wait early.
                crafted.released.wait(answer.delay)
            try:
                self._send(answer.status, answer.body, answer.content_type, **answer.headers)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    crafted = CraftedKonnektor(server=server, base_url=f"http://{host}:{port}")
    crafted.sds = standard_sds(crafted.base_url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return crafted
