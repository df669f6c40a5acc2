"""Callbacks go to the KIS, not to the portal's own host or a cloud's metadata service: the address actually
connected to is checked before a byte is sent (a name resolving elsewhere on a second lookup changes nothing)."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from signing.api.callbacks import address_allowed, post


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("169.254.169.254", False),  # the metadata service
        ("fe80::1%eth0", False),
        ("::ffff:169.254.169.254", False),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False),  # noqa: S104  # an address checked, nothing bound
        ("224.0.0.1", False),
        ("10.20.30.40", True),  # the hospital's own networks, where a KIS lives
        ("192.168.1.5", True),
        ("172.16.0.9", True),
        ("93.184.216.34", True),
    ],
)
def test_the_addresses_callbacks_may_go_to(address, allowed):
    assert address_allowed(address) is allowed


def test_loopback_only_when_allowed(settings):
    settings.KIMPORTAL_KIS_CALLBACK_ALLOW_LOOPBACK = True
    assert address_allowed("127.0.0.1") and not address_allowed("169.254.169.254")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_callback_to_the_portals_own_host_sends_nothing(host):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    try:
        url = f"http://{host}:{listener.getsockname()[1]}/kim/callback"
        outcome = post(url, b'{"event":"draft.changed"}', {"Content-Type": "application/json"})
        assert not outcome.ok
        assert outcome.error.stored == {
            "msgid": "Nicht zugestellt: Rückrufe an die Adresse %(address)s sind gesperrt.",
            "params": {"address": "127.0.0.1"},
        }
        # The connection was closed before the request: the listener got no byte.
        accepted, _peer = listener.accept()
        with accepted:
            accepted.settimeout(5)
            assert accepted.recv(1024) == b""
    finally:
        listener.close()


def test_a_proxy_from_the_environment_is_not_used(settings, monkeypatch):
    """A proxy would be the peer the check sees (a private range, allowed) and would reach the refused addresses on
    the portal's behalf: callbacks connect to the KIS itself, whatever http_proxy says."""
    settings.KIMPORTAL_KIS_CALLBACK_ALLOW_LOOPBACK = True
    settings.KIMPORTAL_KIS_CALLBACK_TIMEOUT = 3.0
    received: list[str] = []

    class Kis(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the name http.server calls
            received.append(self.path)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    kis = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Kis)
    threading.Thread(target=kis.serve_forever, daemon=True).start()
    proxy = socket.create_server(("127.0.0.1", 0))
    try:
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.getsockname()[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        url = f"http://127.0.0.1:{kis.server_address[1]}/kim/callback"
        outcome = post(url, b'{"event":"draft.changed"}', {"Content-Type": "application/json"})
        assert outcome.ok and received == ["/kim/callback"]
        proxy.setblocking(False)
        with pytest.raises(BlockingIOError):
            proxy.accept()  # nothing ever connected to the proxy
    finally:
        proxy.close()
        kis.shutdown()
        kis.server_close()
