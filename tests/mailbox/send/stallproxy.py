"""A TCP proxy between the portal and the simulated CM that can stop passing the CM's answers on.

Plain SMTP only (it reads the client's bytes to know where the dialogue is). ``hold="data"``: the CM's
answer to DATA (354) is held back, so the client waits *before* sending the message; ``hold="final_dot"``:
everything after the client's end-of-data sequence is held back, so the CM has the whole message (and
delivers it) while the client still waits for the answer — the moment a worker dies "between the end of
DATA and the database update".
"""

from __future__ import annotations

import re
import socket
import threading

_DATA_COMMAND = re.compile(rb"(?:^|\r\n)DATA\r\n", re.IGNORECASE)


class StallProxy:
    def __init__(self, target: tuple[str, int], *, hold: str) -> None:
        assert hold in ("data", "final_dot")
        self.target = target
        self.hold = hold
        self.holding = threading.Event()  # set once answers are held back
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            threading.Thread(target=self._client_to_server, args=(client, server), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(server, client), daemon=True).start()

    def _client_to_server(self, client: socket.socket, server: socket.socket) -> None:
        tail = b""
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                data = b""
            if not data:
                # The client is gone (killed): the CM notices, as it would.
                _close(server)
                return
            seen = tail + data
            # Decided before the bytes go on: the CM's answer cannot overtake the decision.
            if self.hold == "data" and _DATA_COMMAND.search(seen):
                self.holding.set()
            if self.hold == "final_dot" and b"\r\n.\r\n" in seen:
                self.holding.set()
            tail = seen[-8:]
            try:
                server.sendall(data)
            except OSError:
                return

    def _server_to_client(self, server: socket.socket, client: socket.socket) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                data = b""
            if not data:
                if not self.holding.is_set():
                    _close(client)
                return
            if self.holding.is_set():
                continue  # held back: the client waits for an answer that never comes
            try:
                client.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        _close(self._listener)
        for sock in self._sockets:
            _close(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
