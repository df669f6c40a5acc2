"""A PostgreSQL restart as the portal's pool (kimportal.pgpool) lives through it: the real server behind a TCP relay on
a fixed port that is switched off (connects refused, the relayed connections cut) and on again. During the outage a
checkout gives up after OUTAGE_WAIT_SECONDS instead of the pool's timeout; afterwards the first checkout connects
at once, where psycopg_pool alone waited for its next try (1, 2, 4, 8 … s apart, for up to five minutes)."""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client
from django.urls import reverse
from psycopg_pool import PoolTimeout

from kimportal.pgpool.base import OUTAGE_WAIT_SECONDS, DrainingPool
from tests.mailbox.factories import UserFactory
from tests.unreachable import free_port


class Relay:
    """127.0.0.1:<port> relayed to PostgreSQL while up; while down, nothing listens there (refused at once) and
    what it relayed is cut, as when the server restarts."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.listener: socket.socket | None = None
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self.listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would leave it accepting.
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            cut, self.open = self.open, []
        for sock in cut:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # switched off
            server = socket.create_connection(self.target)
            with self.lock:
                self.open += [client, server]
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def relay() -> Iterator[Relay]:
    settings = connections["default"].settings_dict
    relay = Relay((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    relay.up()
    yield relay
    relay.down()


def _params(relay: Relay) -> dict[str, object]:
    """The test database's connection parameters (user, password, TLS as configured), through the relay."""
    params = connections["default"].get_connection_params()
    keep = ("dbname", "user", "password", "sslmode", "sslrootcert", "options", "connect_timeout")
    return {**{key: params[key] for key in keep if params.get(key)}, "host": "127.0.0.1", "port": relay.port}


def test_during_an_outage_checkouts_give_up_quickly_and_afterwards_the_pool_is_back_at_once(relay):
    pool = DrainingPool(kwargs=_params(relay), min_size=1, max_size=4, timeout=4, open=True)
    try:
        with pool.connection() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not pool.unreachable
        relay.down()
        # The first checkout waits the pool's whole timeout: its connects fail and give up meanwhile.
        with pytest.raises(PoolTimeout, match=r"after 4\.00 sec"):
            pool.getconn()
        assert pool.unreachable
        # From now on a checkout waits OUTAGE_WAIT_SECONDS, not the pool's timeout (the message names the wait).
        with pytest.raises(PoolTimeout, match=re.escape(f"after {OUTAGE_WAIT_SECONDS:.2f} sec")):
            pool.getconn()
        with pytest.raises(PoolTimeout, match=re.escape(f"after {OUTAGE_WAIT_SECONDS:.2f} sec")):
            pool.getconn()
        relay.up()
        # About eight seconds into the outage psycopg_pool alone would try next at about 15 s: this checkout (its
        # wait still the short one) would time out. Here a connect is under way within RECONNECT_SECONDS.
        conn = pool.getconn()
        try:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            pool.putconn(conn)
        assert not pool.unreachable
        assert pool.getconn(timeout=10) is not None  # and the full wait again
    finally:
        pool.close()


def test_a_pool_full_under_load_is_no_outage(relay):
    # Every connection busy: a checkout times out after the pool's timeout, and the next one waits as long again.
    pool = DrainingPool(kwargs=_params(relay), min_size=1, max_size=1, timeout=0.5, open=True)
    try:
        held = pool.getconn()
        for _ in range(2):
            with pytest.raises(PoolTimeout, match=r"after 0\.50 sec"):
                pool.getconn()
            assert not pool.unreachable
        pool.putconn(held)
    finally:
        pool.close()


@pytest.mark.django_db(transaction=True)
def test_a_page_during_an_outage_answers_503_after_the_short_wait(relay, caplog):
    """The portal's own pool on the relay: the first page waits the pool's timeout, the next ones only the short
    wait (the log line names it), and once the database is back the page is there again."""
    user = UserFactory(username="anna")
    client = Client(raise_request_exception=False)  # the 503 of a middleware's read comes from handler500
    client.force_login(user)
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    saved_options = dict(saved["OPTIONS"])
    connection.close()
    connection.close_pool()
    connection.settings_dict["HOST"], connection.settings_dict["PORT"] = "127.0.0.1", str(relay.port)
    connection.settings_dict["OPTIONS"] = {**saved_options, "pool": {**saved_options["pool"], "timeout": 4}}
    try:
        assert client.get(reverse("mailbox:inbox")).status_code == 200
        connection.close()
        relay.down()
        with caplog.at_level(logging.WARNING, logger="kimportal.unavailable"):
            assert client.get(reverse("mailbox:inbox")).status_code == 503
            connection.close()
            assert client.get(reverse("mailbox:inbox")).status_code == 503
            connection.close()
        waits = [r.getMessage().rsplit("after ", 1)[-1] for r in caplog.records if "answered 503" in r.getMessage()]
        assert waits == ["4.00 sec", f"{OUTAGE_WAIT_SECONDS:.2f} sec"]
        relay.up()
        assert client.get(reverse("mailbox:inbox")).status_code == 200
    finally:
        connection.close()
        connection.close_pool()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
