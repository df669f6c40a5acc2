"""Callbacks go to the KIS, not to the portal's own host or a cloud's metadata service: the address actually
connected to is checked before a byte is sent (a name resolving elsewhere on a second lookup changes nothing)."""

from __future__ import annotations

import socket

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
