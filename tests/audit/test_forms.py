"""The search form reads times as the house's clocks show them, the night the clocks change included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from audit.forms import AuditSearchForm


def _bounds(since: str, until: str) -> tuple[datetime, datetime]:
    form = AuditSearchForm({"since": since, "until": until})
    assert form.is_valid(), form.errors
    f = form.to_filter()
    assert f.since is not None and f.until is not None
    return f.since.astimezone(UTC), f.until.astimezone(UTC)


def test_an_ordinary_time_is_the_houses_clock(settings):
    assert settings.TIME_ZONE == "Europe/Berlin"
    assert _bounds("2026-01-15T10:00", "2026-07-15T10:00") == (
        datetime(2026, 1, 15, 9, 0, tzinfo=UTC),
        datetime(2026, 7, 15, 8, 0, tzinfo=UTC),
    )


def test_the_hour_that_happens_twice_in_october_is_searched_whole():
    # 02:00–03:00 on 25 October 2026 is 00:00–01:00 UTC (summer time) and again 01:00–02:00 UTC (winter time).
    assert _bounds("2026-10-25T02:00", "2026-10-25T02:59") == (
        datetime(2026, 10, 25, 0, 0, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 59, tzinfo=UTC),
    )


def test_the_hour_that_never_happens_in_march_is_searchable_and_loses_nothing():
    # The clocks jump from 02:00 to 03:00 at 01:00 UTC on 29 March 2026: 02:30 was never shown. "from" reads it
    # the earlier way (01:30 winter time), "to" the later (03:30 summer time).
    assert _bounds("2026-03-29T02:30", "2026-03-29T02:45") == (
        datetime(2026, 3, 29, 0, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 1, 45, tzinfo=UTC),
    )


@pytest.mark.parametrize("value", ["2026-13-01T00:00", "gestern", "2026-10-25T02:61"])
def test_a_time_that_is_no_time_is_still_refused(value):
    form = AuditSearchForm({"since": value})
    assert not form.is_valid() and "since" in form.errors
