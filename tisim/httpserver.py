"""A threading HTTP(S) server for the simulators that knows its open connections, so a test can cut them all.

``close_all`` is "the service went down": the listener closes and every open connection is shut down at once
(a keep-alive client sees its connection end, not a hang). The TLS handshake runs in the connection's own thread
(the handler's ``setup`` does it), so a slow or silent client blocks nobody.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("tisim")


class TrackingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None
    ) -> None:
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._conn_lock:
            self._connections.add(sock)
        return sock, addr

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Close the listener and cut every open connection."""
        self.server_close()
        with self._conn_lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes and clients that hang up are normal in tests of the connection modes.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class TlsRequestHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; the TLS handshake in the connection's own thread, bounded by ``handshake_timeout``;
    access lines to the debug log of ``logger_name``."""

    protocol_version = "HTTP/1.1"
    handshake_timeout = 30.0
    logger_name = "tisim"

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(self.handshake_timeout)
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(self.logger_name).debug("%s %s", self.address_string(), format % args)
