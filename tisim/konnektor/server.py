"""The simulated Konnektor's HTTP(S) server: connector.sds, the SOAP endpoints and the /tisim control calls.

A thread per connection (standard library ThreadingHTTPServer): SignDocument blocks while the terminal
waits for the PIN, and StopSignature or the terminal's control calls must still be served meanwhile.

Connection modes as a Konnektor offers them (gemSpec_Kon TAB_KON_852): "plain" (HTTP), "basic" (HTTPS and
HTTP Basic auth) and "cert" (HTTPS and a TLS client certificate from the simulator's client CA). The TLS
handshake asks for a client certificate without demanding it, so the loopback-only /tisim/ control calls
(and connector.sds, open like ANCL_DVD_OPEN) work without one; the SOAP endpoints refuse a client without.
"""

from __future__ import annotations

import base64
import hmac
import html
import json
import logging
import ssl
import threading
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from lxml import etree

from tisim.httpserver import TlsRequestHandler, TrackingHTTPServer
from tisim.konnektor.handlers import HANDLERS
from tisim.konnektor.soap import (
    BadRequest,
    KonnektorFault,
    client_fault_envelope,
    envelope,
    fault_envelope,
    parse_envelope,
)
from tisim.tls import server_context

if TYPE_CHECKING:
    from tisim.konnektor.cards import SimCard
    from tisim.konnektor.simulator import KonnektorSimulator

log = logging.getLogger("tisim.konnektor")

_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
_HANDSHAKE_TIMEOUT = 30.0
# Idle keep-alive connections are closed after this; a waiting SignDocument is not affected (no socket I/O).
_IDLE_TIMEOUT = 120.0
_MAX_CONTROL_WAIT = 300.0


class KonnektorHTTPServer(TrackingHTTPServer):
    """close_all() is "Konnektor down" (tisim.httpserver)."""

    def __init__(self, sim: KonnektorSimulator, address: tuple[str, int], tls: ssl.SSLContext | None) -> None:
        self.sim = sim
        super().__init__(address, KonnektorRequestHandler, tls)


def serve(sim: KonnektorSimulator, host: str, port: int) -> tuple[KonnektorHTTPServer, threading.Thread]:
    tls: ssl.SSLContext | None = None
    if sim.mode != "plain":
        client_ca = sim.client_ca if sim.mode == "cert" else None
        tls = server_context(sim.pki.server_certificate(), client_ca=client_ca)
        if client_ca is not None:
            tls.verify_mode = ssl.CERT_OPTIONAL
    server = KonnektorHTTPServer(sim, (host, port), tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                              name=f"tisim-konnektor-{server.server_address[1]}")  # fmt: skip
    thread.start()
    return server, thread


