"""Expected hours: ranges, midnight wrap, and refusing what would silently never match."""

from __future__ import annotations

from datetime import datetime

import pytest

from bridge.nodes.schedule import ExpectedHours, expected_hours


def at(hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, 22, hh, mm)


def test_plain_and_wrapping_ranges():
    hours = ExpectedHours(["06:30-09:00", "22:00-01:15"])
    assert hours.expects(at(6, 30)) and hours.expects(at(8, 59))
    assert not hours.expects(at(9, 0)) and not hours.expects(at(12))
    assert hours.expects(at(23, 59)) and hours.expects(at(0, 0)) and hours.expects(at(1, 14))
    assert not hours.expects(at(1, 15)) and not hours.expects(at(21, 59))
    assert ExpectedHours(["00:00-24:00"]).expects(at(3))


@pytest.mark.parametrize("bad", [["7-9"], ["07:00-07:00"], ["24:30-01:00"], [], [7], "nonsense"])
def test_bad_ranges_are_refused(bad):
    with pytest.raises(ValueError):
        expected_hours(bad)


def test_a_single_string_is_one_range():
    assert expected_hours(" 07:00 - 09:00 ") == ["07:00 - 09:00"]
    assert expected_hours(None) is None
