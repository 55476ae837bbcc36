"""Statistics checked against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from pbench_runner.stats import summarize


def test_summary_of_known_values() -> None:
    s = summarize([10.0, 12.0, 11.0, 13.0, 30.0])
    assert s["n"] == 5
    assert s["mean"] == pytest.approx(15.2)
    # sample stddev: sqrt(sum((x-15.2)^2)/4) = sqrt(278.8/4)
    assert s["stddev"] == pytest.approx(math.sqrt(278.8 / 4))
    assert s["stddev_pct"] == pytest.approx(100 * math.sqrt(278.8 / 4) / 15.2)
    assert s["median"] == 12.0
    assert (s["min"], s["max"]) == (10.0, 30.0)
    # inclusive quartiles of 10 11 12 13 30: 11 and 13; fences 8 and 16
    assert (s["q1"], s["q3"]) == (11.0, 13.0)
    assert s["outliers"] == [5]
    # 13 is closest to 15.2: sample 4
    assert s["closest"] == 4


def test_one_value_and_ties() -> None:
    s = summarize([2.5])
    assert s["stddev"] == 0.0
    assert s["outliers"] == []
    assert s["closest"] == 1
    assert summarize([1.0, 3.0])["closest"] == 1  # a tie goes to the first sample


def test_no_values_is_an_error() -> None:
    with pytest.raises(ValueError):
        summarize([])
