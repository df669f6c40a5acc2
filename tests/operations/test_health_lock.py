"""The check lock under a flood of anonymous /health/ callers: never more than one round at a time."""

from __future__ import annotations

import threading
import time

import pytest

from operations.services import health
from operations.services.results import OK, UNKNOWN, Component, Msg, Report
from operations.services.store import store

CALLERS = 6


@pytest.fixture
def rounds(monkeypatch, settings, fresh_store) -> list[float]:
    """run_checks replaced by a counter (the TI is not what is tested here); short periods."""
    started: list[float] = []

    def fake_round() -> Report:
        started.append(time.monotonic())
        report = Report(checked_at=time.time(), duration=0.0)
        report.components.append(Component("database", Msg.of("x"), OK, Msg.of("x")))
        return report

    monkeypatch.setattr(health, "run_checks", fake_round)
    monkeypatch.setattr(health, "lock_seconds", lambda: 1)
    settings.KIMPORTAL_HEALTH_TIMEOUT = 0.1
    return started


def ask_at_once() -> list[Report]:
    results: list[Report] = []
    barrier = threading.Barrier(CALLERS)

    def ask() -> None:
        barrier.wait()
        results.append(health.health_report())

    threads = [threading.Thread(target=ask) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == CALLERS
    return results


def test_waiters_never_start_rounds_of_their_own_while_another_process_checks(rounds):
    # Another process holds the lock (a slow round) and there is no report yet: the waiters must not each
    # start a round once their patience ends — they say that a check is still running.
    store().add(health.LOCK_KEY, "another-process", timeout=30)
    results = ask_at_once()
    assert rounds == []
    for report in results:
        assert report.state == UNKNOWN
        assert [c.key for c in report.components] == ["checks"]
    assert health._cached() is None  # the placeholder is never kept


def test_a_dead_holders_lock_is_taken_over_by_one_waiter(rounds):
    # The holder died: its lock expires, exactly one waiter takes it and checks, the others get that report.
    store().add(health.LOCK_KEY, "died", timeout=1)
    results = ask_at_once()
    assert len(rounds) == 1
    assert {r.checked_at for r in results} == {results[0].checked_at}
    assert results[0].state == OK


def test_a_round_that_ended_just_before_the_lock_was_taken_is_not_checked_again(rounds, monkeypatch):
    # Another process's round ends (its report kept, its lock freed) between this caller's read and its taking the
    # lock: the caller reads again under the lock and hands out that report instead of starting a second round.
    kept = Report(checked_at=time.time(), duration=0.0)
    kept.components.append(Component("database", Msg.of("x"), OK, Msg.of("x")))
    health._keep(kept)
    real_cached = health._cached
    reads: list[Report | None] = []

    def cached() -> Report | None:
        # The first read comes just before that round's report was kept.
        reads.append(None if not reads else real_cached())
        return reads[-1]

    monkeypatch.setattr(health, "_cached", cached)
    report = health.health_report()
    assert rounds == []
    assert report.checked_at == kept.checked_at
    assert store().get(health.LOCK_KEY) is None  # the lock taken for nothing is freed again
