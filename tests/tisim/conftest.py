"""Fixtures for the TI simulator's Clientmodul: real servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tisim.support import PASSWORDS
from tisim.cm import CMSimulator


@pytest.fixture
def make_cm(tmp_path: Path) -> Iterator[Callable[..., CMSimulator]]:
    started: list[CMSimulator] = []

    def make(tls: bool = True, data_dir: Path | None = None, **kwargs: object) -> CMSimulator:
        sim = CMSimulator(data_dir or tmp_path / "cm", accounts=dict(PASSWORDS), tls=tls, **kwargs)
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def cm(make_cm: Callable[..., CMSimulator]) -> CMSimulator:
    return make_cm()


@pytest.fixture(params=[True, False], ids=["tls", "plain"])
def any_cm(request: pytest.FixtureRequest, make_cm: Callable[..., CMSimulator]) -> CMSimulator:
    return make_cm(tls=request.param)
