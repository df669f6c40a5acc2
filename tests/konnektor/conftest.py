"""Fixtures for the Konnektor client tests. Every client made through ``make_client`` has its requests captured;
at the end of the test each one is validated against the official gematik schemas."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from konnektor import CallContext, KonnektorClient, KonnektorConfig
from tests.konnektor.support import CraftedKonnektor, EgressCapture, OfficialSchemas, start_crafted

CTX = CallContext("Mandant1", "KIMPortal", "Arbeitsplatz-1", "user-7f3a")


@pytest.fixture(scope="session")
def official_schemas() -> OfficialSchemas:
    return OfficialSchemas()


@pytest.fixture
def ctx() -> CallContext:
    return CTX


@pytest.fixture
def crafted() -> Iterator[CraftedKonnektor]:
    server = start_crafted()
    try:
        yield server
    finally:
        server.released.set()
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def make_client(official_schemas: OfficialSchemas) -> Iterator[Callable[..., tuple[KonnektorClient, EgressCapture]]]:
    made: list[tuple[KonnektorClient, EgressCapture, bool]] = []

    def make(base_url: str, *, signature_740: bool = False, **options: Any) -> tuple[KonnektorClient, EgressCapture]:
        capture = EgressCapture()
        client = KonnektorClient(KonnektorConfig(base_url=base_url, **options), plugins=[capture])
        made.append((client, capture, signature_740))
        return client, capture

    yield make
    for client, capture, signature_740 in made:
        client.close()
        for sent in capture.sent:
            official_schemas.validate_envelope(sent.envelope, signature_740=signature_740)
