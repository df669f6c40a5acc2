"""The stress figure counts only levels that served every user: fast pages with refused sockets are not served."""

from __future__ import annotations

from typing import Any

from bench.stress import most_users, served


def level(users: int, p95_ms: float | None, *, errors: int = 0, ws_failures: int = 0) -> dict[str, Any]:
    return {"users": users, "p95_ms": p95_ms, "errors": errors, "ws_failures": ws_failures}


def runner(figures: dict[int, dict[str, Any] | None]):
    asked: list[int] = []

    def run(users: int) -> dict[str, Any] | None:
        asked.append(users)
        return figures[users]

    return run, asked


def test_refused_sockets_end_the_climb_even_with_fast_pages() -> None:
    # As measured on a 2-core machine: p95 under a second at 200 and 300 users, but sockets refused there.
    run, asked = runner(
        {100: level(100, 718), 200: level(200, 695, ws_failures=193), 300: level(300, 676, ws_failures=1018)}
    )
    best, runs = most_users([100, 200, 300], run)
    assert best == 100
    assert asked == [100, 200]
    assert [r["served"] for r in runs] == [True, False]


def test_a_failed_request_is_not_served() -> None:
    assert not served(level(200, 400, errors=1))
    assert served(level(200, 400))


def test_p95_limit_is_one_second_inclusive() -> None:
    assert served(level(200, 1000.0))
    assert not served(level(200, 1000.1))
    assert not served(level(200, None))


def test_all_levels_served_gives_the_highest() -> None:
    run, asked = runner({100: level(100, 300), 200: level(200, 600), 400: level(400, 990)})
    assert most_users([100, 200, 400], run)[0] == 400
    assert asked == [100, 200, 400]


def test_first_level_missed_tries_halves() -> None:
    run, asked = runner({100: level(100, 1500), 50: level(50, 900, ws_failures=3), 25: level(25, 200)})
    best, runs = most_users([100, 200], run)
    assert (best, asked) == (25, [100, 50, 25])
    assert [r["served"] for r in runs] == [False, False, True]


def test_halves_stop_below_ten_users() -> None:
    run, asked = runner({30: level(30, 2000), 15: level(15, 2000)})
    assert most_users([30], run)[0] == 0
    assert asked == [30, 15]


def test_time_up_stops_without_counting_the_level() -> None:
    run, asked = runner({100: level(100, 300), 200: None})
    best, runs = most_users([100, 200, 300], run)
    assert (best, asked, len(runs)) == (100, [100, 200], 1)