class KonnektorRequestHandler(TlsRequestHandler):
    handshake_timeout = _HANDSHAKE_TIMEOUT
    logger_name = "tisim.konnektor"
    server_version = "tisim-Konnektor/1.0"
    timeout = _IDLE_TIMEOUT
    server: KonnektorHTTPServer

    @property
    def sim(self) -> KonnektorSimulator:
        return self.server.sim

    # --- routing ----------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/connector.sds":
            self._send(HTTPStatus.OK, self.sim.service_directory(), "application/xml; charset=utf-8")
        elif path.startswith("/tisim/"):
            self._control("GET")
        else:
            self._send_text(HTTPStatus.NOT_FOUND, "not found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/tisim/"):
            self._control("POST")
            return
        from tisim.konnektor.simulator import ENDPOINT_BY_PATH

        endpoint = ENDPOINT_BY_PATH.get(path)
        if endpoint is None:
            self._discard_body()
            self._send_text(HTTPStatus.NOT_FOUND, "no such service")
            return
        if not self._authorized():
            return
        length = self._content_length()
        if length is None:
            return
        # Base64 makes the documents a third bigger; anything beyond that cannot be a valid call.
        if length > self.sim.max_call_bytes * 4 // 3 + 2**20:
            self.close_connection = True
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, fault_envelope(KonnektorFault(4283, "Aufruf zu groß")))
            return
        body = self.rfile.read(length)
        try:
            operation = parse_envelope(body)
        except BadRequest as exc:
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, client_fault_envelope(str(exc)))
            return
        handler = HANDLERS.get(operation.tag)
        # AuthSignatureService and SignatureService 7.4 share a namespace: each endpoint answers its own operations.
        authentication = etree.QName(operation).localname == "ExternalAuthenticate"
        if (
            handler is None
            or not operation.tag.startswith("{" + endpoint.namespace + "}")
            or authentication != (endpoint.service == "AuthSignatureService")
        ):
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, client_fault_envelope(f"unknown operation {operation.tag}"))
            return
        try:
            response = envelope(handler(self.sim, operation))
        except KonnektorFault as fault:
            log.info("%s: fault %s", operation.tag, fault)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, fault_envelope(fault))
            return
        except Exception:
            log.exception("%s failed", operation.tag)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, fault_envelope(KonnektorFault(4001)))
            return
        self._send(HTTPStatus.OK, response)

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path.startswith("/tisim/"):
            self._control("DELETE")
        else:
            self._send_text(HTTPStatus.NOT_FOUND, "not found")

    # --- authentication -----------------------------------------------------------------------------------

    def _authorized(self) -> bool:
        if self.sim.mode == "basic":
            header = self.headers.get("Authorization", "")
            expected = "Basic " + base64.b64encode(f"{self.sim.basic_user}:{self.sim.basic_password}".encode()).decode(
                "ascii"
            )
            if not hmac.compare_digest(header.encode(), expected.encode()):
                self._discard_body()
                self.send_response(HTTPStatus.UNAUTHORIZED)
                self.send_header("WWW-Authenticate", 'Basic realm="Konnektor"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
        elif self.sim.mode == "cert":
            assert isinstance(self.request, ssl.SSLSocket)
            if not self.request.getpeercert():
                self._discard_body()
                self._send_text(HTTPStatus.FORBIDDEN, "client certificate required")
                return False
        return True

    # --- /tisim control calls (loopback only) ---------------------------------------------------------------

    def _control(self, method: str) -> None:
        body = self._read_body() if method != "GET" else b""
        if body is None:
            return
        if self.client_address[0] not in _LOOPBACK:
            self._send_json(HTTPStatus.FORBIDDEN, {"error": "loopback only"})
            return
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.split("/")[2:] if s]
        query = parse_qs(parts.query)
        form = self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded")
        try:
            if form:
                payload: dict[str, Any] = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
            else:
                payload = json.loads(body) if body else {}
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": "body must be JSON"})
            return
        sim = self.sim
        match method, segments:
            case "GET", ["terminal"]:
                self._send(HTTPStatus.OK, terminal_page(sim), "text/html; charset=utf-8")
            case "POST", ["terminal", ct_id, ("pin" | "cancel") as action] if form:
                # The terminal page's form: type at the pad, then back to the page (POST-redirect-GET).
                terminal = sim.terminals.get(ct_id)
                if terminal is not None:
                    try:
                        if action == "pin":
                            terminal.enter_pin(str(payload.get("pin", "")))
                        else:
                            terminal.cancel()
                        terminal.wait_settled(10.0)
                    except RuntimeError:
                        pass  # no longer asking (timeout, StopSignature): the page shows the current state
                self.send_response(HTTPStatus.SEE_OTHER)
                self.send_header("Location", "/tisim/terminal")
                self.send_header("Content-Length", "0")
                self.end_headers()
            case "GET", ["state"]:
                self._send_json(HTTPStatus.OK, _state(sim))
            case "GET", ["terminals"]:
                self._send_json(HTTPStatus.OK, {"terminals": [t.state() for t in sim.terminals.values()]})
            case "GET", ["terminals", ct_id]:
                terminal = sim.terminals.get(ct_id)
                if terminal is None:
                    self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no terminal {ct_id}"})
                    return
                wait = min(float(query.get("wait", ["0"])[0] or 0), _MAX_CONTROL_WAIT)
                if wait > 0:
                    terminal.wait_for_prompt(wait)
                self._send_json(HTTPStatus.OK, terminal.state())
            case "POST", ["terminals", ct_id, ("pin" | "cancel") as action]:
                terminal = sim.terminals.get(ct_id)
                if terminal is None:
                    self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no terminal {ct_id}"})
                    return
                try:
                    if action == "pin":
                        terminal.enter_pin(str(payload.get("pin", "")))
                    else:
                        terminal.cancel()
                except RuntimeError as exc:
                    self._send_json(HTTPStatus.CONFLICT, {"error": str(exc)})
                    return
                terminal.wait_settled(10.0)
                self._send_json(HTTPStatus.OK, terminal.state())
            case "GET", ["faults"]:
                self._send_json(HTTPStatus.OK, {"faults": sim.faults})
            case "POST", ["faults"]:
                params = dict(payload)
                kind = str(params.pop("kind", ""))
                times = params.pop("times", None)
                try:
                    sim.arm_fault(kind, times=None if times is None else int(times), **params)
                except (ValueError, TypeError) as exc:
                    self._send_json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                    return
                self._send_json(HTTPStatus.OK, {"faults": sim.faults})
            case "DELETE", ["faults"]:
                sim.clear_faults()
                self._send_json(HTTPStatus.OK, {"faults": []})
            case "GET", ["signed"]:
                self._send_json(HTTPStatus.OK, {"signed": [vars(s) for s in sim.signed_requests]})
            case _:
                self._send_json(HTTPStatus.NOT_FOUND, {"error": "unknown control call"})

    # --- I/O helpers ---------------------------------------------------------------------------------------

    def _content_length(self) -> int | None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self.close_connection = True
            self._send_text(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
            return None
        if length < 0:
            self.close_connection = True
            self._send_text(HTTPStatus.BAD_REQUEST, "bad Content-Length")
            return None
        return length

    def _read_body(self) -> bytes | None:
        if "Content-Length" not in self.headers:
            return b""
        length = self._content_length()
        if length is None:
            return None
        if length > 2**20:
            self.close_connection = True
            self._send_text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "control calls are small")
            return None
        return self.rfile.read(length)

    def _discard_body(self) -> None:
        # Unread bytes would be taken for the next request on this keep-alive connection.
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = 0
        if 0 < length <= 2**20:
            self.rfile.read(length)
        elif length:
            self.close_connection = True

    def _send(self, code: HTTPStatus, body: bytes, content_type: str = "text/xml; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_text(self, code: HTTPStatus, text: str) -> None:
        self._send(code, text.encode() + b"\n", "text/plain; charset=utf-8")

    def _send_json(self, code: HTTPStatus, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")


def terminal_page(sim: KonnektorSimulator) -> bytes:
    """A small page per card terminal: its display and, while it asks, a PIN pad. It reloads every 2 s
    while no terminal asks, and not while one does (a reload would wipe the half-typed PIN)."""
    asking = any(t.waiting for t in sim.terminals.values())
    parts = [
        "<!doctype html><html lang=de><head><meta charset=utf-8>",
        "" if asking else '<meta http-equiv="refresh" content="2">',
        "<title>Kartenterminals (Simulator)</title>",
        "<style>body{font-family:sans-serif;margin:2em}section{border:1px solid #888;padding:1em;margin:1em 0;"
        "max-width:28em}pre{background:#222;color:#9f9;padding:.5em;font-size:1.2em}</style></head><body>",
        "<h1>Kartenterminals (Konnektor-Simulator)</h1>",
    ]
    for terminal in sim.terminals.values():
        state = terminal.state()
        ct = html.escape(terminal.ct_id)
        parts.append(f"<section><h2>{ct}</h2><p>Arbeitsplätze: {html.escape(', '.join(terminal.workplaces))}</p>")
        parts.append(f"<pre aria-label='Anzeige {ct}'>{html.escape(chr(10).join(terminal.display))}</pre>")
        if state["waiting"]:
            action = f"/tisim/terminal/{quote(terminal.ct_id, safe='')}"
            parts.append(
                f"<form method=post action='{action}/pin'><label>PIN <input name=pin type=password "
                "inputmode=numeric autocomplete=off autofocus></label> <button>OK</button></form>"
                f"<form method=post action='{action}/cancel'><button>Abbruch</button></form>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts).encode("utf-8")


def _state(sim: KonnektorSimulator) -> dict[str, Any]:
    return {
        **sim.runtime_info(),
        "terminals": [t.state() for t in sim.terminals.values()],
        "card_states": [
            {
                "iccsn": c.iccsn,
                "card_handle": c.card_handle,
                "inserted": c.inserted,
                "pin_state": sim.effective_pin_state(c),
                "left_tries": c.left_tries,
                "comfort": _comfort_state(sim, c),
            }
            for c in sim.cards
        ],
        "faults": sim.faults,
    }


def _comfort_state(sim: KonnektorSimulator, card: SimCard) -> dict[str, Any] | None:
    session = sim.comfort_session(card)
    if session is None:
        return None
    return {"user_id": session.user_id, "remaining": session.remaining, "seconds_left": round(session.time_left(), 1)}
